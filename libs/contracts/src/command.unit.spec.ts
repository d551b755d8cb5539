import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COMMAND_SCHEMAS, checkCommand, latestCommandVersion } from './command.ts';

function command(overrides: Record<string, unknown> = {}) {
  return {
    id: randomUUID(),
    name: 'RequestBackup',
    schemaVersion: 1,
    idempotencyKey: 'k-1',
    actor: { kind: 'user', id: 'alice' },
    site: 'site-a',
    time: new Date().toISOString(),
    payload: { vmId: 'vm-1', mode: 'auto' },
    ...overrides,
  };
}

describe('command contracts', () => {
  it('accepts a valid command', () => {
    const r = checkCommand(command(), 'RequestBackup');
    expect(r.ok).toBe(true);
  });

  it('lists the payload problems with paths', () => {
    const r = checkCommand(command({ payload: { vmId: '', mode: 'sometimes', extra: 1 } }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe('invalid_command');
    const paths = r.problems.map((p) => p.path);
    expect(paths).toContain('/payload/vmId');
    expect(paths).toContain('/payload/mode');
  });

  it('rejects an unknown name or version, and a name that does not match the subject', () => {
    expect(checkCommand(command({ name: 'FormatDisk' }))).toMatchObject({ ok: false, code: 'unknown_command' });
    expect(checkCommand(command({ schemaVersion: 9 }))).toMatchObject({ ok: false, code: 'unknown_command' });
    expect(checkCommand(command(), 'CancelJob')).toMatchObject({ ok: false, code: 'invalid_command' });
    expect(checkCommand('nope')).toMatchObject({ ok: false, code: 'invalid_command' });
  });

  it('knows every command at version 1 and its owning service', () => {
    for (const [name, def] of Object.entries(COMMAND_SCHEMAS)) {
      expect(latestCommandVersion(name as keyof typeof COMMAND_SCHEMAS)).toBe(1);
      expect(def.service).toMatch(/^[a-z-]+$/);
    }
  });
});
