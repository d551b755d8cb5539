// Probe (issue 20): would O_DIRECT writes speed up the restore's chunk workers? No product code:
// two worker threads write the non-zero 256 KiB chunks of a raw image (realistic content) at
// their own offsets of one sparse file, in batches of 32 chunks taken in turn (as a local
// restore's batches go to its two workers), with ~230 µs of CPU per chunk beside the write (an
// HMAC-SHA256 of the chunk and a zstd decompression of a real chunk: the worker's id check and
// zstd), then a final fsync. Variants, each run in a process of its own:
//   buffered  as today: writeSync into the page cache, fdatasync every 32 MiB on the main
//             thread's libuv pool (restore-disk.ts WRITEBACK_BYTES), final fsync
//   buffered:N the same with an fdatasync every N MiB (0: only the final fsync)
//   direct    O_DIRECT writeSync from a page-aligned buffer, final fsync
//   direct-async  O_DIRECT fs.write (libuv's pool) of chunk i while the thread prepares chunk i+1
//             (two aligned buffers), final fsync
// Node has no aligned allocation: the buffers are WebAssembly memories (page-aligned, see
// alignedChunk), checked by a trial O_DIRECT write on a scratch file beside the target.
//
//   node odirect-probe.mjs --image /tmp/img-full/changed.raw --target /tmp/odp/t.raw \
//     --variants buffered,direct,direct-async --rounds 3 [--cpu 1] [--chunks 5000] [--workers 2]
// --cpu: 1 the HMAC and the zstd decompression per chunk, 2 the HMAC only, 0 none (the writes alone).
// One JSON line per run on stdout, a table per variant on stderr.
/* global WebAssembly */
import { Buffer } from 'node:buffer';
import { createHmac, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import {
  closeSync, constants, fdatasync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, rmSync, statSync, write, writeFileSync, writeSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { constants as zc, zstdCompressSync, zstdDecompressSync } from 'node:zlib';

const CHUNK = 256 * 1024;
const BATCH = 32;
const WRITEBACK_BYTES = 32 * 1024 * 1024;
const PAGE = 4096;

/**
 * A page-aligned CHUNK-byte buffer. A WebAssembly memory is mmap'd whole, so its buffer starts on a
 * page; a trial O_DIRECT write to `scratch` confirms the kernel takes it (EINVAL: misaligned).
 * (A view of a Buffer.allocUnsafeSlow found by EINVAL trial alone is only 512-byte aligned here,
 * the device's logical block, and such writes ran 17x slower: 3.5 ms per 256 KiB, not 0.2.)
 */
function alignedChunk(scratch) {
  const mem = new WebAssembly.Memory({ initial: CHUNK / 65536, maximum: CHUNK / 65536 });
  const buf = Buffer.from(mem.buffer, 0, CHUNK);
  buf.fill(0);
  const fd = openSync(scratch, constants.O_CREAT | constants.O_WRONLY | constants.O_DIRECT, 0o600);
  try {
    writeSync(fd, buf, 0, PAGE, 0);
  } finally {
    closeSync(fd);
  }
  return buf;
}

function workerMain() {
  const { image, fd, variant, cpu, scratch, next, chunkList } = workerData;
  const imgFd = openSync(image, 'r');
  const counter = new Int32Array(next);
  const list = new Float64Array(chunkList);
  const direct = variant.startsWith('direct');
  const bufs = direct ? [alignedChunk(scratch), alignedChunk(scratch)] : [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
  // 16 real chunks of the image compressed at level 1, as the repository stores them; one decompressed per chunk written.
  const compressed = [];
  for (let k = 0; k < 16; k++) {
    const sample = Buffer.allocUnsafe(CHUNK);
    readSync(imgFd, sample, 0, CHUNK, list[Math.floor((k * list.length) / 16)] * CHUNK);
    compressed.push(zstdCompressSync(sample, { params: { [zc.ZSTD_c_compressionLevel]: 1 } }));
  }
  let nth = 0;
  const key = randomBytes(32);
  const t0 = process.threadCpuUsage();
  let writeWaitNs = 0n;
  /** The chunk's plaintext into `buf` (the read stands for the decompression into plainBuf) and the worker's CPU work. */
  const prepare = (buf, at) => {
    readSync(imgFd, buf, 0, CHUNK, at);
    if (cpu) createHmac('sha256', key).update(buf).digest();
    if (cpu === 1) zstdDecompressSync(compressed[nth++ & 15], { chunkSize: CHUNK + 1024 });
  };
  const writeAsync = (buf, at) => new Promise((resolve, reject) => {
    write(fd, buf, 0, CHUNK, at, (err) => (err ? reject(err) : resolve()));
  });
  (async () => {
    let chunks = 0;
    const pending = [undefined, undefined];
    for (;;) {
      const b = Atomics.add(counter, 0, 1);
      if (b * BATCH >= list.length) break;
      const end = Math.min(list.length, (b + 1) * BATCH);
      for (let i = b * BATCH; i < end; i++) {
        const at = list[i] * CHUNK;
        if (variant === 'direct-async') {
          const k = chunks & 1;
          if (pending[k]) { const w = process.hrtime.bigint(); await pending[k]; writeWaitNs += process.hrtime.bigint() - w; }
          prepare(bufs[k], at);
          pending[k] = writeAsync(bufs[k], at);
        } else {
          prepare(bufs[0], at);
          const w = process.hrtime.bigint();
          for (let done = 0; done < CHUNK;) done += writeSync(fd, bufs[0], done, CHUNK - done, at + done);
          writeWaitNs += process.hrtime.bigint() - w;
        }
        chunks++;
      }
      if (variant === 'direct-async') {
        // A batch's reply goes back once its writes are done, as openFilesTo's does.
        const w = process.hrtime.bigint();
        await Promise.all(pending.filter(Boolean));
        writeWaitNs += process.hrtime.bigint() - w;
        pending[0] = pending[1] = undefined;
      }
      parentPort.postMessage({ op: 'batch', bytes: (end - b * BATCH) * CHUNK });
    }
    const c = process.threadCpuUsage(t0);
    parentPort.postMessage({ op: 'done', chunks, userMs: c.user / 1000, sysMs: c.system / 1000, writeWaitMs: Number(writeWaitNs) / 1e6 });
    closeSync(imgFd);
  })().catch((e) => { parentPort.postMessage({ op: 'error', message: String(e?.stack ?? e) }); });
}

/** Bytes between background fdatasyncs: `buffered` 32 MiB as the restore, `buffered:N` N MiB (0: none), direct none. */
function writebackBytes(variant) {
  if (variant.startsWith('direct')) return 0;
  const [, mib] = variant.split(':');
  return mib === undefined ? WRITEBACK_BYTES : Number(mib) * 1024 * 1024;
}

/** Indexes of the image's non-zero chunks (the first `max`; cached in a file beside the target). */
function nonZeroChunks(image, max, cache) {
  const size = statSync(image).size;
  try {
    const known = JSON.parse(readFileSync(cache, 'utf8'));
    if (known.image === image && known.size === size && known.max === max) return known;
  } catch { /* not cached yet */ }
  const fd = openSync(image, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  const zero = Buffer.alloc(CHUNK);
  const out = [];
  for (let i = 0; i * CHUNK < size && out.length < max; i++) {
    const n = readSync(fd, buf, 0, CHUNK, i * CHUNK);
    if (n === CHUNK && !buf.equals(zero)) out.push(i);
  }
  closeSync(fd);
  writeFileSync(cache, JSON.stringify({ image, size, max, chunks: out }));
  return { size, chunks: out };
}

async function runOne(opts) {
  const { image, target, variant, cpu, max } = opts;
  const { size, chunks } = nonZeroChunks(image, max, `${target}.chunks.json`);
  rmSync(target, { force: true });
  const flags = constants.O_CREAT | constants.O_WRONLY | constants.O_EXCL | (variant.startsWith('direct') ? constants.O_DIRECT : 0);
  const fd = openSync(target, flags, 0o600);
  const next = new SharedArrayBuffer(4);
  const chunkList = new SharedArrayBuffer(chunks.length * 8);
  new Float64Array(chunkList).set(chunks);
  const scratch = `${target}.align`;
  const cpu0 = process.cpuUsage();
  const workers = Array.from({ length: opts.workers }, () => new Worker(fileURLToPath(import.meta.url), {
    workerData: { image, fd, variant, cpu, scratch, next, chunkList },
  }));
  // Start the clock once both workers are up (the product's pool is started before a restore).
  await Promise.all(workers.map((w) => new Promise((r) => w.once('online', r))));
  const t0 = performance.now();
  ftruncateSync(fd, size);
  let unsynced = 0;
  const writeback = writebackBytes(variant);
  let syncs = 0;
  let syncing;
  const results = await new Promise((resolve, reject) => {
    const done = [];
    for (const w of workers) {
      w.on('error', reject);
      w.on('message', (m) => {
        if (m.op === 'error') reject(new Error(m.message));
        else if (m.op === 'batch' && writeback > 0) {
          unsynced += m.bytes;
          if (unsynced >= writeback && !syncing) {
            unsynced = 0;
            syncs++;
            syncing = new Promise((r) => fdatasync(fd, (e) => { if (e) reject(e); syncing = undefined; r(); }));
          }
        } else if (m.op === 'done') {
          done.push(m);
          if (done.length === workers.length) resolve(done);
        }
      });
    }
  });
  const tWritten = performance.now();
  if (syncing) await syncing;
  fsyncSync(fd);
  const tEnd = performance.now();
  const used = process.cpuUsage(cpu0);
  closeSync(fd);
  await Promise.all(workers.map((w) => w.terminate()));
  const blocks = statSync(target).blocks;
  rmSync(target, { force: true });
  rmSync(scratch, { force: true });
  return {
    variant, cpuWork: opts.cpu, chunks: chunks.length, wallMs: +(tEnd - t0).toFixed(1), writtenMs: +(tWritten - t0).toFixed(1),
    fsyncMs: +(tEnd - tWritten).toFixed(1), userMs: +(used.user / 1000).toFixed(0), sysMs: +(used.system / 1000).toFixed(0),
    workers: results.map((r) => ({ chunks: r.chunks, userMs: +r.userMs.toFixed(0), sysMs: +r.sysMs.toFixed(0), writeWaitMs: +r.writeWaitMs.toFixed(0) })),
    syncs, mbWritten: Math.round(blocks * 512 / 1e6), load: loadavg()[0],
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      image: { type: 'string', default: '/tmp/img-full/changed.raw' },
      target: { type: 'string', default: '/tmp/odp/t.raw' },
      variants: { type: 'string', default: 'buffered,direct,direct-async' },
      rounds: { type: 'string', default: '3' },
      cpu: { type: 'string', default: '1' },
      chunks: { type: 'string', default: '5000' },
      one: { type: 'string' },
      workers: { type: 'string', default: '2' },
    },
  });
  const opts = { image: values.image, target: values.target, cpu: Number(values.cpu), max: Number(values.chunks), workers: Number(values.workers) };
  if (values.one) {
    process.stdout.write(`${JSON.stringify(await runOne({ ...opts, variant: values.one }))}\n`);
    return;
  }
  execFileSync('mkdir', ['-p', values.target.replace(/\/[^/]*$/, '')]);
  const all = [];
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const v of values.variants.split(',')) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--one', v, '--image', opts.image, '--target', opts.target,
        '--cpu', values.cpu, '--chunks', values.chunks, '--workers', values.workers], { encoding: 'utf8' });
      const res = JSON.parse(out);
      all.push(res);
      process.stdout.write(out);
    }
  }
  const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };
  for (const v of values.variants.split(',')) {
    const rs = all.filter((r) => r.variant === v);
    process.stderr.write(`${v.padEnd(13)} wall ${rs.map((r) => r.wallMs).join(' / ')} (median ${med(rs.map((r) => r.wallMs))}) `
      + `fsync ${med(rs.map((r) => r.fsyncMs))} user ${med(rs.map((r) => r.userMs))} sys ${med(rs.map((r) => r.sysMs))} ms, load ${rs.map((r) => r.load.toFixed(1)).join(' / ')}\n`);
  }
}

if (isMainThread) await main();
else workerMain();
