// The full's repository write alone, in one process: the first `<MiB>` of a generated raw
// image (product.ts / run.ts `--images`) written as one full restore point into a fresh
// directory repository (fsync on), read in 4 MiB extents as the data mover reads them. Prints
// the CPU seconds of the process (all threads; user, system) and of its main thread, the wall
// time and the load. Run it in each build's worktree in turn for an A/B of the write path
// without NATS, NBD and QEMU (docs/benchmarks.md, "The product").
//   npx tsx tools/bench/src/write-ab.ts [MiB (1024)] [image (/tmp/img-full/base.raw)]
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryBackend, initRepository } from '@cairn/repository';

const MIB = Number(process.argv[2] ?? 1024);
const IMAGE = process.argv[3] ?? '/tmp/img-full/base.raw';
const SIZE = MIB * 1024 * 1024;
const CHUNK = 256 * 1024;
const STEP = 4 * 1024 * 1024;
const fd = openSync(IMAGE, 'r');
// utime + stime of the main thread's task, in clock ticks of 10 ms.
const mainMs = (): number => {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) * 10;
};
const root = await mkdtemp(join(tmpdir(), 'cairn-write-ab-'));
const repo = await initRepository(new DirectoryBackend(root), { passphrase: 'bench', kdf: { N: 1024, r: 8, p: 1 }, chunkSize: CHUNK });
const buf = Buffer.allocUnsafeSlow(STEP);
async function* extents(): AsyncGenerator<{ offset: number; data: Uint8Array }> {
  for (let o = 0; o < SIZE; o += STEP) {
    const n = readSync(fd, buf, 0, STEP, o);
    yield { offset: o, data: buf.subarray(0, n) };
  }
}
async function* warm(): AsyncGenerator<{ offset: number; data: Uint8Array }> { yield { offset: 0, data: Buffer.alloc(CHUNK, 1) }; }
// Workers started and code warm before the measured write.
await repo.writeRestorePoint({ vm: { id: 'warm', name: 'warm' }, disks: [{ name: 'disk0', sizeBytes: CHUNK, extents: warm() }], labels: {} });
const m0 = mainMs();
const c0 = process.cpuUsage();
const t0 = performance.now();
await repo.writeRestorePoint({ vm: { id: 'vm', name: 'vm' }, disks: [{ name: 'disk0', sizeBytes: SIZE, extents: extents() }], labels: {} });
const c = process.cpuUsage(c0);
const wall = performance.now() - t0;
const m = mainMs() - m0;
await repo.close();
closeSync(fd);
await rm(root, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({
  mib: MIB, cpuSeconds: +((c.user + c.system) / 1e6).toFixed(2), user: +(c.user / 1e6).toFixed(2), system: +(c.system / 1e6).toFixed(2),
  mainThread: m / 1000, wallSeconds: +(wall / 1000).toFixed(1), load: loadavg().map((l) => +l.toFixed(1)),
})}\n`);
