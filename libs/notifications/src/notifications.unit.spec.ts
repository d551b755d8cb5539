// Pure parts of notifications: the route decider, which events give which notice, routing by
// kind/severity/site/VM, digest timing on a clock the test controls, and message renderings.
import { describe, expect, it } from 'vitest';
import { newEvent, type NotificationRoute, type NotificationRouteAdded, type NotificationRouteRemoved } from '@cairn/contracts';
import { deciderSpec } from '@cairn/jobs/testing';
import { RouteRefused, foldRoutes, routeDecider } from './route.decider.ts';
import { DEFAULT_KINDS, matches, noticeOf, type Notice } from './notice.ts';
import { addToGroup, digestTimes, dueAt, type Group } from './digest.ts';
import { messageOf, webhookBodyOf, emailOf } from './message.ts';
import { syslogLineOf } from './transports.ts';

const site = 'site-a';
const meta = { site, streamId: 'notifyroute-r1', actor: { kind: 'user' as const, id: 'ops' } };
const route: NotificationRoute = { routeId: 'r1', name: 'ops', match: {}, target: { kind: 'webhook', url: 'https://hooks.example.com/x' } };
const added = newEvent('NotificationRouteAdded', route, meta) as NotificationRouteAdded;
const removed = newEvent('NotificationRouteRemoved', { routeId: 'r1' }, meta) as NotificationRouteRemoved;

describe('route decider', () => {
  const spec = deciderSpec(routeDecider);
  it('adds, replaces, and does nothing for the same route again', () => {
    spec.given([]).when({ type: 'AddRoute', route }).then([{ type: 'NotificationRouteAdded', data: route }]);
    spec.given([added]).when({ type: 'AddRoute', route }).thenNothing();
    const changed = { ...route, match: { kinds: ['job-failed' as const] } };
    spec.given([added]).when({ type: 'AddRoute', route: changed }).then([{ type: 'NotificationRouteAdded', data: changed }]);
  });
  it('removes a route once; a missing route is refused as not found', () => {
    spec.given([added]).when({ type: 'RemoveRoute', routeId: 'r1' }).then([{ type: 'NotificationRouteRemoved', data: { routeId: 'r1' } }]);
    spec.given([added, removed]).when({ type: 'RemoveRoute', routeId: 'r1' }).thenRefuses((e) => e instanceof RouteRefused && e.code === 'not_found');
  });
  it('refuses an e-mail route with a user but no password variable', () => {
    const mail: NotificationRoute = { ...route, target: { kind: 'email', host: 'smtp.example.com', port: 587, from: 'a@example.com', to: ['b@example.com'], user: 'u' } };
    spec.given([]).when({ type: 'AddRoute', route: mail }).thenRefuses(/--password-env/);
  });
  it('folds the table of live routes in log order', () => {
    expect([...foldRoutes(new Map(), added).keys()]).toEqual(['r1']);
    expect(foldRoutes(foldRoutes(new Map(), added), removed).size).toBe(0);
  });
});

const jobFailed = (jobId: string) => newEvent('JobFailed', { jobId, phase: 'transfer', reason: 'disk full', retryable: false }, { site, streamId: `job-${jobId}`, actor: { kind: 'service', id: 'scheduler@site-a' } });

describe('notices and routing', () => {
  const jobs = { vmOf: (j: string) => (j === 'j1' ? 'vm-1' : undefined) };
  it('a failed job is an error notice naming its VM; a completed job is none', () => {
    const n = noticeOf(jobFailed('j1'), 7n, jobs)!;
    expect(n).toMatchObject({ kind: 'job-failed', severity: 'error', vmId: 'vm-1', position: '7', title: 'Backup job j1 failed (VM vm-1)' });
    expect(noticeOf(newEvent('JobCompleted', { jobId: 'j1', restorePointId: 'rp', bytesRead: 1, bytesStored: 1, durationMs: 1 }, { site, streamId: 'job-j1', actor: { kind: 'service', id: 's' } }), 8n, jobs)).toBeUndefined();
  });
  it('RPO missed and an approval waiting are notices by default; RPO restored only when asked for', () => {
    const missed = noticeOf(newEvent('RpoMissed', { vmId: 'vm-1', policyId: 'p', rpoMinutes: 60, lastRestorePointAt: null, missedSince: '2026-01-01T01:00:00.000Z' }, { site, streamId: 'rpo-vm-1', actor: { kind: 'service', id: 's' } }), 1n, jobs)!;
    const back = noticeOf(newEvent('RpoRestored', { vmId: 'vm-1', policyId: 'p', restorePointId: 'rp', restorePointAt: '2026-01-01T02:00:00.000Z' }, { site, streamId: 'rpo-vm-1', actor: { kind: 'service', id: 's' } }), 2n, jobs)!;
    expect(matches({}, missed)).toBe(true);
    expect(matches({}, back)).toBe(false);
    expect(matches({ kinds: ['rpo-restored'] }, back)).toBe(true);
  });
  it('matches by kind, severity, site and VM', () => {
    const n = noticeOf(jobFailed('j1'), 1n, jobs)!;
    expect(matches({ kinds: ['rpo-missed'] }, n)).toBe(false);
    expect(matches({ minSeverity: 'critical' }, n)).toBe(false);
    expect(matches({ sites: ['site-b'] }, n)).toBe(false);
    expect(matches({ vmIds: ['vm-1'] }, n)).toBe(true);
    expect(matches({ vmIds: ['vm-2'] }, n)).toBe(false);
    expect(matches({ vmIds: ['vm-1'] }, noticeOf(jobFailed('j2'), 2n, jobs)!)).toBe(false); // VM unknown
  });
});

