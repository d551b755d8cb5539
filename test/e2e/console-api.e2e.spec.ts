// The gateway's surface for the web console, over HTTP with a real nats-server and the
// JetStream log: sign-in into an HttpOnly cookie, the CSRF rule for cookie-authenticated
// changes, the live feed (server-sent events) filtered by role, and a feed that resumes after a
// gateway restart from Last-Event-ID with no event lost or repeated.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { newEvent, progressSubject } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { useHarness } from '@cairn/testing';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

const site = 'console-api';
const token = 'console-api-token-0123456789abcdef';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let gateway: RunningGateway;
let port = 0;

async function start(): Promise<void> {
  gateway = await startGateway({ nc, log, site, port, token, logger, timeoutMs: 3000 });
  port = gateway.port;
}

interface Frame { event?: string; id?: string; data: string }

/** Reads SSE frames from the feed until `until` says stop (or the stream ends). */
async function readFeed(headers: Record<string, string>, until: (frames: Frame[]) => boolean, path = '/v1/events/stream'): Promise<Frame[]> {
  const ac = new AbortController();
  const res = await fetch(`${gateway.url}${path}`, { headers, signal: ac.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const frames: Frame[] = [];
  let buffer = '';
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const f: Frame = { data: '' };
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) f.event = line.slice(7);
          else if (line.startsWith('id: ')) f.id = line.slice(4);
          else if (line.startsWith('data: ')) f.data += line.slice(6);
        }
        if (f.event || f.id || f.data) frames.push(f);
      }
      if (until(frames)) break;
    }
  } finally {
    ac.abort();
  }
  return frames;
}

function jobEvent(jobId: string) {
  return newEvent('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, { site, streamId: `job-${jobId}`, actor: { kind: 'service', id: 'test' } });
}

beforeAll(async () => {
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  await start();
});

afterAll(async () => { await gateway?.close(); });

describe('console session', () => {
  it('signs in into an HttpOnly SameSite=Strict cookie that authenticates later requests', async () => {
    const bad = await fetch(`${gateway.url}/v1/session`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: 'x'.repeat(20) }) });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('set-cookie')).toBeNull();
    const res = await fetch(`${gateway.url}/v1/session`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ actor: { id: 'admin' }, roles: ['administrator'] });
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^cairn_session=.+; Path=\/; HttpOnly; SameSite=Strict/);
    const session = cookie.split(';')[0]!;
    const me = await fetch(`${gateway.url}/v1/whoami`, { headers: { Cookie: session } });
    expect(me.status).toBe(200);
    expect(await me.json()).toMatchObject({ actor: { id: 'admin' } });
    const out = await fetch(`${gateway.url}/v1/session/end`, { method: 'POST' });
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(/Max-Age=0/);
  });

  it('refuses a cookie-authenticated change without the console header or from another origin (403 csrf)', async () => {
    const session = `cairn_session=${encodeURIComponent(token)}`;
    const body = JSON.stringify({ userId: 'csrf-victim', roles: ['auditor'] });
    const noHeader = await fetch(`${gateway.url}/v1/users`, { method: 'POST', headers: { Cookie: session, 'Content-Type': 'application/json' }, body });
    expect(noHeader.status).toBe(403);
    expect(await noHeader.json()).toMatchObject({ code: 'csrf' });
    const foreign = await fetch(`${gateway.url}/v1/users`, { method: 'POST', headers: { Cookie: session, 'Content-Type': 'application/json', 'X-Cairn-CSRF': '1', Origin: 'http://evil.example' }, body });
    expect(foreign.status).toBe(403);
    const ok = await fetch(`${gateway.url}/v1/users`, { method: 'POST', headers: { Cookie: session, 'Content-Type': 'application/json', 'X-Cairn-CSRF': '1', Origin: gateway.url }, body });
    expect(ok.status).toBe(201);
  });

  it('serves the console page for page paths, never for API paths', async () => {
    const page = await fetch(`${gateway.url}/vms/some-vm`);
    expect([200, 503]).toContain(page.status); // 503 names the build command when the console is not built
    if (page.status === 200) expect(await page.text()).toMatch(/<div id="app">/);
    const api = await fetch(`${gateway.url}/v1/not-a-route`, { headers: { Authorization: `Bearer ${token}` } });
    expect(api.status).toBe(404);
    expect(api.headers.get('content-type')).toMatch(/problem\+json/);
  });
});

