// Two catalogue processes (`cairn run catalogue --postgres`) share one PostgreSQL database: one
// holds the projector lease and projects, the other stands by and answers queries. The
// projecting one is SIGKILLed; the other takes the lease, projects what was appended since and
// answers — with nothing applied twice (the audit timeline holds each log position once).
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { newEvent, type CairnEvent } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { CatalogueClient, type CatalogueStatus } from '@cairn/catalogue-client';
import { createTestDatabase, postgresReachable, TEST_POSTGRES_URL, useHarness, waitFor } from '@cairn/testing';
import { runService, type ServiceProcess } from './e2e-helpers.ts';

const site = 'site-pg';
const reachable = await postgresReachable();

function jobEvents(jobId: string): CairnEvent[] {
  const m = { site, actor: { kind: 'service' as const, id: 'test' }, streamId: `job-${jobId}`, correlationId: jobId };
  return [
    newEvent('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, m),
    newEvent('JobStarted', { jobId, attempt: 1 }, m),
    newEvent('RestorePointCommitted', { restorePointId: `rp-${jobId}`, jobId, vmId: 'vm1', parentId: null, disks: [{ name: 'vda', sizeBytes: 4096, bytesRead: 4096, bytesStored: 1024, chunksNew: 1, chunksReused: 0 }] }, m),
    newEvent('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: 4096, bytesStored: 1024, durationMs: 10 }, m),
  ];
}

describe.skipIf(!reachable)(`catalogue replicas on one PostgreSQL${reachable ? '' : ` (skipped: no PostgreSQL at ${TEST_POSTGRES_URL.replace(/\/\/[^@]*@/, '//')})`}`, () => {
  const h = useHarness();

  it('the projecting replica SIGKILLed: the standby takes the lease, projects the rest and answers', async () => {
    const nats = await h.nats();
    const db = await createTestDatabase('cairn_e2e_catalogue');
    h.onClose(() => db.drop());
    const nc = await connect({ servers: nats.url });
    h.onClose(() => nc.drain());
    const log = await createJetStreamEventLog({ nc, site });
    h.onClose(() => log.close());
    const catalogue = new CatalogueClient(nc, { site, timeoutMs: 5000 });
    await log.append('vm-vm1', [newEvent('VmDiscovered', {
      vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 4096 }],
    }, { site, actor: { kind: 'service', id: 'test' }, streamId: 'vm-vm1', correlationId: 'vm1' })], { expectedRevision: 'no_stream' });
    for (let i = 0; i < 5; i++) await log.append(`job-j${i}`, jobEvents(`j${i}`), { expectedRevision: 'no_stream' });

    const dataDir = await h.tmpDir('cairn-e2e-catpg-');
    const env = { CAIRN_NATS_URL: nats.url, CAIRN_SITE: site, CAIRN_CLI_SOURCE: '1' };
    const replicas: Record<string, ServiceProcess> = {};
    for (const name of ['cat-a', 'cat-b']) {
      const p = runService(name, ['run', 'catalogue', '--data', dataDir, '--instance', name, '--postgres', db.url], env);
      h.onClose(async () => { p.kill(); await p.exited; });
      await p.ready;
      replicas[name] = p;
    }

    // Both answer (the queue group spreads the queries); exactly one projects.
    const seen = new Map<string, CatalogueStatus>();
    await waitFor(async () => {
      const s = await catalogue.query('catalogue.status', {});
      seen.set(s.replica, s);
      return (seen.size === 2 && [...seen.values()].every((x) => x.position === 21 && x.store === 'postgres')) || undefined;
    }, { timeoutMs: 60_000, intervalMs: 50, what: 'both catalogue replicas answering at position 21' });
    const statuses = [...seen.values()];
    expect(statuses.filter((s) => s.standby === false && s.projecting)).toHaveLength(1);
    expect(statuses.filter((s) => s.standby === true && !s.projecting)).toHaveLength(1);
    const leader = statuses.find((s) => !s.standby)!.replica;
    const standby = statuses.find((s) => s.standby)!.replica;

    replicas[leader]!.kill('SIGKILL');
    await replicas[leader]!.exited;
    for (let i = 5; i < 8; i++) await log.append(`job-j${i}`, jobEvents(`j${i}`), { expectedRevision: 'no_stream' });

    // The standby takes the lease once PostgreSQL has ended the killed session.
    await waitFor(async () => {
      const s = await catalogue.query('catalogue.status', {}).catch(() => undefined);
      return (s?.replica === standby && s.standby === false && s.projecting && s.position === 33) || undefined;
    }, { timeoutMs: 60_000, intervalMs: 100, what: `${standby} projecting up to position 33` });
    expect((await catalogue.query('job.get', { jobId: 'j7' })).state).toBe('completed');
    expect((await catalogue.query('restorePoint.list', { vmId: 'vm1' })).items.map((r) => r.restorePointId))
      .toEqual(['rp-j7', 'rp-j6', 'rp-j5', 'rp-j4', 'rp-j3', 'rp-j2', 'rp-j1', 'rp-j0']);
    const timeline = (await catalogue.query('audit.timeline', { limit: 1000 })).items.map((e) => e.position);
    expect(timeline).toEqual(Array.from({ length: 33 }, (_, i) => i + 1));
    expect(replicas[standby]!.output()).not.toMatch(/FAILING/);
  });
});
