// A real nats-server with the generated site config (mutual TLS, each certificate mapped to its
// identity, whose password only its nkey makes): every service can do its own work, and a publish or subscription outside its
// permissions is refused by the server and surfaces as NatsPermissionDeniedError; clients
// without the CA, without a client certificate, with another CA's certificate, without an
// nkey, with another identity's nkey, or without TLS are refused.
import { readFile } from 'node:fs/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { CommandBus, JetStreamClient, JetStreamServer, NatsPermissionDeniedError, publishChecked, subscribeChecked } from '@cairn/messaging';
import { createJetStreamEventLog } from '@cairn/eventlog';
import type { NatsServerProcess } from '@cairn/nats-server';
import { identityConnectOptions } from './connect.ts';
import { identityAuthenticator } from './identity-binding.ts';
import { SERVICE_IDENTITIES, workStream, type Identity, type ServiceIdentity } from './permissions.ts';
import { createCertificateAuthority, issueCertificate } from './pki.ts';
import { initSiteSecurity, type SiteSecurity } from './site-security.ts';

const h = useHarness();
const SITE = 'site-a';
const S = `cairn.${SITE}`;
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

let security: SiteSecurity;
let server: NatsServerProcess;
const conns = new Map<Identity, NatsConnection>();

async function as(identity: Identity): Promise<NatsConnection> {
  const existing = conns.get(identity);
  if (existing) return existing;
  const nc = await connect({ servers: server.url, reconnect: false, timeout: 5000, ...identityConnectOptions(security.credentials(identity)) });
  h.onClose(() => nc.close());
  conns.set(identity, nc);
  return nc;
}

const bus = async (identity: Identity) => new CommandBus(await as(identity), { site: SITE, actor: { kind: 'service', id: `${identity}@${SITE}` }, defaultTimeoutMs: 3000 });

beforeAll(async () => {
  const dir = await h.tmpDir('cairn-site-sec-');
  security = await initSiteSecurity({ dir, site: SITE, peers: ['site-b'] });
  server = await h.nats({ extraConfig: await readFile(security.configFile, 'utf8'), scheme: 'tls' });
  // The operator creates the site's streams, as `cairn up` does.
  const admin = await as('admin');
  const log = await createJetStreamEventLog({ nc: admin, site: SITE });
  h.onClose(() => log.close());
  await (await jetstreamManager(admin)).streams.add({ name: workStream(SITE), subjects: [`${S}.work.>`], retention: 'workqueue' as never });
}, 120_000);

describe('TLS and authentication', () => {
  const refused = async (options: Parameters<typeof connect>[0]) => {
    const err = await connect({ servers: server.url, reconnect: false, timeout: 5000, ...options }).then(async (nc) => { await nc.close(); return undefined; }, (e: unknown) => e);
    expect(err, 'the connection should have been refused').toBeInstanceOf(Error);
    return (err as Error).message;
  };

  it('a client that does not trust the site CA is refused (cannot verify the server)', async () => {
    const { authenticator, inboxPrefix } = identityConnectOptions(security.credentials('scheduler'));
    expect(await refused({ authenticator, inboxPrefix, tls: {} })).toMatch(/certificate|self.signed|verify/i);
  });

  it('a client without a client certificate, or with one from another CA, is refused', async () => {
    const c = security.credentials('scheduler');
    const { authenticator } = identityConnectOptions(c);
    await refused({ authenticator, tls: { caFile: c.caFile } });
    const otherDir = await h.tmpDir('cairn-other-ca-');
    const other = await createCertificateAuthority(otherDir, 'Not the site CA');
    const forged = await issueCertificate(other, otherDir, { commonName: `scheduler@${SITE}`, kind: 'client', fileName: 'scheduler' });
    await refused({ authenticator, tls: { caFile: c.caFile, certFile: forged.cert, keyFile: forged.key } });
  });

  it('a certificate of one identity with the nkey of another is refused, both ways; its own pair connects as itself', async () => {
    const mover = security.credentials('data-mover');
    const scheduler = security.credentials('scheduler');
    const seed = async (c: typeof mover) => (await readFile(c.seedFile, 'utf8')).trim();
    const tls = (c: typeof mover) => ({ caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile });
    expect(await refused({ tls: tls(mover), authenticator: identityAuthenticator(await seed(scheduler), 'scheduler', SITE) })).toMatch(/authorization/i);
    expect(await refused({ tls: tls(scheduler), authenticator: identityAuthenticator(await seed(mover), 'data-mover', SITE) })).toMatch(/authorization/i);
    // The other identity's nkey proving the certificate's identity name is still the wrong key.
    expect(await refused({ tls: tls(mover), authenticator: identityAuthenticator(await seed(scheduler), 'data-mover', SITE) })).toMatch(/authorization/i);
    // Its own pair: what the server lets it do is the data mover's (it may not change the scheduler's policies).
    const nc = await connect({ servers: server.url, reconnect: false, timeout: 5000, ...identityConnectOptions(mover) });
    await expect(publishChecked(nc, `${S}.cmd.scheduler.CreatePolicy`, enc({}))).rejects.toBeInstanceOf(NatsPermissionDeniedError);
    await nc.close();
  });

  it('a valid certificate without an identity (nkey) is refused; plain nats:// is refused', async () => {
    const c = security.credentials('scheduler');
    expect(await refused({ tls: { caFile: c.caFile, certFile: c.certFile, keyFile: c.keyFile } })).toMatch(/authorization/i);
    await refused({ servers: server.url.replace('tls://', 'nats://'), ...identityConnectOptions(c), tls: null });
  });
});

