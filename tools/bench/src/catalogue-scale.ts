// The catalogue filled to N restore points (issue 19), on SQLite and on PostgreSQL: the events
// are generated, appended to a real nats-server's JetStream stream (the site's event log), and
// replayed from the log through the projector into each store — nothing is inserted behind the
// log's back. Then the API's queries are timed against the read model (in process, as the
// catalogue's query handlers call it): list-by-VM (restorePoint.list by VM, a page of 100),
// latest-per-VM (vm.list, a page of 100 VMs with each one's newest restore point and count),
// search (audit.timeline by event type from a random position; by correlation id) and job.list.
// Then the product's processes, `cairn run catalogue` on that store and `cairn run gateway`, are
// started against it and the REST API driven as operators and the console would, for the
// gateway's (and the catalogue process's) RSS at start, peak and steady (gateway-memory.ts).
//   npx tsx tools/bench/src/catalogue-scale.ts --restore-points 100000 --vms 1000
//     [--stores sqlite,postgres] [--samples 300] [--postgres postgres://postgres@127.0.0.1:5432/postgres]
//     [--no-gateway] [--gateway-rounds 200] [--gateway-clients 4]
// Prints the append rate, each store's replay (rebuild) time, p50/p99 per query, RSS; JSON at the end.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { newEvent, type CairnEvent } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { startNatsServer } from '@cairn/nats-server';
import pg from 'pg';
import { pino } from 'pino';
import { measureGatewayMemory } from './gateway-memory.ts';
import {
  CatalogueProjector, CatalogueReadModel, PostgresCatalogueBackend, PostgresCatalogueStore, SqliteCatalogueBackend, type CatalogueBackend,
} from '@cairn/catalogue';

