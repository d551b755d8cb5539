// A full data disk (issue 22): `cairn up`'s data directory on a small tmpfs made by the test
// (root only), filled to the last byte. The stack keeps running: the restore at hand fails with
// a clear error naming the full disk, the log file degrades instead of killing the process,
// /health answers; once space returns the same restore succeeds and the log is written again;
// stopping the stack leaves no nats-server behind.
import { execFileSync } from 'node:child_process';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CommandBus } from '@cairn/messaging';
import { startStack } from '@cairn/cli';

const isRoot = process.getuid?.() === 0;

/** Writes zeros into `file` until the file system has no byte left; returns the bytes written. */
async function fillToTheBrim(file: string): Promise<number> {
  const fh = await open(file, 'w');
  let written = 0;
  try {
    for (const size of [1 << 20, 1 << 12, 1]) {
      const buf = Buffer.alloc(size);
      for (;;) {
        try {
          written += (await fh.write(buf)).bytesWritten;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
  return written;
}

const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe.skipIf(!isRoot)('a full data disk under cairn up (skipped unless root: the test mounts a tmpfs)', () => {
  const h = useHarness();

  it('keeps the stack up, fails the restore at hand clearly, and recovers when space returns', async () => {
    const base = await h.tmpDir('cairn-e2e-fulldisk-');
    const dataDir = join(base, 'data');
    execFileSync('mkdir', ['-p', dataDir]);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=160m,mode=0755', 'tmpfs', dataDir]);
    h.onClose(() => { execFileSync('umount', ['-l', dataDir]); });
    const said: string[] = [];
    const stack = await startStack({ dataDir, restoreRoots: [], log: (l) => said.push(l) });
    let stopped = false;
    h.onClose(() => (stopped ? undefined : stack.stop()));
    const natsPid = stack.nats!.pid!;
    const w = await stack.repository.writeRestorePoint({
      vm: { id: 'vm1', name: 'vm1' }, disks: [{ name: 'vda', sizeBytes: 8 << 20, extents: [{ offset: 0, data: Buffer.alloc(8 << 20, 9) }] }],
    });
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'tester' }, defaultTimeoutMs: 120_000 });
    const restore = (name: string) => bus.send('data-mover', 'RestoreDisk', { restorePointId: w.restorePointId, disk: 'vda', target: { kind: 'file', path: join(dataDir, 'restores', name) } });
    const health = async () => (await fetch(`${stack.gatewayUrl}/health`)).status;

    // To the brim.
    const filler = join(dataDir, 'filler');
    const bytes = await fillToTheBrim(filler);
    expect(bytes).toBeGreaterThan(0);

    const failed = await restore('while-full.raw');
    expect(failed.accepted).toBe(false);
    expect(!failed.accepted && failed.error.message).toMatch(/ENOSPC|no space/i);
    await stat(join(dataDir, 'restores', 'while-full.raw')).then(() => expect.unreachable('a partial image was left'), () => undefined);
    // The log file cannot take the request log lines (a 401 is logged): the stack says so and goes on.
    const unauthenticated = () => fetch(`${stack.gatewayUrl}/v1/vms`).then((r) => r.status);
    await waitFor(async () => { expect(await unauthenticated()).toBe(401); return said.some((l) => /cannot write .*cairn\.log \(ENOSPC\)/.test(l)); },
      { what: 'the full log disk reported', timeoutMs: 60_000 });
    expect(alive(process.pid) && alive(natsPid)).toBe(true);
    expect([200, 503]).toContain(await health());

    // Space returns: the same restore succeeds, the log file is written again.
    await rm(filler);
    const ok = await restore('after.raw');
    expect(ok, JSON.stringify(ok)).toMatchObject({ accepted: true });
    expect((await stat(join(dataDir, 'restores', 'after.raw'))).size).toBe(8 << 20);
    await waitFor(async () => { await unauthenticated(); return said.some((l) => /is written again/.test(l)); }, { what: 'the log written again', timeoutMs: 60_000 });
    expect(await health()).toBe(200);
    expect((await readFile(stack.logFile, 'utf8')).length).toBeGreaterThan(0);

    // No process left behind.
    await stack.stop();
    stopped = true;
    await waitFor(() => !alive(natsPid), { what: 'nats-server stopped', timeoutMs: 30_000 });
  }, 300_000);
});
