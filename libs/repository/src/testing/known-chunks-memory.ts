// Known-chunks memory study (docs/benchmarks.md, "Known-chunks memory"): lists a simulated
// repository of `TiB` tebibytes of unique data at the default 256 KiB chunk size (4,194,304
// chunk objects per TiB) into `KnownChunks` through its real listing path, and prints the
// process memory it holds afterwards (V8 heap + array buffers, after a full GC), the time the
// listing took and the cost of a lookup that hits and one that misses. Run:
//   npx node --expose-gc --import tsx libs/repository/src/testing/known-chunks-memory.ts [TiB=1]
import { randomBytes } from 'node:crypto';
import type { Backend, ObjectInfo } from '../backend/backend.ts';
import { chunkKey } from '../format/layout.ts';
import { KnownChunks } from '../write/known-chunks.ts';

const tib = Number(process.argv[2] ?? 1);
const chunkSize = 256 * 1024;
const count = Math.round((tib * 2 ** 40) / chunkSize);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc --import tsx (the figures need a full GC before each reading)');

/** The ids are a pure function of their index, so the study needs no table of its own. */
const seed = randomBytes(32);
function idAt(i: number): string {
  const b = Buffer.from(seed);
  b.writeUInt32BE(i >>> 0, 0);
  b.writeUInt32BE(Math.floor(i / 2 ** 32), 4);
  // A cheap mix so that ids spread over the whole space like HMAC outputs do.
  for (let k = 0; k < 32; k += 4) b.writeUInt32BE((Math.imul(b.readUInt32BE(k) ^ (i * 2654435761), 0x85ebca6b) ^ k) >>> 0, k);
  return b.toString('hex');
}

/** Lists `count` chunk keys; every other call answers "no". */
const backend: Backend = {
  location: 'memory:known-chunks-study',
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (prefix !== 'chunks/') return;
    const mtime = new Date();
    for (let i = 0; i < count; i++) yield { key: chunkKey(idAt(i)), size: chunkSize, mtime };
  },
  async exists() { return false; },
  async get() { throw new Error('not in this study'); },
  async getRange() { throw new Error('not in this study'); },
  async stat() { throw new Error('not in this study'); },
  async put() { throw new Error('not in this study'); },
  async delete() { /* nothing */ },
  async flush() { /* nothing */ },
};

function held(): number {
  gc!(); gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const before = held();
const known = new KnownChunks(backend, 0);
const t0 = performance.now();
await known.contains(idAt(0)); // past the probe limit: lists every chunk once
const listMs = performance.now() - t0;
const after = held();
const rss = process.memoryUsage().rss;

const lookups = 200_000;
const present: string[] = [];
for (let i = 0; i < lookups; i++) present.push(idAt((i * 7919) % count));
let hits = 0;
const t1 = performance.now();
for (const p of present) if (known.has(p)) hits++;
const hitUs = ((performance.now() - t1) * 1000) / lookups;
const misses: string[] = [];
for (let i = 0; i < lookups; i++) misses.push(randomBytes(32).toString('hex'));
let falseHits = 0;
const t2 = performance.now();
for (const m of misses) if (known.has(m)) falseHits++;
const missUs = ((performance.now() - t2) * 1000) / lookups;
if (hits !== lookups || falseHits !== 0) throw new Error(`wrong answers: ${hits}/${lookups} hits, ${falseHits} false hits`);

const MB = 1e6;
console.log(JSON.stringify({
  tib, chunkSize, chunks: count,
  heldMB: +((after - before) / MB).toFixed(1),
  heldMBPerTiB: +((after - before) / MB / tib).toFixed(1),
  bytesPerChunk: +((after - before) / count).toFixed(1),
  rssMB: +(rss / MB).toFixed(0),
  listSeconds: +(listMs / 1000).toFixed(2),
  hitLookupUs: +hitUs.toFixed(2),
  missLookupUs: +missUs.toFixed(2),
}));
known.close();