const { values } = parseArgs({ options: {
  'restore-points': { type: 'string', default: '100000' },
  vms: { type: 'string', default: '1000' },
  stores: { type: 'string', default: 'sqlite,postgres' },
  samples: { type: 'string', default: '300' },
  postgres: { type: 'string', default: process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
  'in-flight': { type: 'string', default: '256' },
  'no-gateway': { type: 'boolean', default: false },
  'gateway-rounds': { type: 'string', default: '200' },
  'gateway-clients': { type: 'string', default: '4' },
} });
const N = Number(values['restore-points']);
const VMS = Number(values.vms);
const SAMPLES = Number(values.samples);
const site = 'bench';
const logger = pino({ level: 'warn' });
const say = (s: string) => process.stdout.write(`${s}\n`);
const mib = (b: number) => Math.round(b / 1048576);

/** A database of its own with a random name, dropped at the end. */
async function createDatabase(url: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `cairn_bench_catalogue_${randomBytes(6).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try { await c.query(sql); } finally { await c.end(); }
  };
  await admin(`CREATE DATABASE ${name}`);
  const u = new URL(url);
  u.pathname = `/${name}`;
  return { url: u.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32; };
}
const rand = rng(19);

const t0 = Date.parse('2026-01-01T00:00:00Z');
const meta = (streamId: string, correlationId: string, time: number) => ({
  site, actor: { kind: 'service' as const, id: 'data-mover@bench' }, streamId, correlationId, time: new Date(time), causationId: null,
});

function* events(): Generator<{ stream: string; event: CairnEvent }> {
  for (let v = 0; v < VMS; v++) {
    yield { stream: `vm-vm${v}`, event: newEvent('VmDiscovered', {
      vmId: `vm${v}`, name: `vm-${String(v).padStart(6, '0')}`, hypervisor: { kind: 'qemu', host: `host-${v % 100}` }, tags: ['bench'],
      disks: [{ name: 'vda', sizeBytes: 10 * 2 ** 30 }],
    }, meta(`vm-vm${v}`, `vm${v}`, t0)) };
  }
  for (let i = 0; i < N; i++) {
    const v = i % VMS;
    const jobId = `j${i}`;
    const round = Math.floor(i / VMS);
    yield { stream: `job-${jobId}`, event: newEvent('RestorePointCommitted', {
      restorePointId: `rp-${i}`, jobId, vmId: `vm${v}`, parentId: round ? `rp-${i - VMS}` : null,
      disks: [{ name: 'vda', sizeBytes: 10 * 2 ** 30, bytesRead: 2 ** 28, bytesStored: 2 ** 26, chunksNew: 64, chunksReused: 960 }],
    }, meta(`job-${jobId}`, jobId, t0 + 60_000 * (round * VMS + v))) };
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function timed(samples: number, fn: (i: number) => Promise<unknown>): Promise<{ p50: number; p99: number; max: number }> {
  for (let i = 0; i < 10; i++) await fn(i); // warm the caches and the statement cache
  const ms: number[] = [];
  for (let i = 0; i < samples; i++) {
    const s = performance.now();
    await fn(i);
    ms.push(performance.now() - s);
  }
  const r = (x: number) => Math.round(x * 100) / 100;
  return { p50: r(pct(ms, 50)), p99: r(pct(ms, 99)), max: r(Math.max(...ms)) };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-catalogue-scale-'));
  const total = VMS + N;
  say(`catalogue scale: ${N} restore points over ${VMS} VMs (${total} events), load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const nats = await startNatsServer({ dir: join(dir, 'nats'), maxPayload: 8 * 1024 * 1024 });
  const nc = await connect({ servers: nats.url });
  const log = await createJetStreamEventLog({ nc, site });
  const result: Record<string, unknown> = { restorePoints: N, vms: VMS, events: total };
  try {
    // Append: each restore point its own job stream, appended with its expected revision.
    let started = performance.now();
    const inFlight = Number(values['in-flight']);
    const pending = new Set<Promise<unknown>>();
    let n = 0;
    for (const { stream, event } of events()) {
      const p = log.append(stream, [event], { expectedRevision: 'no_stream' }).finally(() => pending.delete(p));
      pending.add(p);
      if (pending.size >= inFlight) await Promise.race(pending);
      if (++n % 100_000 === 0) say(`  appended ${n} (${Math.round(n / ((performance.now() - started) / 1000))}/s)`);
    }
    await Promise.all(pending);
    const appendS = (performance.now() - started) / 1000;
    const head = await log.headPosition();
    say(`append to JetStream: ${total} events in ${appendS.toFixed(1)} s (${Math.round(total / appendS)}/s), head ${head}`);
    result.append = { seconds: Math.round(appendS * 10) / 10, perSecond: Math.round(total / appendS) };

    for (const store of values.stores.split(',')) {
      let backend: CatalogueBackend;
      let drop = async () => undefined as void;
      // Where `cairn run catalogue --data <dataDir>` keeps its SQLite file, so it opens this one.
      const dataDir = join(dir, `catalogue-${store}`);
      let postgresUrl: string | undefined;
      if (store === 'sqlite') {
        await mkdir(dataDir, { recursive: true });
        backend = new SqliteCatalogueBackend(join(dataDir, `catalogue-${site}.sqlite`));
      } else {
        const db = await createDatabase(values.postgres);
        drop = () => db.drop();
        postgresUrl = db.url;
        backend = new PostgresCatalogueBackend({ url: db.url, site });
      }
      const projector = new CatalogueProjector({ log, backend, logger, rebuildBatch: 1000 });
      try {
        started = performance.now();
        await projector.start();
        await projector.waitForPosition(head, 24 * 3600_000);
        const replayS = (performance.now() - started) / 1000;
        say(`${store}: replayed ${head} events from the log through the projector in ${replayS.toFixed(1)} s (${Math.round(Number(head) / replayS)}/s)`);
        // As autovacuum would after a bulk load (SQLite's planner needs no statistics here).
        const live = projector.current;
        if (live instanceof PostgresCatalogueStore) await live.query('ANALYZE');
        const read = new CatalogueReadModel(() => projector.current);
        const vmIds = Array.from({ length: SAMPLES + 10 }, () => `vm${Math.floor(rand() * VMS)}`);
        const vmPages = await read.vmPage({ limit: 100 });
        // Cursors deep into the VM list, to page from anywhere.
        const vmCursors: string[] = [];
        let cursor: string | null = vmPages.next;
        while (cursor && vmCursors.length < 50) { vmCursors.push(cursor); cursor = (await read.vmPage({ limit: 100, after: cursor })).next; }
        const positions = Array.from({ length: SAMPLES + 10 }, () => Math.floor(rand() * Number(head)));
        const queries = {
          'restorePoint.list by VM (100)': await timed(SAMPLES, (i) => read.restorePointPage({ vmId: vmIds[i]!, limit: 100 })),
          'restorePoint.list by VM, next page (20)': await timed(SAMPLES, async (i) => {
            const first = await read.restorePointPage({ vmId: vmIds[i]!, limit: 20 });
            return first.next ? read.restorePointPage({ vmId: vmIds[i]!, limit: 20, after: first.next }) : first;
          }),
          'vm.list with latest per VM (100)': await timed(SAMPLES, (i) => read.vmPage({ limit: 100, ...(vmCursors.length ? { after: vmCursors[i % vmCursors.length]! } : {}) })),
          'audit.timeline search by type after a position (100)': await timed(SAMPLES, (i) => read.auditPage({ type: 'RestorePointCommitted', afterPosition: positions[i]!, limit: 100 })),
          'audit.timeline search by correlation id': await timed(SAMPLES, (i) => read.auditPage({ correlationId: `j${Math.floor(positions[i]! % N)}` })),
          'restorePoint.get': await timed(SAMPLES, (i) => read.getRestorePoint(`rp-${positions[i]! % N}`)),
          'catalogue.stats': await timed(Math.min(SAMPLES, 20), () => read.stats()),
        };
        for (const [q, r] of Object.entries(queries)) say(`  ${q.padEnd(54)} p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms`);
        const rss = process.memoryUsage().rss;
        say(`  RSS of this process (log client, projector, read model): ${mib(rss)} MiB`);
        result[store] = { replaySeconds: Math.round(replayS * 10) / 10, eventsPerSecond: Math.round(Number(head) / replayS), queries, rssMiB: mib(rss) };
        if (!values['no-gateway']) {
          // The store is full and at the head: the catalogue process opens it where this one stops.
          await projector.stop();
          const g = await measureGatewayMemory({
            natsUrl: nats.url, site, dataDir, ...(postgresUrl ? { postgresUrl } : {}), head, vms: VMS, restorePoints: N,
            rounds: Number(values['gateway-rounds']), clients: Number(values['gateway-clients']), cwd: dir, say,
          });
          for (const [route, r] of Object.entries(g.routes)) say(`  ${route.padEnd(58)} n ${String(r.n).padStart(5)}  p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms`);
          for (const k of ['gateway', 'catalogue'] as const) {
            const m = g[k];
            say(`  ${k} process RSS: ready ${m.readyMiB} MiB, peak ${m.peakMiB} MiB, steady ${m.steadyMiB} MiB after ${g.requests} requests; ${m.cpuSeconds} CPU s`);
          }
          result[store] = { ...(result[store] as object), gatewayProcess: g };
        }
      } finally {
        await projector.stop();
        await drop();
      }
    }
  } finally {
    await log.close();
    await nc.drain();
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
  result.load = loadavg().map((x) => Math.round(x * 10) / 10);
  say(JSON.stringify(result));
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
