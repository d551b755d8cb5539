// The control path of a backup job, end to end with real NATS and real QEMU (one stack and one
// VM shared by the file): how often each service reads the job's stream `job-<id>` during one
// job (commands carry what their receiver needs, so nobody re-reads what its sender knew), and
// a second backup of a VM that has one in flight waits its turn instead of failing.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import type { EventLog } from '@cairn/eventlog';
import { startDemoVm, startStack, type Stack } from '@cairn/cli';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

/** Reads of, and appends to, each `job-<id>` stream, per service: service → jobId → count. */
const reads = new Map<string, Map<string, number>>();
const appends = new Map<string, Map<string, number>>();

function count(table: Map<string, Map<string, number>>, service: string, streamId: string): void {
  if (!streamId.startsWith('job-')) return;
  const per = table.get(service) ?? new Map<string, number>();
  per.set(streamId.slice(4), (per.get(streamId.slice(4)) ?? 0) + 1);
  table.set(service, per);
}

function counting(service: string, log: EventLog): EventLog {
  return new Proxy(log, {
    get(target, prop, receiver) {
      if (prop === 'readStream') {
        return (streamId: string, options?: Parameters<EventLog['readStream']>[1]) => {
          count(reads, service, streamId);
          return target.readStream(streamId, options);
        };
      }
      if (prop === 'append') {
        return (streamId: string, ...rest: [Parameters<EventLog['append']>[1], Parameters<EventLog['append']>[2]]) => {
          count(appends, service, streamId);
          return target.append(streamId, ...rest);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

function countsOf(table: Map<string, Map<string, number>>, jobId: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [service, per] of table) if (per.get(jobId)) out[service] = per.get(jobId)!;
  return out;
}

describe('control path of a backup job (real NATS, real QEMU)', () => {
  const h = useHarness();
  let stack: Stack;
  let catalogue: CatalogueClient;
  let args: string[];
  let stopVm: () => Promise<void>;
  let write: (n: number) => Promise<void>;

  beforeAll(async () => {
    const dataDir = await h.tmpDir('cairn-e2e-control-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    stopVm = () => vm.stop();
    write = (n) => vm.write(n);
    stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], wrapLog: counting });
    catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    args = ['--data', dataDir];
  }, 180_000);

  afterAll(async () => {
    await stack?.stop();
    await stopVm?.();
  }, 60_000);

  it('each service reads the job stream at most once during one backup job', async () => {
    await write(8);
    const r = await cli([...args, '--json', 'backup', 'demo']);
    expect(r.code, r.stderr).toBe(0);
    const { jobId } = JSON.parse(r.stdout) as { jobId: string };
    const job = await waitForJobEnd(catalogue, jobId, 180_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const counts = countsOf(reads, jobId);
    const written = countsOf(appends, jobId);
    console.log(`job-${jobId} per service: reads ${JSON.stringify(counts)}, appends ${JSON.stringify(written)}`);
    // The counting sees each service's log client (each wrote its part of the job).
    expect(Object.keys(written).sort()).toEqual(['data-mover', 'scheduler', 'snapshot-coordinator']);
    // Before issue 13's change: scheduler 4, snapshot-coordinator 3, data-mover 3 (10 in all).
    for (const [service, n] of Object.entries(counts)) expect(n, `${service} read job-${jobId} ${n} times`).toBeLessThanOrEqual(1);
  }, 240_000);

  it('a second backup of a VM with one in flight is queued and completes after it, not failed', async () => {
    await write(8);
    const [a, b] = await Promise.all([
      cli([...args, '--json', 'backup', 'demo']),
      cli([...args, '--json', 'backup', 'demo']),
    ]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    const ids = [a, b].map((x) => (JSON.parse(x.stdout) as { jobId: string }).jobId);
    const jobs = await Promise.all(ids.map((id) => waitForJobEnd(catalogue, id, 240_000)));
    for (const j of jobs) expect(j.state, `${j.jobId}: ${JSON.stringify(j.failure)}`).toBe('completed');
    // One after the other: the later one started only after the earlier one's view was released.
    const started = (j: typeof jobs[0]) => j.events.find((e) => e.type === 'JobStarted')!.position;
    const released = (j: typeof jobs[0]) => j.events.find((e) => e.type === 'SnapshotReleased')!.position;
    const [first, second] = [...jobs].sort((x, y) => started(x) - started(y));
    expect(started(second!)).toBeGreaterThan(released(first!));
    // Each is an incremental on the restore point before it, which the scheduler named in the work.
    const rp = (j: typeof jobs[0]) => catalogue.query('restorePoint.get', { restorePointId: j.restorePointId! });
    const [rpFirst, rpSecond] = [await rp(first!), await rp(second!)];
    expect(rpSecond.kind).toBe('incremental');
    expect(rpSecond.parentId).toBe(rpFirst.restorePointId);
  }, 300_000);
});