describe('each service does its own work', () => {
  it('scheduler → snapshot-coordinator command, answered; data-mover progress; catalogue and gateway subscriptions', async () => {
    const coordinator = await as('snapshot-coordinator');
    const sub = await subscribeChecked(coordinator, `${S}.cmd.snapshot-coordinator.RequestSnapshot`, {
      queue: 'cairn.snapshot-coordinator',
      callback: (_e, m) => { m.respond(enc({ accepted: true, result: { snapshotId: 'snap-1' } })); },
    });
    const reply = await (await bus('scheduler')).send('snapshot-coordinator', 'RequestSnapshot', { jobId: 'job-1', vmId: 'vm-1' } as never);
    expect(reply).toEqual({ accepted: true, result: { snapshotId: 'snap-1' } });
    sub.unsubscribe();

    await subscribeChecked(await as('gateway'), `${S}.progress.>`);
    await publishChecked(await as('data-mover'), `${S}.progress.job-1`, enc({ bytes: 1 }));
    await subscribeChecked(await as('catalogue'), `${S}.query.catalogue.jobs.list`, { queue: 'cairn.catalogue' });
    await subscribeChecked(await as('replication'), `${S}.repl.site-b.put`);
    await publishChecked(await as('replication'), `cairn.site-b.repl.${SITE}.put`, enc({}));
  });

  it('events: the scheduler appends, the audit bridge and the catalogue read; work: scheduler → data mover', async () => {
    const pub = new JetStreamClient(await as('scheduler'));
    await pub.publish(`${S}.evt.job.job-1`, { hello: 1 }, { msgID: 'e-1' });
    for (const reader of ['audit-bridge', 'catalogue'] as const) {
      const js = jetstream(await as(reader));
      const consumer = await js.consumers.get(`CAIRN_EVT_${SITE.toUpperCase().replace('-', '_')}`, { filter_subjects: `${S}.evt.>` });
      const m = await consumer.next({ expires: 5000 });
      expect(m?.subject).toBe(`${S}.evt.job.job-1`);
      await consumer.delete();
    }
    await pub.publish(`${S}.work.transfer`, { jobId: 'job-1' }, { msgID: 'w-1' });
    const mover = await as('data-mover');
    const jsm = await jetstreamManager(mover);
    await jsm.consumers.add(workStream(SITE), { durable_name: 'data-mover', ack_policy: 'explicit' as never, filter_subject: `${S}.work.transfer` });
    const work = await jetstream(mover).consumers.get(workStream(SITE), 'data-mover');
    const m = await work.next({ expires: 5000 });
    expect(m?.json()).toEqual({ jobId: 'job-1' });
    await m!.ackAck();
  });
});

// What each service must not do: a publish and a subscription outside its permissions.
type Publish = { kind: 'command'; service: string; name: string } | { kind: 'jetstream' | 'plain'; subject: string };
const FORBIDDEN: Record<ServiceIdentity, { why: string; publish: Publish; subscribe: string }> = {
  // (It may ask for a backup: the safety backup of an in-place restore; nothing else of the scheduler.)
  'data-mover': { why: 'a data mover cannot change the scheduler\'s policies nor take its commands', publish: { kind: 'command', service: 'scheduler', name: 'CreatePolicy' }, subscribe: `${S}.cmd.scheduler.>` },
  scheduler: { why: 'the scheduler cannot command data movers (but for a policy\'s test restore) nor read their progress', publish: { kind: 'command', service: 'data-mover', name: 'RestoreDisk' }, subscribe: `${S}.progress.>` },
  'snapshot-coordinator': { why: 'the coordinator cannot queue transfers nor take catalogue queries', publish: { kind: 'jetstream', subject: `${S}.work.transfer` }, subscribe: `${S}.query.catalogue.>` },
  catalogue: { why: 'the catalogue writes no events and takes no commands for others', publish: { kind: 'jetstream', subject: `${S}.evt.job.job-9` }, subscribe: `${S}.cmd.data-mover.>` },
  gateway: { why: 'the gateway cannot queue work nor serve a service\'s commands', publish: { kind: 'jetstream', subject: `${S}.work.transfer` }, subscribe: `${S}.cmd.scheduler.>` },
  'audit-bridge': { why: 'the audit bridge only reads: no events, no commands', publish: { kind: 'jetstream', subject: `${S}.evt.job.job-9` }, subscribe: `${S}.cmd.>` },
  notifier: { why: 'the notifier only reads: no job events, no commands', publish: { kind: 'jetstream', subject: `${S}.evt.job.job-9` }, subscribe: `${S}.cmd.>` },
  replication: { why: 'replication talks to other sites only on repl subjects', publish: { kind: 'command', service: 'scheduler', name: 'RequestBackup' }, subscribe: `cairn.site-b.cmd.>` },
};

