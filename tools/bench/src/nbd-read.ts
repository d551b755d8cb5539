// Benchmark: read a 2 GiB fully allocated image over NBD into nowhere with our client
// (1, 2 and 4 connections; requests of each piece size, pipelined into preallocated
// buffers with a fixed number of bytes in flight), next to nbdcopy to null: on the same
// export. The export is served by qemu-storage-daemon.
// Run: npx tsx tools/bench/src/nbd-read.ts [--size-mib 2048] [--runs 3] [--pieces-kib 256,1024] [--inflight-mib 16]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NbdPool } from '@cairn/nbd';

const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    runs: { type: 'string', default: '3' },
    'pieces-kib': { type: 'string', default: '256,1024' },
    'inflight-mib': { type: 'string', default: '16' },
    connections: { type: 'string', default: '1,2,4' },
  },
});
const sizeBytes = Number(values['size-mib']) * MiB;
const runs = Number(values.runs);
const pieceSizes = String(values['pieces-kib']).split(',').map((k) => Number(k) * 1024);
const inflightBytes = Number(values['inflight-mib']) * MiB;
const connectionCounts = String(values.connections).split(',').map(Number);

async function makeImage(path: string): Promise<void> {
  const fh = await open(path, 'w');
  const block = Buffer.allocUnsafe(16 * MiB);
  randomFillSync(block);
  try {
    for (let at = 0; at < sizeBytes; at += block.length) {
      // Vary each block a little so no two are identical.
      block.writeUInt32LE(at / block.length, 0);
      await fh.write(block, 0, Math.min(block.length, sizeBytes - at), at);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function startDaemon(image: string, socket: string): Promise<ChildProcess> {
  const child = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=file0,filename=${image},cache.direct=off`,
    '--blockdev', 'driver=raw,node-name=disk0,file=file0',
    '--nbd-server', `addr.type=unix,addr.path=${socket},max-connections=16`,
    '--export', 'type=nbd,id=exp0,node-name=disk0,name=disk0,writable=off',
  ], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 100; i++) {
    if (await stat(socket).then(() => true, () => false)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error('qemu-storage-daemon did not create its socket');
}

/** Reads the whole export with `depth` requests in flight, each into its own reused buffer. */
async function readAll(pool: NbdPool, pieceBytes: number): Promise<number> {
  const depth = Math.max(1, Math.floor(inflightBytes / pieceBytes));
  const buffers = Array.from({ length: depth }, () => Buffer.allocUnsafe(pieceBytes));
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(buffers.map(async (buf) => {
    while (next < pool.size) {
      const offset = next;
      const n = Math.min(pieceBytes, pool.size - offset);
      next += n;
      await pool.read(offset, n, buf);
    }
  }));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function nbdcopy(socket: string, connections: number): number {
  const started = process.hrtime.bigint();
  const r = spawnSync('nbdcopy', [`--connections=${connections}`, `nbd+unix:///disk0?socket=${socket}`, 'null:'], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`nbdcopy exited with ${r.status}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (seconds: number) => sizeBytes / seconds / 1e6;

const dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-bench-'));
let daemon: ChildProcess | null = null;
try {
  const image = join(dir, 'disk.raw');
  const socket = join(dir, 'nbd.sock');
  await makeImage(image);
  daemon = await startDaemon(image, socket);
  const results: Array<{ what: string; runs: number[] }> = [];
  for (const connections of connectionCounts) {
    const ours = new Map<number, number[]>(pieceSizes.map((p) => [p, []]));
    const theirs: number[] = [];
    // Runs interleave the readers so a noisy neighbour hurts them alike.
    for (let run = 0; run < runs; run++) {
      for (const pieceBytes of pieceSizes) {
        const pool = await NbdPool.connect({ path: socket }, { exportName: 'disk0', connections, pieceBytes, timeoutMs: 120_000 });
        try {
          ours.get(pieceBytes)!.push(rate(await readAll(pool, pieceBytes)));
        } finally {
          await pool.close();
        }
      }
      theirs.push(rate(nbdcopy(socket, connections)));
    }
    for (const [pieceBytes, r] of ours) {
      results.push({ what: `@cairn/nbd NbdPool, ${connections} conn, ${pieceBytes / 1024} KiB requests, ${inflightBytes / MiB} MiB in flight`, runs: r });
    }
    results.push({ what: `nbdcopy --connections=${connections} (256 KiB requests) to null:`, runs: theirs });
  }
  console.log(`\nread ${sizeBytes / MiB} MiB from qemu-storage-daemon over a unix socket, ${runs} runs each (MB/s, 1 MB = 10^6 bytes)`);
  console.log('| reader | median MB/s | runs |');
  console.log('| --- | ---: | --- |');
  for (const r of results) console.log(`| ${r.what} | ${median(r.runs).toFixed(0)} | ${r.runs.map((x) => x.toFixed(0)).join(', ')} |`);
} finally {
  daemon?.kill('SIGTERM');
  await rm(dir, { recursive: true, force: true });
}
