// The notifier against real parts: nats-server (JetStream log, KV state), a real SMTP server
// (smtp-server, STARTTLS + AUTH, certificate made for the test) and a loopback webhook
// receiver. A failed job gives one mail and one call per webhook route; the notifier killed
// with SIGKILL mid-stream and restarted delivers every notice once (the message whose answer
// never came is sent again with the same id); a storm of 1,000 failed jobs is one digest per route.
// The watches' notices (replication behind, a certificate about to expire, a refused scheduled
// test restore) reach a default route; caught up does not.
import { describe, expect, it, beforeAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createJetStreamEventLog, type EventLog } from '@cairn/eventlog';
import { newEvent, type NotificationRoute } from '@cairn/contracts';
import { useHarness, waitFor, startHttpCollector, startSmtpSink, type HttpCollector, type SmtpSink } from '@cairn/testing';
import { startNotifier } from './notifier.service.ts';
import { addRoute, appendFailedJob, noticeIds } from './testing/failed-jobs.ts';

const fixture = fileURLToPath(new URL('./testing/notifier-fixture.ts', import.meta.url));

describe('notifier', () => {
  const h = useHarness();
  let natsUrl: string;
  let smtp: SmtpSink;
  let hooks: HttpCollector;

  beforeAll(async () => {
    natsUrl = (await h.nats()).url;
    smtp = await startSmtpSink(await h.tmpDir('cairn-smtp-'));
    h.onClose(() => smtp.stop());
    hooks = await startHttpCollector();
    h.onClose(() => hooks.stop());
  });

  /** A fresh site (its own stream, KV bucket, routes), mail and webhook boxes emptied. */
  const site = async (name: string, digest: NotificationRoute['digest']): Promise<{ nc: NatsConnection; log: EventLog; routes: NotificationRoute[] }> => {
    const nc = await connect({ servers: natsUrl });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: name });
    h.onClose(() => log.close());
    smtp.mails.length = 0;
    hooks.requests.length = 0;
    const routes: NotificationRoute[] = [
      {
        routeId: 'ops-mail', name: 'ops mail', match: {}, digest,
        target: {
          kind: 'email', host: smtp.host, port: smtp.port, security: 'starttls', caFile: smtp.caFile,
          user: smtp.user, passwordEnv: 'NOTIFY_SMTP_PASSWORD', from: 'cairn@example.com', to: ['ops@example.com'],
        },
      },
      { routeId: 'ops-hook', name: 'ops webhook', match: { kinds: ['job-failed'] }, digest, target: { kind: 'webhook', url: `${hooks.url}/${name}/json` } },
      { routeId: 'ops-slack', name: 'slack', match: {}, digest, target: { kind: 'webhook', url: `${hooks.url}/${name}/slack`, format: 'slack' } },
      { routeId: 'ops-teams', name: 'teams', match: {}, digest, target: { kind: 'webhook', url: `${hooks.url}/${name}/teams`, format: 'teams' } },
    ];
    for (const r of routes) await addRoute(log, name, r);
    return { nc, log, routes };
  };
  const calls = (site: string, kind: string) => hooks.requests.filter((r) => r.path === `/${site}/${kind}`);
  const env = () => ({ NOTIFY_SMTP_PASSWORD: smtp.password });

  it('a failed job gives one mail (STARTTLS, AUTH) and one call per webhook route (Cairn JSON, Slack, Teams)', async () => {
    const { nc, log } = await site('site-one', { groupWaitSeconds: 1, intervalMinutes: 60 });
    const notifier = await startNotifier({ nc, site: 'site-one', env: env() });
    h.onClose(() => notifier.close());
    await appendFailedJob(log, 'site-one', 'job-41', 'vm-web-1');
    const head = await log.headPosition();
    await waitFor(() => smtp.mails.length >= 1 && hooks.requests.length >= 3, { timeoutMs: 30_000, what: 'the mail and the webhook calls' });
    await waitFor(() => { const s = notifier.health(); return BigInt(s.saved) >= head && s.pending === 0; }, { timeoutMs: 10_000, what: 'the notifier to be done' });

    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0]!;
    expect(mail).toMatchObject({ from: 'cairn@example.com', to: ['ops@example.com'], secure: true, user: smtp.user });
    expect(mail.subject).toBe('[Cairn site-one] Backup job job-41 failed (VM vm-web-1)');
    expect(mail.text).toContain('no view of vm-web-1');
    expect(mail.messageId).toMatch(/^<[0-9a-f]{32}@cairn\.site-one>$/);

    const [json] = calls('site-one', 'json');
    expect(calls('site-one', 'json')).toHaveLength(1);
    expect(json!.headers['idempotency-key']).toMatch(/^[0-9a-f]{32}$/);
    const body = JSON.parse(json!.body) as { severity: string; title: string; count: number; notices: Array<{ kind: string; vmId: string }> };
    expect(body).toMatchObject({ severity: 'error', count: 1, title: 'Backup job job-41 failed (VM vm-web-1)' });
    expect(body.notices[0]).toMatchObject({ kind: 'job-failed', vmId: 'vm-web-1' });
    expect(calls('site-one', 'slack')).toHaveLength(1);
    expect(JSON.parse(calls('site-one', 'slack')[0]!.body)).toEqual({ text: expect.stringContaining('*[Cairn site-one] Backup job job-41 failed') });
    expect(calls('site-one', 'teams')).toHaveLength(1);
    expect(JSON.parse(calls('site-one', 'teams')[0]!.body)).toMatchObject({ '@type': 'MessageCard', themeColor: 'C62828', title: expect.stringContaining('job-41') });
    await notifier.close();
  }, 60_000);

  it('SIGKILLed while events arrive, then restarted: every notice delivered once; the unanswered message again, same id', async () => {
    const name = 'site-kill';
    const { log } = await site(name, { groupWaitSeconds: 0, maxGroupWaitSeconds: 0, intervalMinutes: 0 });
    const jobs = Array.from({ length: 24 }, (_, i) => `k${i}`);
    const start = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
        env: { ...process.env, CAIRN_NATS_URL: natsUrl, CAIRN_SITE: name, NOTIFY_SMTP_PASSWORD: smtp.password },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      h.onClose(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      await waitFor(() => {
        if (child.exitCode !== null) throw new Error(`notifier exited: ${out}`);
        return out.includes('ready');
      }, { timeoutMs: 30_000, what: 'the notifier process to start' });
      return child;
    };
    const jsonCalls = () => calls(name, 'json');
    // The webhook receives the call that carries job k9's notice but never answers it.
    const marker = (body: string) => body.includes('Backup job k9 failed');
    hooks.hold = (r) => r.path === `/${name}/json` && marker(r.body);

    const first = await start();
    for (const j of jobs.slice(0, 16)) await appendFailedJob(log, name, j, `vm-${j}`);
    await waitFor(() => jsonCalls().some((r) => marker(r.body)), { timeoutMs: 30_000, what: 'the held call' });
    first.kill('SIGKILL');
    await new Promise<void>((resolve) => (first.exitCode !== null || first.signalCode !== null ? resolve() : first.once('exit', () => resolve())));
    const held = jsonCalls().find((r) => marker(r.body))!;
    hooks.hold = () => false;
    for (const j of jobs.slice(16)) await appendFailedJob(log, name, j, `vm-${j}`); // while it is down

    const second = await start();
    const allIds = () => jsonCalls().filter((r) => r.status === 200).flatMap((r) => noticeIds(r.body));
    await waitFor(() => new Set(allIds()).size === jobs.length, { timeoutMs: 60_000, what: 'every notice after the restart' });
    const mailed = () => jobs.filter((j) => smtp.mails.some((m) => m.text.includes(`Backup job ${j} failed`)));
    await waitFor(() => mailed().length === jobs.length, { timeoutMs: 60_000, what: 'every notice by mail' });

    // Webhook: each notice once among the answered calls; the held call was sent again, same key.
    const answered = jsonCalls().filter((r) => r.status === 200);
    expect(allIds()).toHaveLength(jobs.length);
    const again = answered.filter((r) => r.body === held.body);
    expect(again).toHaveLength(1);
    expect(again[0]!.headers['idempotency-key']).toBe(held.headers['idempotency-key']);
    // Mail: each notice in one message (a mail in flight at the kill comes again with its Message-ID).
    for (const j of jobs) {
      const ids = new Set(smtp.mails.filter((m) => m.text.includes(`Backup job ${j} failed`)).map((m) => m.messageId));
      expect(ids.size, j).toBe(1);
    }
    second.kill('SIGTERM');
    await new Promise<void>((resolve) => (second.exitCode !== null ? resolve() : second.once('exit', () => resolve())));
  }, 120_000);

  it('1,000 failed jobs in a minute give one digest per route, not 1,000 mails', async () => {
    const name = 'site-storm';
    const { nc, log } = await site(name, { groupWaitSeconds: 5, maxGroupWaitSeconds: 120, intervalMinutes: 60 });
    const notifier = await startNotifier({ nc, site: name, env: env() });
    h.onClose(() => notifier.close());
    for (let i = 0; i < 1000; i++) await appendFailedJob(log, name, `s${i}`, `vm-${i % 40}`);
    const head = await log.headPosition();
    await waitFor(() => smtp.mails.length >= 1 && hooks.requests.length >= 3, { timeoutMs: 60_000, what: 'the digests' });
    await waitFor(() => { const s = notifier.health(); return BigInt(s.read) >= head && s.pending === 0; }, { timeoutMs: 30_000, what: 'every event read and nothing pending' });

    expect(smtp.mails).toHaveLength(1);
    expect(smtp.mails[0]!.subject).toBe(`[Cairn ${name}] Digest: 1000 notices (1000 job-failed)`);
    expect(smtp.mails[0]!.text).toContain('… and 950 more');
    for (const kind of ['json', 'slack', 'teams']) expect(calls(name, kind), kind).toHaveLength(1);
    expect(JSON.parse(calls(name, 'json')[0]!.body)).toMatchObject({ count: 1000 });
    expect(notifier.health().messagesSent).toBe(4);
    await notifier.close();
  }, 180_000);

  it('replication behind, a certificate about to expire and a refused test restore reach a default route; caught up does not', async () => {
    const name = 'site-watch';
    const nc = await connect({ servers: natsUrl });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: name });
    h.onClose(() => log.close());
    hooks.requests.length = 0;
    await addRoute(log, name, { routeId: 'watch-hook', name: 'watch', match: {}, digest: { groupWaitSeconds: 1, intervalMinutes: 60 }, target: { kind: 'webhook', url: `${hooks.url}/${name}/json` } });
    const repl = { site: name, actor: { kind: 'service' as const, id: `replication@${name}` }, streamId: 'repllag-p1-lyon' };
    const rp = { restorePointId: 'rp-7', vmId: 'vm-db', committedAt: '2026-12-01T00:00:00.000Z' };
    await log.append('repllag-p1-lyon', [newEvent('ReplicationBehind', {
      policyId: 'p1', sourceSite: name, targetSite: 'lyon', maxLagMinutes: 60, lagMinutes: 95, unreplicated: 1, oldestUnreplicated: rp, newestUnreplicated: rp,
    }, repl)], { expectedRevision: 'no_stream' });
    const sched = { site: name, actor: { kind: 'service' as const, id: `scheduler@${name}` } };
    await log.append('expiry-certificate-server', [newEvent('CredentialExpiring', {
      credential: 'certificate', id: 'server', owner: 'CN=nats.site-watch', name: 'server.pem', expiresAt: '2026-12-09T00:00:00.000Z', daysLeft: 3,
    }, { ...sched, streamId: 'expiry-certificate-server' })], { expectedRevision: 'no_stream' });
    await log.append('testrestore-tr-x', [newEvent('TestRestoreRefused', {
      testRestoreId: 'tr-x', restorePointId: 'rp-7', vmId: 'vm-db', policyId: 'p2', reason: 'data mover refused the test restore: no restore point rp-7 in repository default',
    }, { ...sched, streamId: 'testrestore-tr-x' })], { expectedRevision: 'no_stream' });
    await log.append('repllag-p1-lyon', [newEvent('ReplicationCaughtUp', { policyId: 'p1', sourceSite: name, targetSite: 'lyon', unreplicated: 0 }, repl)], { expectedRevision: 0n });
    const notifier = await startNotifier({ nc, site: name, env: env() });
    h.onClose(() => notifier.close());
    const head = await log.headPosition();
    await waitFor(() => calls(name, 'json').length >= 1, { timeoutMs: 30_000, what: 'the webhook call' });
    await waitFor(() => { const st = notifier.health(); return BigInt(st.saved) >= head && st.pending === 0; }, { timeoutMs: 10_000, what: 'the notifier to be done' });
    expect(calls(name, 'json')).toHaveLength(1);
    const body = JSON.parse(calls(name, 'json')[0]!.body) as { notices: Array<{ kind: string; severity: string; title: string }> };
    expect(body.notices.map((n) => [n.kind, n.severity])).toEqual([['replication-behind', 'warning'], ['credential-expiring', 'warning'], ['test-restore-failed', 'error']]);
    expect(body.notices[0]!.title).toBe('Replication from site-watch to lyon is 95 min behind (allowed 60)');
    expect(body.notices[1]!.title).toContain('Certificate server.pem (CN=nats.site-watch)');
    await notifier.close();
  }, 60_000);
});
