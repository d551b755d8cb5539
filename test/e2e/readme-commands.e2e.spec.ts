// Every `npx cairn …` command of the README's "Run it" section, as written, on a fresh data
// directory: `cairn up --demo` first (kept running), then each command of the second block in
// order, each expected to exit 0. `npx cairn` stands for this checkout's bin (the test runs in
// a fresh directory so that `.cairn` is new); `<restore-point>` is the demo's latest.
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CAIRN, ROOT } from './e2e-helpers.ts';

/** The `sh` code blocks of the README's "Run it" section. */
async function runItBlocks(): Promise<string[][]> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Run it'))!;
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.split('\n').map((l) => l.trim()).filter(Boolean));
}

/** The `npx cairn …` commands of a line (`a && b`), comments removed. */
function cairnCommands(line: string): string[] {
  return line.replace(/\s+#.*$/, '').split('&&').map((c) => c.trim()).filter((c) => c.startsWith('npx cairn '));
}

function bash(cwd: string, command: string, env: Record<string, string>, timeoutMs = 300_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { cwd, env: { ...process.env, ...env } });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

describe('the README, as written (real stack, demo VM)', () => {
  const h = useHarness();

  it('runs every command of "Run it" on a fresh data directory', async () => {
    const [first, second] = await runItBlocks();
    const upLine = cairnCommands(first!.at(-1)!);
    expect(upLine).toEqual(['npx cairn up --demo']);
    const cwd = await h.tmpDir('cairn-readme-');
    const cairn = `${process.execPath} ${CAIRN}`;
    const env = { USER: process.env['USER'] ?? userInfo().username, CAIRN_LOG_LEVEL: 'warn' };
    const asWritten = (c: string) => c.replace(/^npx cairn /, `${cairn} `);

    const up = spawn('bash', ['-c', `exec ${asWritten(upLine[0]!)}`], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let upOut = '';
    up.stdout.setEncoding('utf8').on('data', (d: string) => { upOut += d; });
    up.stderr.setEncoding('utf8').on('data', (d: string) => { upOut += d; });
    const upExited = new Promise<void>((r) => up.once('exit', () => r()));
    h.onClose(async () => { if (up.exitCode === null) { up.kill('SIGTERM'); await upExited; } });
    await waitFor(() => {
      if (up.exitCode !== null) throw new Error(`cairn up --demo exited: ${upOut}`);
      return upOut.includes('cairn is up;') || undefined;
    }, { timeoutMs: 300_000, intervalMs: 250, what: 'cairn up --demo to serve' });
    expect(upOut).toMatch(/verify {2}the restored disk is the VM's disk at the snapshot instant/);

    const results: Array<{ command: string; code: number | null; out: string }> = [];
    for (const line of second!) {
      for (const command of cairnCommands(line)) {
        let run = asWritten(command);
        if (run.includes('<restore-point>')) {
          const list = await bash(cwd, `${cairn} --json restore-point list --vm demo`, env);
          const points = JSON.parse(list.out) as Array<{ restorePointId: string; createdAt: string }>;
          run = run.replaceAll('<restore-point>', points.sort((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1)!.restorePointId);
        }
        if (run.includes('--to /tmp/demo.raw')) await rm('/tmp/demo.raw', { force: true });
        // A follow never ends by itself: it has shown the log when it is stopped after a while.
        const follow = / --follow\b/.test(run);
        const r = await bash(cwd, follow ? `timeout -s INT 5 ${run}; test $? -eq 124 -o $? -eq 0 -o $? -eq 130` : run, env);
        results.push({ command, code: r.code, out: r.out.slice(-400) });
      }
    }
    await rm('/tmp/demo.raw', { force: true });
    expect(results.length).toBeGreaterThanOrEqual(14);
    expect(results.filter((r) => r.code !== 0)).toEqual([]);
    const out = (prefix: string) => results.find((r) => r.command.startsWith(prefix))!.out;
    expect(out('npx cairn repo stats')).toMatch(/restorePoints/);
    expect(out('npx cairn policy pause')).toMatch(/\(nightly\) paused/);
    expect(out('npx cairn policy resume')).toMatch(/\(nightly\) resumed/);
    expect(out('npx cairn policy edit')).toMatch(/changed/);
    expect(out('npx cairn restore-export list')).toMatch(/demo-live .*nbd\+unix:\/\/\/demo-live\?socket=/);
    expect(out('npx cairn restore-export stop')).toMatch(/export demo-live stopped/);
    // The README's note: a second policy of the same name is refused (exit 4), nothing created.
    const again = await bash(cwd, `${cairn} policy create --name nightly --vm demo --cron "0 2 * * *"`, env);
    expect(again.code, again.out).toBe(4);
    expect(again.out).toMatch(/a policy named "nightly" exists already/);
  }, 900_000);
});