describe('every service is denied what is not its own, with a clear error', () => {
  for (const identity of SERVICE_IDENTITIES) {
    const f = FORBIDDEN[identity];
    it(`${identity}: ${f.why}`, async () => {
      const nc = await as(identity);
      const p = f.publish;
      const attempt = p.kind === 'command'
        ? (await bus(identity)).send(p.service, p.name as never, {} as never)
        : p.kind === 'jetstream' ? new JetStreamClient(nc).publish(p.subject, {}, { msgID: `x-${identity}` })
          : publishChecked(nc, p.subject, enc({}), identity);
      const err = await attempt.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(NatsPermissionDeniedError);
      expect((err as NatsPermissionDeniedError).operation).toBe('publish');
      expect((err as Error).message).toMatch(/NATS denied .* permission to publish ".*": the subject is outside its permissions/);

      const sub = await subscribeChecked(nc, f.subscribe, {}, identity).then(() => undefined, (e: unknown) => e);
      expect(sub).toBeInstanceOf(NatsPermissionDeniedError);
      expect((sub as NatsPermissionDeniedError).subject).toBe(f.subscribe);
      expect((sub as Error).message).toContain(`identity ${identity} permission to subscribe "${f.subscribe}"`);

      // Nobody reads another identity's replies, and nobody deletes or purges the event log.
      await expect(subscribeChecked(nc, `_INBOX_site_a_admin.>`)).rejects.toThrow(NatsPermissionDeniedError);
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const del = await jsm.streams.delete(`CAIRN_EVT_SITE_A`).then(() => undefined, (e: unknown) => e);
      expect(String((del as Error)?.message ?? del)).toMatch(/permission/i);
    });
  }

  it('a service cannot forge another service\'s command replies or dedup entries', async () => {
    await expect(publishChecked(await as('data-mover'), '$KV.cairn_command_replies.scheduler.h_forged', enc({}), 'data-mover')).rejects.toThrow(NatsPermissionDeniedError);
    await expect(publishChecked(await as('scheduler'), '$KV.cairn_processed.data-mover.e-1', enc({}), 'scheduler')).rejects.toThrow(NatsPermissionDeniedError);
  });

  it('only replication reaches another site: the data mover cannot send to site-b', async () => {
    await expect(publishChecked(await as('data-mover'), `cairn.site-b.repl.${SITE}.put`, enc({}), 'data-mover')).rejects.toThrow(NatsPermissionDeniedError);
    await expect(publishChecked(await as('gateway'), `cairn.site-b.cmd.scheduler.RequestBackup`, enc({}), 'gateway')).rejects.toThrow(NatsPermissionDeniedError);
  });

  it('a service that starts handlers outside its permissions fails to start with the error (not a silently dead handler)', async () => {
    const listen = async (identity: Identity, setup: (server: JetStreamServer) => void) => {
      const server = new JetStreamServer({ connection: await as(identity), site: SITE, actor: { kind: 'service', id: `${identity}@${SITE}` } });
      setup(server);
      const err = await new Promise<unknown>((resolve) => { void server.listen((e) => resolve(e)); });
      return err;
    };
    // A data mover posing as the scheduler's command handler.
    const asScheduler = await listen('data-mover', (srv) => srv.addCommandHandler('scheduler', 'RequestBackup', () => ({ jobId: 'x' })));
    expect(asScheduler).toBeInstanceOf(NatsPermissionDeniedError);
    expect((asScheduler as Error).message).toContain(`identity data-mover@${SITE} permission to subscribe "${S}.cmd.scheduler.RequestBackup"`);
    // The catalogue creating a durable consumer on the work queue.
    const onWork = await listen('catalogue', (srv) => srv.addJetStreamHandler(
      { stream: workStream(SITE), durable: 'sneaky', filterSubject: `${S}.work.transfer` }, () => undefined,
    ));
    expect(onWork).toBeInstanceOf(NatsPermissionDeniedError);
    expect((onWork as Error).message).toMatch(/permission to publish "\$JS\.API\./);
  });

  it('the connection stays usable after a refusal (the violation is per message, not fatal)', async () => {
    const nc = await as('data-mover');
    await publishChecked(nc, `${S}.progress.job-2`, enc({ bytes: 2 }));
    expect(nc.isClosed()).toBe(false);
  });
});
