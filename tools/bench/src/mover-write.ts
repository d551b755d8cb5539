// The repository side of one data-mover job at scale (issue 19), in one process: writes
// restore points shaped like scale.ts's simulated VMs (a 4 MiB thin disk of which 4 chunks
// hold data, a first full backup each) into a directory repository, `--at-once` of them
// concurrently as a mover's `--transfers` do, and prints the CPU time (all threads) per
// restore point. For iterating on the write path without NATS, NBD and seven processes.
//   npx tsx tools/bench/src/mover-write.ts [--points 2000] [--at-once 8] [--dir /tmp/x] [--fsync 1]
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DirectoryBackend, initRepository } from '@cairn/repository';

const { values } = parseArgs({ options: {
  points: { type: 'string', default: '2000' }, 'at-once': { type: 'string', default: '8' },
  dir: { type: 'string' }, fsync: { type: 'string', default: '1' },
} });
const POINTS = Number(values.points);
const AT_ONCE = Number(values['at-once']);
const CHUNK = 256 * 1024;
const DISK = 4 * 1024 * 1024;
const root = await mkdtemp(join(values.dir ?? tmpdir(), 'cairn-mover-write-'));
const backend = new DirectoryBackend(root, { fsync: values.fsync !== '0' });
const repo = await initRepository(backend, { passphrase: 'bench', kdf: { N: 1024, r: 8, p: 1 }, chunkSize: CHUNK });

// Four chunks of fresh (incompressible) data per point at distinct offsets, as a thin disk's
// first backup reads them; the holes are zeros the writer never sees.
async function* extents(): AsyncGenerator<{ offset: number; data: Uint8Array }> {
  for (const c of [1, 5, 9, 13]) yield { offset: c * CHUNK, data: randomFillSync(Buffer.allocUnsafe(CHUNK)) };
}
const one = (i: number) => repo.writeRestorePoint({
  vm: { id: `vm-${i}`, name: `vm-${i}` },
  disks: [{ name: 'disk0', sizeBytes: DISK, extents: extents() }],
  labels: { jobId: `job-${i}` },
});

// CPU ms of the main thread alone (utime + stime of its task, in clock ticks of 10 ms): the
// thread that in a data mover also serves the NBD sockets and NATS.
const mainThreadMs = () => {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) * 10;
};
await Promise.all(Array.from({ length: AT_ONCE }, (_, k) => one(-1 - k))); // workers started, code warm
const main0 = mainThreadMs();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
let next = 0;
await Promise.all(Array.from({ length: AT_ONCE }, async () => {
  while (next < POINTS) await one(next++);
}));
const wall = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const mainMs = mainThreadMs() - main0;
const cpuMs = (cpu.user + cpu.system) / 1000;
await repo.close();
await rm(root, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({
  points: POINTS, atOnce: AT_ONCE, fsync: values.fsync !== '0', wallSeconds: +(wall / 1000).toFixed(1),
  cpuSeconds: +(cpuMs / 1000).toFixed(2), cpuMsPerPoint: +(cpuMs / POINTS).toFixed(2),
  userMsPerPoint: +(cpu.user / 1000 / POINTS).toFixed(2), systemMsPerPoint: +(cpu.system / 1000 / POINTS).toFixed(2),
  mainThreadMsPerPoint: +(mainMs / POINTS).toFixed(2),
  load: loadavg().map((l) => +l.toFixed(1)),
})}\n`);
