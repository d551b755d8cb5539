// RPO watch over a real log (nats-server, JetStream): a VM whose policy says RPO 1 h, with its
// backups stopped, raises RpoMissed once, however often the watch runs and when a second
// scheduler folds the log and takes over; a new restore point gives RpoRestored once. The expiry
// watch over the same real log: an API token 10 days from its expiry raises CredentialExpiring
// once (also after a standby takes over), a revoked or far one nothing, a renewal warns again;
// a TLS certificate of the security directory made by the test (openssl, site CA) that expires
// in 3 days raises it once, the CA's (10 years) nothing, its key file is never read.
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueCertificate } from '@cairn/nats-security';
import { connect } from '@nats-io/transport-node';
import { newEvent, type Actor, type KnownEvent } from '@cairn/contracts';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { useHarness, waitFor } from '@cairn/testing';
import { schedulerConfig } from './scheduler.config.ts';
import { Scheduler, type SchedulerPorts } from './scheduler.service.ts';

const site = 'rpo';
const svc: Actor = { kind: 'service', id: `scheduler@${site}` };
const ports: SchedulerPorts = { requestSnapshot: async () => undefined, releaseSnapshot: async () => undefined, enqueueTransfer: async () => undefined };

describe('RPO watch (real log)', () => {
  const h = useHarness();

  it('RPO 1 h, backups stopped: RpoMissed once; a new restore point: RpoRestored once', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    h.onClose(() => log.close());
    const now = { t: Date.now() };
    const T0 = now.t;
    const config = schedulerConfig({ site, tickMs: 3_600_000 });
    const scheduler = async () => {
      const s = new Scheduler(config, log, ports, () => new Date(now.t));
      await s.start();
      h.onClose(() => s.stop());
      return s;
    };
    const folded = async (s: Scheduler, l: EventLog) => {
      const head = await l.headPosition();
      await waitFor(() => BigInt(s.health().position) >= head, { what: 'the scheduler to fold the log' });
    };
    const rpoEvents = async () => {
      const out: KnownEvent[] = [];
      for await (const r of log.readStream('rpo-vm-db')) out.push(r.event);
      return out;
    };
    const commit = async (jobId: string, restorePointId: string, time: number) => {
      const meta = { site, actor: svc, streamId: `job-${jobId}`, time: new Date(time) };
      await log.append(`job-${jobId}`, [
        newEvent('JobRequested', { jobId, vmId: 'vm-db', policyId: null, mode: 'auto', trigger: 'manual' }, meta),
        newEvent('RestorePointCommitted', { jobId, restorePointId, vmId: 'vm-db', parentId: null, disks: [{ name: 'd0', sizeBytes: 1024, bytesRead: 1024, bytesStored: 10, chunksNew: 1, chunksReused: 0 }] }, meta),
      ], { expectedRevision: 'no_stream' });
    };

    await log.append('vm-vm-db', [newEvent('VmDiscovered', {
      vmId: 'vm-db', name: 'db', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'd0', sizeBytes: 1024 }],
    }, { site, actor: { kind: 'service', id: `snapshot-coordinator@${site}` }, streamId: 'vm-vm-db' })], { expectedRevision: 'any' });
    const first = await scheduler();
    await first.createPolicy({
      name: 'hourly', selector: { names: ['db'] }, schedule: { cron: '0 * * * *', timezone: 'UTC' }, rpoMinutes: 60,
      retention: { last: 5, daily: 0, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'k', priority: 1,
    }, { kind: 'user', id: 'ops' }, 'c-1');
    await commit('j-1', 'rp-1', T0);
    await folded(first, log);

    now.t = T0 + 30 * 60_000;
    await first.watchRpo();
    expect(await rpoEvents()).toEqual([]);

    // Backups stopped: past the hour, the watch runs again and again.
    now.t = T0 + 61 * 60_000;
    for (let i = 0; i < 3; i++) await first.watchRpo();
    let events = await rpoEvents();
    expect(events.map((e) => e.type)).toEqual(['RpoMissed']);
    expect(events[0]!.data).toEqual({ vmId: 'vm-db', policyId: expect.any(String), rpoMinutes: 60, lastRestorePointAt: new Date(T0).toISOString(), missedSince: new Date(T0 + 3_600_000).toISOString() });
    expect(events[0]!.actor).toEqual(svc);

    // A second scheduler (a standby taking over) folds the log: it raises nothing again.
    const second = await scheduler();
    await folded(second, log);
    now.t = T0 + 90 * 60_000;
    await second.watchRpo();
    expect((await rpoEvents()).map((e) => e.type)).toEqual(['RpoMissed']);

    // Backups again: RpoRestored, once.
    await commit('j-2', 'rp-2', T0 + 91 * 60_000);
    await folded(second, log);
    now.t = T0 + 92 * 60_000;
    await second.watchRpo();
    await second.watchRpo();
    events = await rpoEvents();
    expect(events.map((e) => e.type)).toEqual(['RpoMissed', 'RpoRestored']);
    expect(events[1]!.data).toMatchObject({ vmId: 'vm-db', restorePointId: 'rp-2' });
  }, 60_000);

  it('an API token near its expiry: CredentialExpiring once, also across a takeover; revoked or far ones nothing', async () => {
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    h.onClose(() => log.close());
    const now = { t: Date.now() };
    const config = schedulerConfig({ site, tickMs: 3_600_000, expiryWarnDays: 14 });
    const scheduler = async () => {
      const s = new Scheduler(config, log, ports, () => new Date(now.t));
      await s.start();
      h.onClose(() => s.stop());
      return s;
    };
    const folded = async (s: Scheduler) => {
      const head = await log.headPosition();
      await waitFor(() => BigInt(s.health().position) >= head, { what: 'the scheduler to fold the log' });
    };
    const gw = { site, actor: { kind: 'service', id: `gateway@${site}` } as Actor };
    const issue = (tokenId: string, days: number) => log.append(`token-${tokenId}`, [newEvent('TokenIssued', {
      tokenId, userId: 'ops', name: `ci-${tokenId}`, tokenSha256: 'a'.repeat(64), expiresAt: new Date(now.t + days * 86_400_000).toISOString(),
    }, { ...gw, streamId: `token-${tokenId}` })], { expectedRevision: 'any' });
    await issue('t-near', 10);
    await issue('t-far', 60);
    await issue('t-revoked', 3);
    await log.append('token-t-revoked', [newEvent('TokenRevoked', { tokenId: 't-revoked', userId: 'ops' }, { ...gw, streamId: 'token-t-revoked' })], { expectedRevision: 'any' });
    const expiring = async () => {
      const out: KnownEvent[] = [];
      for await (const r of log.readAll({ category: 'expiry' })) out.push(r.event);
      return out;
    };
    const first = await scheduler();
    await folded(first);
    for (let i = 0; i < 3; i++) await first.watchExpiry();
    let events = await expiring();
    expect(events.map((e) => [e.type, e.streamId])).toEqual([['CredentialExpiring', 'expiry-api-token-t-near']]);
    expect(events[0]!.data).toMatchObject({ credential: 'api-token', id: 't-near', owner: 'ops', name: 'ci-t-near', daysLeft: 10 });
    expect(events[0]!.actor).toEqual(svc);

    const second = await scheduler();
    await folded(second);
    now.t += 86_400_000;
    await second.watchExpiry();
    expect(await expiring()).toHaveLength(1);
    // The far one comes within 14 days: once.
    now.t += 48 * 86_400_000;
    await second.watchExpiry();
    await second.watchExpiry();
    events = await expiring();
    expect(events.map((e) => e.streamId)).toEqual(['expiry-api-token-t-near', 'expiry-api-token-t-far']);
  }, 60_000);

  it('a site certificate expiring in 3 days: CredentialExpiring once (certificate, file, subject, validTo), also across a takeover', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'recover2-certs-'));
    h.onClose(() => rm(dir, { recursive: true, force: true }));
    const ca = await createCertificateAuthority(dir, 'Cairn certsite CA');
    await mkdir(join(dir, 'identities'));
    await issueCertificate(ca, join(dir, 'identities'), { commonName: 'scheduler@certsite', kind: 'client', fileName: 'scheduler', days: 3 });
    await writeFile(join(dir, 'notes.pem'), 'not a certificate\n');
    const nc = await connect({ servers: (await h.nats()).url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: 'certsite' });
    h.onClose(() => log.close());
    const config = schedulerConfig({ site: 'certsite', tickMs: 3_600_000, certificateDir: dir });
    const now = { t: Date.now() };
    const scheduler = async () => {
      const s = new Scheduler(config, log, ports, () => new Date(now.t));
      await s.start();
      h.onClose(() => s.stop());
      const head = await log.headPosition();
      await waitFor(() => BigInt(s.health().position) >= head, { what: 'the scheduler to fold the log' });
      return s;
    };
    const expiring = async () => {
      const out: KnownEvent[] = [];
      for await (const r of log.readAll({ category: 'expiry' })) out.push(r.event);
      return out;
    };
    const first = await scheduler();
    for (let i = 0; i < 3; i++) await first.watchExpiry();
    let events = await expiring();
    expect(events.map((e) => [e.type, e.streamId])).toEqual([['CredentialExpiring', 'expiry-certificate-identities_scheduler']]);
    const validTo = Date.parse((events[0]!.data as { expiresAt: string }).expiresAt);
    expect(validTo - now.t).toBeGreaterThan(2.9 * 86_400_000);
    expect(validTo - now.t).toBeLessThanOrEqual(3 * 86_400_000);
    expect(events[0]!.data).toMatchObject({ credential: 'certificate', id: 'identities_scheduler', owner: 'CN=scheduler@certsite', name: 'identities/scheduler.pem', daysLeft: 2 });
    expect(events[0]!.actor).toEqual({ kind: 'service', id: 'scheduler@certsite' });

    // A standby takes over a day later (reads the directory afresh): nothing again.
    const second = await scheduler();
    now.t += 86_400_000;
    await second.watchExpiry();
    await second.watchExpiry();
    events = await expiring();
    expect(events).toHaveLength(1);
  }, 120_000);
});
