// The catalogue against a real nats-server and the JetStream event log: two replicas share
// queries through the queue group and answer the same; a rebuild from position 0 and a
// restart from the checkpoint both end equal to the live read models.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { newEvent, type CairnEvent, type EventDataMap, type EventType } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { CatalogueClient, CatalogueQueryError } from '@cairn/catalogue-client';
import { useHarness } from '@cairn/testing';
import { pino } from 'pino';
import { startCatalogue, type RunningCatalogue } from './catalogue.module.ts';
import type { CatalogueService } from './catalogue.service.ts';

const site = 'site-a';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let client: CatalogueClient;

function ev<K extends EventType>(type: K, data: EventDataMap[K], streamId: string): CairnEvent {
  return newEvent(type, data, {
    site, streamId, actor: { kind: 'service', id: 'test@site-a' },
    correlationId: streamId.startsWith('job-') ? streamId.slice(4) : streamId,
  });
}

async function appendJob(jobId: string, vmId: string, parentId: string | null, outcome: 'completed' | 'failed'): Promise<void> {
  const s = `job-${jobId}`;
  const events = [
    ev('JobRequested', { jobId, vmId, policyId: 'p1', mode: 'auto', trigger: 'manual' }, s),
    ev('JobStarted', { jobId, attempt: 1 }, s),
    ev('SnapshotRequested', { jobId, vmId, snapshotId: `s-${jobId}` }, s),
  ];
  if (outcome === 'failed') {
    events.push(ev('SnapshotFailed', { jobId, snapshotId: `s-${jobId}`, reason: 'QMP socket gone' }, s));
    events.push(ev('JobFailed', { jobId, phase: 'snapshot', reason: 'QMP socket gone', retryable: false }, s));
  } else {
    events.push(
      ev('SnapshotTaken', { jobId, snapshotId: `s-${jobId}`, nbd: { socket: '/run/x.sock', exports: [{ disk: 'vda', exportName: 'vda', sizeBytes: 4096, mode: parentId ? 'incremental' : 'full', reason: 'test' }] } }, s),
      ev('TransferStarted', { jobId, worker: 'dm@1' }, s),
      ev('RestorePointCommitted', { restorePointId: `rp-${jobId}`, jobId, vmId, parentId, disks: [{ name: 'vda', sizeBytes: 4096, bytesRead: 2048, bytesStored: 1024, chunksNew: 1, chunksReused: 1 }] }, s),
      ev('SnapshotReleased', { jobId, snapshotId: `s-${jobId}`, cause: 'job_ended' }, s),
      ev('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: 2048, bytesStored: 1024, durationMs: 10 }, s),
    );
  }
  await log.append(s, events, { expectedRevision: 'no_stream' });
}

/** Everything a replica answers, read straight from its read model. */
async function snapshot(service: CatalogueService) {
  const read = service.readModel;
  const vms = await read.listVms();
  const rps = await read.listRestorePoints({ includeExpired: true, limit: 1000 });
  const jobs = await read.listJobs({ limit: 1000 });
  return {
    vms, vmDetails: await Promise.all(vms.map((v) => read.getVm(v.vmId))),
    rps, rpDetails: await Promise.all(rps.map((r) => read.getRestorePoint(r.restorePointId))),
    jobs, jobDetails: await Promise.all(jobs.map((j) => read.getJob(j.jobId))),
    policies: await read.listPolicies({ includeDeleted: true }),
    audit: await read.auditTimeline({ limit: 1000 }),
  };
}

beforeAll(async () => {
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  client = new CatalogueClient(nc, { site });
  await log.append('vm-vm1', [ev('VmDiscovered', { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: ['prod'], disks: [{ name: 'vda', sizeBytes: 4096 }] }, 'vm-vm1')], { expectedRevision: 'no_stream' });
  await log.append('policy-p1', [ev('PolicyCreated', {
    policyId: 'p1', name: 'nightly', selector: { tags: ['prod'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
    retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 2 }, repository: 'local', keyRef: 'k', priority: 1,
  }, 'policy-p1')], { expectedRevision: 'no_stream' });
  await appendJob('j1', 'vm1', null, 'completed');
  await appendJob('j2', 'vm1', 'rp-j1', 'completed');
  await appendJob('j3', 'vm1', null, 'failed');
});

describe('catalogue replicas on a real NATS and JetStream log', () => {
  let a: RunningCatalogue;
  let b: RunningCatalogue;
  let dirA: string;

  beforeAll(async () => {
    dirA = await h.tmpDir();
    a = await startCatalogue({ nc, site, dataDir: dirA, log, logger, replica: 'replica-a' });
    h.onClose(() => a.close());
    b = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger, replica: 'replica-b' });
    h.onClose(() => b.close());
    const head = await log.headPosition();
    await a.service.projector.waitForPosition(head);
    await b.service.projector.waitForPosition(head);
  });

  afterAll(async () => { await a?.close(); await b?.close(); });

  it('answers queries over NATS with the projected read models', async () => {
    const [vm] = await client.listVms();
    expect(vm).toMatchObject({ vmId: 'vm1', name: 'web-1', restorePoints: 2 });
    expect((await client.listJobs({ state: 'failed' })).map((j) => j.jobId)).toEqual(['j3']);
    const j2 = await client.getJob('j2');
    expect(j2.phases.map((p) => `${p.phase}:${p.state}`)).toEqual(['schedule:done', 'snapshot:done', 'transfer:done', 'commit:done', 'release:done']);
    expect(j2.events).toHaveLength(8);
    expect(await client.getRestorePoint('rp-j2')).toMatchObject({ kind: 'incremental', parentId: 'rp-j1', policyId: 'p1', changedBytes: 2048, savedBytes: 1024 });
    expect((await client.listPolicies()).map((p) => p.policyId)).toEqual(['p1']);
    expect((await client.auditTimeline({ correlationId: 'j3' })).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotRequested', 'SnapshotFailed', 'JobFailed']);
    const status = await client.status();
    expect(status).toMatchObject({ site, lag: 0, projecting: true, rebuilding: false });
    expect(status.position).toBe(Number(await log.headPosition()));
  });

  it('refuses bad queries with a code, not a timeout', async () => {
    await expect(client.getJob('nope')).rejects.toMatchObject({ code: 'not_found' });
    const raw = await nc.request('cairn.site-a.query.catalogue.job.list', JSON.stringify({ limit: -1 }), { timeout: 2000 });
    expect(raw.json()).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    await expect(client.listJobs({ limit: 0 })).rejects.toBeInstanceOf(CatalogueQueryError);
  });

  it('two replicas answer the same, and both take queries from the queue group', async () => {
    expect((await snapshot(a.service))).toEqual((await snapshot(b.service)));
    const replicas = new Set<string | undefined>();
    const answers = new Set<string>();
    for (let i = 0; i < 40 && (replicas.size < 2 || i < 10); i++) {
      const { result, replica } = await client.ask('job.get', { jobId: 'j1' });
      replicas.add(replica);
      answers.add(JSON.stringify(result));
    }
    expect([...replicas].sort()).toEqual(['replica-a', 'replica-b']);
    expect(answers.size).toBe(1);
  });

  it('an entry the log cannot read joins the audit timeline and projecting goes on', async () => {
    const js = jetstream(nc);
    await js.publish('cairn.site-a.evt.job.job-garbage', '{"type":"JobTeleported","id":"x-1"}');
    await appendJob('j6', 'vm1', null, 'failed');
    const head = await log.headPosition();
    await a.service.projector.waitForPosition(head);
    await b.service.projector.waitForPosition(head);
    const [entry] = await client.auditTimeline({ type: 'JobTeleported' });
    expect(entry).toMatchObject({ eventId: 'x-1', schemaVersion: 0, streamId: 'cairn.site-a.evt.job.job-garbage', data: { unreadable: expect.any(String) } });
    expect((await client.getJob('j6')).state).toBe('failed');
    expect((await snapshot(a.service))).toEqual((await snapshot(b.service)));
  });

  it('a rebuild from position 0 ends equal to the live read models, and projecting goes on', async () => {
    const before = (await snapshot(a.service));
    const results = await client.rebuild({ replicas: 2, timeoutMs: 30_000 });
    expect(results.map((r) => r.replica).sort()).toEqual(['replica-a', 'replica-b']);
    expect(results.every((r) => r.events === before.audit.length)).toBe(true);
    expect((await snapshot(a.service))).toEqual(before);
    expect((await snapshot(b.service))).toEqual(before);

    await appendJob('j4', 'vm1', 'rp-j2', 'completed');
    const head = await log.headPosition();
    await a.service.projector.waitForPosition(head);
    await b.service.projector.waitForPosition(head);
    expect((await client.getJob('j4')).state).toBe('completed');
    expect((await snapshot(a.service))).toEqual((await snapshot(b.service)));
  });

  it('a replica restarted on its file resumes from its checkpoint without applying anything twice', async () => {
    const before = (await snapshot(a.service));
    await a.close();
    await appendJob('j5', 'vm1', null, 'failed');
    a = await startCatalogue({ nc, site, dataDir: dirA, log, logger, replica: 'replica-a' });
    const head = await log.headPosition();
    await a.service.projector.waitForPosition(head);
    await b.service.projector.waitForPosition(head);
    const after = (await snapshot(a.service));
    expect(after.audit.slice(0, before.audit.length)).toEqual(before.audit);
    expect(after.audit.map((e) => e.position)).toEqual([...new Set(after.audit.map((e) => e.position))]);
    expect(after).toEqual((await snapshot(b.service)));
    expect((await a.health()).ok).toBe(true);
    // Without a replica count, the client collects every answer until the replicas fall quiet.
    expect((await client.rebuild({ timeoutMs: 30_000 })).map((r) => r.replica).sort()).toEqual(['replica-a', 'replica-b']);
    expect((await snapshot(a.service))).toEqual(after);
  });
});