describe('digests on a controlled clock', () => {
  const t = digestTimes({ groupWaitSeconds: 30, maxGroupWaitSeconds: 300, intervalMinutes: 60 });
  const notice = (i: number): Notice => noticeOf(jobFailed(`j${i}`), BigInt(i), { vmOf: () => undefined })!;
  it('waits for a quiet spell, at most maxGroupWait, and never sooner than the interval after the last message', () => {
    let g: Group | undefined;
    for (let i = 1; i <= 1000; i++) g = addToGroup(g, notice(i), i * 60); // 1,000 notices over 60 s
    expect(g!.count).toBe(1000);
    expect(g!.listed).toHaveLength(50);
    expect(dueAt(g!, undefined, t)).toBe(60_000 + 30_000);
    // A storm that never stops is sent after maxGroupWait.
    expect(dueAt({ ...g!, lastAt: 10_000_000 }, undefined, t)).toBe(60 + 300_000);
    // A message went out 10 minutes ago: the next waits for the hour.
    expect(dueAt(g!, 0, t)).toBe(3_600_000);
  });
  it('renders one message per group with an id that depends only on the route and the notices', () => {
    let g: Group | undefined;
    for (let i = 1; i <= 3; i++) g = addToGroup(g, notice(i), i);
    const m = messageOf('r1', site, g!);
    expect(m.title).toBe('Digest: 3 notices (3 job-failed)');
    expect(messageOf('r1', site, { ...g!, firstAt: 99, lastAt: 100 }).id).toBe(m.id);
    expect(messageOf('r2', site, g!).id).not.toBe(m.id);
    expect(emailOf(m, 'a@example.com', ['b@example.com'])).toMatchObject({ subject: '[Cairn site-a] Digest: 3 notices (3 job-failed)', messageId: `<${m.id}@cairn.site-a>` });
    expect(webhookBodyOf(m, 'slack')).toEqual({ text: expect.stringMatching(/^\*\[Cairn site-a\] Digest/) });
    expect(webhookBodyOf(m, 'teams')).toMatchObject({ '@type': 'MessageCard', themeColor: 'C62828' });
    expect(syslogLineOf(m, 'host-1')).toMatch(/^<11>1 \S+ host-1 cairn-notifier - notification \[cairn@32473 id="[0-9a-f]{32}" site="site-a" route="r1" severity="error" count="3"\] Digest/);
  });
});

describe('expiry notices', () => {
  it('an API token near its expiry is a credential-expiring warning that default routes hear', () => {
    const n = noticeOf({ id: 'e1', type: 'CredentialExpiring', time: '2027-01-01T00:00:00.000Z', site: 'a', data: {
      credential: 'api-token', id: 't1', owner: 'ops', name: 'ci', expiresAt: '2027-01-10T00:00:00.000Z', daysLeft: 9,
    } }, 5n, { vmOf: () => undefined });
    expect(n).toMatchObject({ kind: 'credential-expiring', severity: 'warning', title: 'API token ci of ops expires 2027-01-10T00:00:00.000Z' });
    expect(DEFAULT_KINDS).toContain('credential-expiring');
  });

  it('a site certificate near its expiry is a credential-expiring warning naming its file and subject', () => {
    const n = noticeOf({ id: 'e2', type: 'CredentialExpiring', time: '2027-01-01T00:00:00.000Z', site: 'a', data: {
      credential: 'certificate', id: 'server', owner: 'CN=nats.a', name: 'server.pem', expiresAt: '2027-01-04T00:00:00.000Z', daysLeft: 3,
    } }, 6n, { vmOf: () => undefined });
    expect(n).toMatchObject({ kind: 'credential-expiring', severity: 'warning', title: 'Certificate server.pem (CN=nats.a) expires 2027-01-04T00:00:00.000Z' });
  });

  it('a replication target behind is a replication-behind warning default routes hear; caught up is info', () => {
    const rp = { restorePointId: 'rp-9', vmId: 'vm-1', committedAt: '2027-01-01T00:00:00.000Z' };
    const n = noticeOf({ id: 'e3', type: 'ReplicationBehind', time: '2027-01-01T02:00:00.000Z', site: 'a', data: {
      policyId: 'p1', sourceSite: 'a', targetSite: 'b', maxLagMinutes: 60, lagMinutes: 120, unreplicated: 2, oldestUnreplicated: rp, newestUnreplicated: rp,
    } }, 7n, { vmOf: () => undefined });
    expect(n).toMatchObject({ kind: 'replication-behind', severity: 'warning', title: 'Replication from a to b is 120 min behind (allowed 60)' });
    expect(n?.text).toContain('rp-9');
    expect(DEFAULT_KINDS).toContain('replication-behind');
    const c = noticeOf({ id: 'e4', type: 'ReplicationCaughtUp', time: '2027-01-01T03:00:00.000Z', site: 'a', data: { policyId: 'p1', sourceSite: 'a', targetSite: 'b', unreplicated: 0 } }, 8n, { vmOf: () => undefined });
    expect(c).toMatchObject({ kind: 'replication-caught-up', severity: 'info' });
  });
});
