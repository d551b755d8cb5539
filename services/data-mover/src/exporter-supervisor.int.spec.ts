// The exporter's supervisor (exporter-supervisor.ts) run as the data mover runs it: /bin/sh in a
// process group of its own, over a stand-in exporter (a shell that notes its pid and waits).
// Once the session has served, an exporter SIGKILLed at once after its start, again and again,
// is started again each time; before it has served, a failure ends the supervisor with the
// exporter's code (the session fails at once); a clean exit ends it.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '@cairn/testing';
import { supervisedExporter } from './exporter-supervisor.ts';

const dirs: string[] = [];
const groups: number[] = [];
afterEach(async () => {
  for (const g of groups.splice(0)) { try { process.kill(-g, 'SIGKILL'); } catch { /* gone */ } }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function supervise(exporterScript: string, served: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-instant-supervisor-'));
  dirs.push(dir);
  const mark = join(dir, 'export.served');
  if (served) await writeFile(mark, 'now\n');
  const starts = join(dir, 'starts');
  const s = supervisedExporter(mark, '/bin/sh', ['-c', exporterScript, 'stand-in', starts]);
  const child = spawn(s.command, s.args, { detached: true, stdio: 'ignore' });
  groups.push(child.pid!);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const pids = async () => (await readFile(starts, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  return { pids, exited, pgid: child.pid! };
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('exporter supervisor', () => {
  it('starts a served exporter again however soon after its start it dies', async () => {
    const s = await supervise('echo $$ >> "$1"; exec sleep 600', true);
    for (let n = 1; n <= 3; n++) {
      const pid = await waitFor(async () => (await s.pids())[n - 1], { timeoutMs: 60_000, intervalMs: 50, what: `exporter start ${n}` });
      process.kill(pid, 'SIGKILL'); // well within 5 s of its start
    }
    const fourth = await waitFor(async () => (await s.pids())[3], { timeoutMs: 60_000, intervalMs: 50, what: 'exporter start 4' });
    expect(alive(fourth)).toBe(true);
    process.kill(-s.pgid, 'SIGTERM');
    await s.exited;
  }, 120_000);

  it('an exporter that fails before it ever served ends the supervisor with its code', async () => {
    const s = await supervise('echo $$ >> "$1"; exit 3', false);
    expect(await s.exited).toBe(3);
    expect(await s.pids()).toHaveLength(1);
  }, 60_000);

  it('a clean exit ends the supervisor', async () => {
    const s = await supervise('echo $$ >> "$1"; exit 0', true);
    expect(await s.exited).toBe(0);
    expect(await s.pids()).toHaveLength(1);
  }, 60_000);
});
