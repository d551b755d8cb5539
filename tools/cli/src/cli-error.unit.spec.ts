import { describe, expect, it } from 'vitest';
import { CliError, EXIT, errorShape, fullStop, sentence } from './cli-error.ts';

describe('the one error shape', () => {
  it('makes whole sentences of messages and hints', () => {
    expect(sentence('unknown VM "x"')).toBe('Unknown VM "x".');
    expect(sentence('The job failed.')).toBe('The job failed.');
    expect(sentence('see `cairn --help`')).toBe('See `cairn --help`.');
    expect(sentence('')).toBe('Something failed without saying what.');
    expect(sentence('createUser needs the admin permission')).toBe('`createUser` needs the admin permission.');
    expect(sentence('/tmp/x exists; nothing was changed')).toBe('/tmp/x exists; nothing was changed.');
    expect(fullStop('no repository at dir:/x')).toBe('no repository at dir:/x.');
  });

  it('names a code from the exit code unless the error has a finer one', () => {
    expect(errorShape(new CliError('no running Cairn found', EXIT.unavailable, 'start one'))).toEqual({
      error: { code: 'unavailable', message: 'No running Cairn found.', hint: 'Start one.' },
    });
    expect(errorShape(new CliError('not yours to approve', EXIT.denied, undefined, 'four_eyes')).error.code).toBe('four_eyes');
    expect(errorShape(new CliError('boom')).error).toEqual({ code: 'failed', message: 'Boom.' });
  });
});