describe('live feed', () => {
  it('streams new log events with their positions and progress messages; an auditor does not see what an operator may not', async () => {
    const auth = { Authorization: `Bearer ${token}` };
    const user = await fetch(`${gateway.url}/v1/users`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: 'op1', roles: ['operator'] }) });
    expect(user.status).toBe(201);
    const issued = await fetch(`${gateway.url}/v1/tokens`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: 'op1', name: 'feed' }) });
    const opToken = ((await issued.json()) as { token: string }).token;
    const head = await log.headPosition();
    await log.append('job-feed1', [jobEvent('feed1')], { expectedRevision: 'no_stream' });
    const since = `?after=${head}`;
    const admin = await readFeed(auth, (f) => f.some((x) => x.data.includes('feed1')), `/v1/events/stream${since}`);
    expect(admin[0]).toMatchObject({ event: 'ready', id: String(head) });
    const frame = admin.find((x) => x.data.includes('feed1'))!;
    expect(frame.event).toBe('log');
    expect(JSON.parse(frame.data)).toMatchObject({ type: 'JobRequested', streamId: 'job-feed1', position: frame.id });

    // The operator's feed from the start of the log: jobs yes, users and tokens no.
    const op = await readFeed({ Authorization: `Bearer ${opToken}` }, (f) => f.some((x) => x.data.includes('feed1')), '/v1/events/stream?after=0');
    const streams = op.filter((x) => x.event === 'log').map((x) => (JSON.parse(x.data) as { streamId: string }).streamId);
    expect(streams).toContain('job-feed1');
    expect(streams.filter((s) => /^(user|token|access)-/.test(s))).toEqual([]);

    // Progress messages arrive as they are published (no id: not in the log).
    const progress = readFeed(auth, (f) => f.some((x) => x.event === 'progress'));
    const publisher = setInterval(() => nc.publish(progressSubject(site, 'feed1'), JSON.stringify({ disk: 'vda', bytesDone: 5, bytesPlanned: 10 })), 100);
    try {
      const frames = await progress;
      const p = frames.find((x) => x.event === 'progress')!;
      expect(p.id).toBeUndefined();
      expect(JSON.parse(p.data)).toMatchObject({ jobId: 'feed1', disk: 'vda', bytesDone: 5, bytesPlanned: 10 });
    } finally {
      clearInterval(publisher);
    }
  });

  it('with follow=false sends what the log holds and ends', async () => {
    const head = await log.headPosition();
    const res = await fetch(`${gateway.url}/v1/events/stream?after=0&follow=false`, { headers: { Authorization: `Bearer ${token}` } });
    const ids = (await res.text()).split('\n').filter((l) => l.startsWith('id: ')).map((l) => BigInt(l.slice(4)));
    expect(ids[0]).toBe(0n);
    expect(ids.at(-1)).toBe(head);
  });

  it('refuses a feed without a session and a resume position that is not one', async () => {
    expect((await fetch(`${gateway.url}/v1/events/stream`)).status).toBe(401);
    const bad = await fetch(`${gateway.url}/v1/events/stream`, { headers: { Authorization: `Bearer ${token}`, 'Last-Event-ID': 'yesterday' } });
    expect(bad.status).toBe(400);
  });

  it('resumes after a gateway restart from Last-Event-ID: every event once, in log order', async () => {
    const auth = { Authorization: `Bearer ${token}` };
    const before = await log.headPosition();
    for (const id of ['r1', 'r2']) await log.append(`job-${id}`, [jobEvent(id)], { expectedRevision: 'no_stream' });
    const first = await readFeed(auth, (f) => f.some((x) => x.data.includes('"r2"')), `/v1/events/stream?after=${before}`);
    const lastId = first.filter((x) => x.id).at(-1)!.id!;

    await gateway.close();
    // Written while no gateway runs.
    for (const id of ['r3', 'r4']) await log.append(`job-${id}`, [jobEvent(id)], { expectedRevision: 'no_stream' });
    await start();
    await log.append('job-r5', [jobEvent('r5')], { expectedRevision: 'no_stream' });
    const second = await readFeed({ ...auth, 'Last-Event-ID': lastId }, (f) => f.some((x) => x.data.includes('"r5"')));

    const shown = [...first, ...second].filter((x) => x.event === 'log').map((x) => JSON.parse(x.data) as { position: string; id: string; streamId: string });
    const inLog: { position: string; id: string; streamId: string }[] = [];
    for await (const r of log.readAll({ fromPosition: before })) inLog.push({ position: r.position.toString(), id: r.event.id, streamId: r.event.streamId });
    // The log from `before` up to the last event shown, each once, in order: nothing missed across the restart.
    const upTo = inLog.slice(0, inLog.findIndex((e) => e.position === shown.at(-1)!.position) + 1);
    expect(shown.map((e) => [e.position, e.id])).toEqual(upTo.map((e) => [e.position, e.id]));
    expect(shown.map((e) => e.streamId)).toEqual(expect.arrayContaining(['job-r1', 'job-r2', 'job-r3', 'job-r4', 'job-r5']));
  });
});

