// Every error of the CLI with --json, as a table: one JSON document on stdout,
// `{error: {code, message, hint?}}`, a whole-sentence message and the README's exit code
// (2 usage, 3 not found, 4 conflict, 5 unreachable, 7 refused). One secure stack for all rows.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { startStack, type Stack } from '@cairn/cli';
import { cli } from './e2e-helpers.ts';

interface Row { readonly what: string; readonly args: readonly string[]; readonly exit: number; readonly code: string }

describe('cairn --json errors (real stack)', () => {
  const h = useHarness();
  let stack: Stack;
  let dataDir: string;
  let operatorToken: string;
  let existing: string;
  let badConfig: string;

  beforeAll(async () => {
    dataDir = await h.tmpDir('cairn-errors-');
    stack = await startStack({ dataDir, secure: true });
    h.onClose(() => stack.stop());
    existing = join(dataDir, 'existing.raw');
    await writeFile(existing, 'keep me');
    const added = await cli(['--data', dataDir, '--json', 'user', 'add', 'olga', '--role', 'operator']);
    expect(added.code, added.stdout + added.stderr).toBe(0);
    const token = await cli(['--data', dataDir, '--json', 'token', 'create', '--user', 'olga']);
    expect(token.code, token.stdout + token.stderr).toBe(0);
    operatorToken = (JSON.parse(token.stdout) as { token: string }).token;
    badConfig = join(dataDir, 'bad.yaml');
    await writeFile(badConfig, 'bandwidth:\n  hostBytesPerSec: fast\n');
  }, 240_000);

  it('gives parseable JSON and the exit code for each error path', async () => {
    const rows: Row[] = [
      { what: 'unknown command', args: ['bogus'], exit: 2, code: 'usage' },
      { what: 'missing argument', args: ['backup'], exit: 2, code: 'usage' },
      { what: 'unknown option', args: ['vm', 'list', '--colour'], exit: 2, code: 'usage' },
      { what: 'no completion for a shell', args: ['completion', 'tcsh'], exit: 2, code: 'usage' },
      { what: 'NATS not reachable', args: ['--nats', 'nats://127.0.0.1:1', 'vm', 'list'], exit: 5, code: 'unavailable' },
      { what: 'unknown VM', args: ['backup', 'no-such-vm'], exit: 3, code: 'not_found' },
      { what: 'unknown policy', args: ['policy', 'show', 'no-such-policy'], exit: 3, code: 'not_found' },
      { what: 'bad cron', args: ['policy', 'create', '--name', 'p', '--vm', 'x', '--cron', 'every day'], exit: 2, code: 'invalid_command' },
      { what: 'negative retention', args: ['policy', 'create', '--name', 'p', '--vm', 'x', '--cron', '0 2 * * *', '--keep-last', '-1'], exit: 2, code: 'usage' },
      { what: 'restore without a target', args: ['restore', 'rp-1'], exit: 2, code: 'usage' },
      { what: 'restore over a file', args: ['restore', 'rp-1', '--to', existing], exit: 4, code: 'conflict' },
      { what: 'lock without a time', args: ['restore-point', 'lock', 'rp-1'], exit: 2, code: 'usage' },
      { what: 'unsupported hypervisor', args: ['hypervisor', 'add', 'vmware', '--qmp', '/nonexistent.sock'], exit: 2, code: 'usage' },
      { what: 'missing operator key file', args: ['--operator-key', '/nonexistent.key', 'vm', 'list'], exit: 2, code: 'usage' },
      { what: 'wrong API token', args: ['whoami', '--token', 'not-a-real-token-at-all'], exit: 7, code: 'unauthenticated' },
      { what: 'role does not allow it', args: ['user', 'add', 'mallory', '--role', 'administrator', '--token', operatorToken], exit: 7, code: 'forbidden' },
      { what: 'a cursor no list handed out', args: ['vm', 'list', '--after', 'bm90LWEtY3Vyc29y'], exit: 2, code: 'usage' },
      { what: 'a limit of nothing', args: ['job', 'list', '--limit', '0'], exit: 2, code: 'usage' },
      { what: '--all with --limit', args: ['restore-point', 'list', '--all', '--limit', '5'], exit: 2, code: 'usage' },
      { what: 'an unreadable bandwidth', args: ['policy', 'create', '--name', 'p', '--vm', 'x', '--cron', '0 2 * * *', '--bandwidth', 'fast'], exit: 2, code: 'usage' },
      { what: 'a bandwidth below 1 KiB/s', args: ['policy', 'create', '--name', 'p', '--vm', 'x', '--cron', '0 2 * * *', '--bandwidth', '10'], exit: 2, code: 'usage' },
      { what: 'a mistake in cairn.yaml', args: ['config', 'check', badConfig], exit: 2, code: 'invalid_config' },
      { what: 'unknown restore point', args: ['restore-point', 'show', 'no-such-point'], exit: 3, code: 'not_found' },
      { what: 'unknown job', args: ['job', 'show', 'no-such-job'], exit: 3, code: 'not_found' },
      { what: 'stopping an export nobody serves', args: ['restore-export', 'stop', 'no-such-export'], exit: 3, code: 'not_found' },
    ];
    const observed: Array<{ what: string; exit: number; code?: string; message?: string; problem?: string }> = [];
    for (const row of rows) {
      const r = await cli(['--data', dataDir, '--json', ...row.args]);
      let problem: string | undefined;
      let body: { error?: { code?: string; message?: string; hint?: string } } = {};
      try {
        body = JSON.parse(r.stdout) as typeof body;
      } catch {
        problem = `stdout is not one JSON document: ${JSON.stringify(r.stdout.slice(0, 200))} (stderr ${JSON.stringify(r.stderr.slice(0, 200))})`;
      }
      const m = body.error?.message ?? '';
      // A sentence starts with a capital, a quoted name or a path.
      if (!problem && !/^[A-Z`'"0-9/-]/.test(m)) problem = `message does not start a sentence: ${m}`;
      if (!problem && !/[.!?:]$/.test(m)) problem = `message does not end a sentence: ${m}`;
      observed.push({ what: row.what, exit: r.code, ...(body.error?.code ? { code: body.error.code } : {}), message: m, ...(problem ? { problem } : {}) });
    }
    // One comparison for the whole table: a failure shows every row that differs.
    expect(observed.map((o) => ({ what: o.what, exit: o.exit, code: o.code, problem: o.problem })))
      .toEqual(rows.map((r) => ({ what: r.what, exit: r.exit, code: r.code, problem: undefined })));
  }, 300_000);
});
