// What the running totals of catalogue.stats (triggers, catalogue.totals.ts) cost the projection:
// the same batches of RestorePointCommitted events applied to a fresh store with the triggers
// (A) and with them dropped (B), alternating A/B/A/B so load drifts hit both, on SQLite and
// PostgreSQL; prints events/s and CPU seconds of this process per round.
//   npx tsx tools/bench/src/catalogue-totals-ab.ts [--events 20000] [--rounds 2] [--stores sqlite,postgres]
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { newEvent, type RecordedEvent } from '@cairn/contracts';
// eslint-disable-next-line @nx/enforce-module-boundaries -- a bench of the catalogue's own stores, as catalogue-scale.ts
import { PostgresCatalogueStore, SqliteCatalogueStore, type CatalogueStore } from '@cairn/catalogue';
import pg from 'pg';

const { values } = parseArgs({ options: {
  events: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '2' }, stores: { type: 'string', default: 'sqlite,postgres' },
  postgres: { type: 'string', default: process.env.CAIRN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres' },
} });
const N = Number(values.events);
const t0 = Date.parse('2026-01-01T00:00:00Z');
const events: RecordedEvent[] = Array.from({ length: N }, (_, i) => ({
  position: BigInt(i + 1), revision: 0n,
  event: newEvent('RestorePointCommitted', {
    restorePointId: `rp-${i}`, jobId: `j${i}`, vmId: `vm${i % 100}`, parentId: null,
    disks: [{ name: 'vda', sizeBytes: 2 ** 30, bytesRead: 2 ** 28, bytesStored: 2 ** 26, chunksNew: 64, chunksReused: 960 }],
  }, { site: 'bench', streamId: `job-j${i}`, correlationId: `j${i}`, actor: { kind: 'service', id: 'data-mover@bench' }, time: new Date(t0 + i * 1000), causationId: null }),
}));
// The tables whose triggers keep the totals (catalogue.totals.ts COUNTED).
const COUNTED = ['restore_points', 'jobs', 'vms', 'test_restores'];
const triggers = COUNTED.flatMap((t) => ['insert', 'update', 'delete'].map((op) => `catalogue_totals_${t}_${op}`));

async function open(store: string, withTotals: boolean): Promise<{ s: CatalogueStore; drop(): Promise<void> }> {
  if (store === 'sqlite') {
    const s = SqliteCatalogueStore.open(':memory:');
    if (!withTotals) for (const t of triggers) s.db.db.exec(`DROP TRIGGER IF EXISTS ${t}`);
    return { s, drop: async () => undefined };
  }
  const name = `cairn_bench_totals_${randomBytes(5).toString('hex')}`;
  const admin = async (sql: string) => { const c = new pg.Client({ connectionString: values.postgres }); await c.connect(); try { await c.query(sql); } finally { await c.end(); } };
  await admin(`CREATE DATABASE ${name}`);
  const u = new URL(values.postgres); u.pathname = `/${name}`;
  const s = await PostgresCatalogueStore.open(u.toString(), 'cairn_catalogue_bench');
  if (!withTotals) for (const t of COUNTED) await s.query(`DROP TRIGGER IF EXISTS catalogue_totals_${t} ON ${t}`);
  return { s, drop: async () => { await s.close(); await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); } };
}

async function main(): Promise<void> {
  process.stdout.write(`${N} RestorePointCommitted events, 1,000 a batch; load ${loadavg().map((x) => x.toFixed(1)).join(' ')}\n`);
  for (const store of values.stores.split(',')) {
    for (let r = 0; r < Number(values.rounds); r++) {
      for (const withTotals of [true, false]) {
        const { s, drop } = await open(store, withTotals);
        const cpu = process.cpuUsage();
        const started = performance.now();
        for (let i = 0; i < N; i += 1000) await s.apply(events.slice(i, i + 1000));
        const sec = (performance.now() - started) / 1000;
        const used = process.cpuUsage(cpu);
        process.stdout.write(`${store} round ${r + 1} ${withTotals ? 'A with totals   ' : 'B without totals'}: ${Math.round(N / sec)} events/s, ${sec.toFixed(1)} s, this process ${((used.user + used.system) / 1e6).toFixed(1)} CPU s, load ${loadavg()[0]!.toFixed(1)}\n`);
        await drop();
      }
    }
  }
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