describe('single sign-on (OIDC authorization code + PKCE)', () => {
  it('sends the browser to the provider, takes the code back, checks the token and signs in; a foreign state is refused', async () => {
    // A provider that consents at once: /authorize redirects back with a code, /token checks PKCE and answers a JWT.
    const pair = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' };
    const codes = new Map<string, { challenge: string; redirectUri: string }>();
    let issuer = '';
    const idp = createServer((req, res) => {
      const url = new URL(req.url ?? '/', issuer);
      if (url.pathname === '/.well-known/openid-configuration') {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks.json` }));
      } else if (url.pathname === '/jwks.json') {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ keys: [jwk] }));
      } else if (url.pathname === '/authorize') {
        expect(url.searchParams.get('code_challenge_method')).toBe('S256');
        expect(url.searchParams.get('client_id')).toBe('cairn-console');
        const code = `code-${codes.size + 1}`;
        codes.set(code, { challenge: url.searchParams.get('code_challenge')!, redirectUri: url.searchParams.get('redirect_uri')! });
        res.statusCode = 302;
        res.setHeader('Location', `${url.searchParams.get('redirect_uri')}?code=${code}&state=${url.searchParams.get('state')}`);
        res.end();
      } else if (url.pathname === '/token') {
        let body = '';
        req.on('data', (d: Buffer) => { body += d.toString(); });
        req.on('end', () => {
          const form = new URLSearchParams(body);
          const c = codes.get(form.get('code') ?? '');
          const ok = c && c.redirectUri === form.get('redirect_uri') && createHash('sha256').update(form.get('code_verifier') ?? '').digest('base64url') === c.challenge;
          res.setHeader('Content-Type', 'application/json');
          if (!ok) { res.statusCode = 400; res.end(JSON.stringify({ error: 'invalid_grant' })); return; }
          void new SignJWT({ roles: ['auditor'] }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(issuer).setAudience('cairn').setSubject('erin@example.org')
            .setIssuedAt().setExpirationTime('5m').sign(pair.privateKey).then((t) => res.end(JSON.stringify({ access_token: t, token_type: 'Bearer' })));
        });
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    h.onClose(() => new Promise<void>((resolve) => idp.close(() => resolve())));
    issuer = `http://127.0.0.1:${(idp.address() as { port: number }).port}`;
    const sso = await startGateway({ nc, log, site, port: 0, token, logger, oidc: { issuer, audience: 'cairn', jwksUrl: `${issuer}/jwks.json`, clientId: 'cairn-console' } });
    h.onClose(() => sso.close());

    expect(await (await fetch(`${sso.url}/v1/session/options`)).json()).toEqual({ token: true, oidc: { issuer } });
    expect(await (await fetch(`${gateway.url}/v1/session/options`)).json()).toEqual({ token: true, oidc: null });
    const start = await fetch(`${sso.url}/v1/session/oidc`, { redirect: 'manual' });
    expect(start.status).toBe(302);
    const loginCookie = start.headers.get('set-cookie')!;
    expect(loginCookie).toMatch(/^cairn_oidc=.+; Path=\/v1\/session\/oidc\/callback; HttpOnly; SameSite=Lax/);
    const atIdp = await fetch(start.headers.get('location')!, { redirect: 'manual' });
    const back = new URL(atIdp.headers.get('location')!);
    expect(back.pathname).toBe('/v1/session/oidc/callback');

    // The same callback without the login cookie (another browser, a forged link): refused.
    expect((await fetch(back, { redirect: 'manual' })).status).toBe(401);

    const done = await fetch(back, { redirect: 'manual', headers: { Cookie: loginCookie.split(';')[0]! } });
    expect(done.status).toBe(303);
    expect(done.headers.get('location')).toBe('/');
    const session = done.headers.getSetCookie().find((c) => c.startsWith('cairn_session='))!;
    expect(session).toMatch(/HttpOnly; SameSite=Strict/);
    const me = await fetch(`${sso.url}/v1/whoami`, { headers: { Cookie: session.split(';')[0]! } });
    expect(await me.json()).toMatchObject({ actor: { id: 'erin@example.org' }, roles: ['auditor'] });
    await sso.close();
  });
});
