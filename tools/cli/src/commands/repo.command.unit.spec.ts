import { describe, expect, it } from 'vitest';
import { CliError, EXIT } from '../cli-error.ts';
import { parseByteSize, parseDuration, parseFraction } from './repo.command.ts';

describe('repo command input', () => {
  it('reads durations, sizes and fractions', () => {
    expect(parseDuration('24h')).toBe(86_400_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('0s')).toBe(0);
    expect(parseByteSize('256K')).toBe(262_144);
    expect(parseByteSize('1MiB')).toBe(1_048_576);
    expect(parseFraction('0.1')).toBe(0.1);
  });

  it('rejects bad input as a usage error', () => {
    for (const bad of [() => parseDuration('soon'), () => parseByteSize('big'), () => parseFraction('2'), () => parseFraction('0')]) {
      expect(bad).toThrow(CliError);
      try {
        bad();
      } catch (e) {
        expect((e as CliError).exitCode).toBe(EXIT.usage);
      }
    }
  });
});
