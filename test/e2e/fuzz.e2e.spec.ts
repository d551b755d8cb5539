// Seeded fuzz of the edges: gateway request bodies, params and raw paths over HTTP, and command
// payloads sent straight to the NATS command subjects, against a real nats-server, the
// JetStream event log, the catalogue, a real data mover with a directory repository holding one
// restore point, and a fake scheduler. Every input is malformed or hostile (wrong types, extra
// fields, huge sizes, malformed JSON, path traversal, %2e%2e, absolute paths, NUL bytes,
// symlinks out of the restore root): each must be refused with a 4xx (HTTP) or a typed command
// error (NATS), and nothing may change: the event log head stays where it was, the fake
// scheduler receives nothing, and no file appears outside the restore root (nor inside it).
// The seed is printed in the test name; CAIRN_FUZZ_SEED replays a run.
import { request as httpRequest } from 'node:http';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Value } from '@sinclair/typebox/value';
import { commandSubject, COMMAND_ERROR_CODES, CreatePolicyV1, RequestBackupV1 } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { JetStreamServer } from '@cairn/messaging';
import { DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { useHarness } from '@cairn/testing';
import { startCatalogue } from '@cairn/catalogue';
import { startDataMover } from '@cairn/data-mover';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';

const SEED = Number(process.env.CAIRN_FUZZ_SEED ?? 0xC0FFEE) >>> 0;
const CASES = 240;
const site = 'site-fuzz';
const token = 'fuzz-token-0123456789abcdef';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let gateway: RunningGateway;
let base: string; // everything this test owns on disk
let root: string; // the data mover's only restore root
let outside: string; // a directory beside the root that must stay empty
let restorePointId: string;
let repo: Repository;
const reachedScheduler: string[] = [];

/** mulberry32: small, seeded, good enough to pick fuzz cases reproducibly. */
function rng(seed: number) {
  let a = seed;
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]! };
}

/** Hostile strings: traversal, encoded traversal, absolute paths, NUL bytes, control and odd Unicode, huge. */
function hostileStrings(): string[] {
  return [
    '../../etc/passwd', '..\\..\\windows\\win.ini', '%2e%2e/%2e%2e/etc/passwd', '%2e%2e%2f%2e%2e%2fetc%2fpasswd', '..%2F..%2Fetc',
    '/etc/passwd', '/', '.', '..', '....//....//etc', 'a\u0000b', '\u0000', '/tmp/x\u0000.raw', 'vm1/../../x', '~root',
    '\u202e', '\ud800', '$(touch /tmp/cairn-fuzz-pwned)', '`id`', '; rm -rf /', '<script>', "' OR 1=1 --", '{"$gt":""}',
    '', ' ', 'x'.repeat(5000), 'é'.repeat(300),
  ];
}

/** Hostile restore-target paths, relative to the test's directories. */
function hostilePaths(): string[] {
  return [
    `${root}/../outside/escaped.raw`, `${root}/../../escaped.raw`, `${root}/%2e%2e/escaped.raw`, `${root}/a/../../outside/x.raw`,
    `${outside}/direct.raw`, '/etc/passwd', '/etc/cairn-fuzz.raw', '/tmp/cairn-fuzz.raw', 'relative.raw', '../relative.raw',
    `${root}/nul\u0000.raw`, `${root}\u0000/../outside/nul.raw`, `${root}/link-out/through-link.raw`, `${root}/link-file.raw`,
    `${root}/../${root.split('/').pop()}x/sibling.raw`, `${root}x/prefix-sibling.raw`, root, `${root}/`, `${root}/.`,
  ];
}

/** Every file and directory under `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(relative(dir, p) + (e.isDirectory() ? '/' : ''));
      if (e.isDirectory() && !e.isSymbolicLink()) await walk(p);
    }
  };
  await walk(dir);
  return out.sort();
}

interface Reply { status: number; contentType: string; body: string }

/** A raw HTTP request (no URL normalisation, so `..` and `%2e%2e` reach the server as sent). */
function raw(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  const url = new URL(gateway.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: url.hostname, port: url.port, method, path,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) } : {}),
        ...headers,
      },
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    // A server may refuse a huge body before reading it all: the reply still counts.
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? resolve({ status: 413, contentType: 'aborted', body: e.code }) : reject(e)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

beforeAll(async () => {
  base = await h.tmpDir();
  root = join(base, 'restores');
  outside = join(base, 'outside');
  await mkdir(root);
  await mkdir(outside);
  // Ways out of the root that a lexical check alone would miss.
  await symlink(outside, join(root, 'link-out'));
  await writeFile(join(outside, 'victim.raw'), 'do not overwrite');
  await symlink(join(outside, 'victim.raw'), join(root, 'link-file.raw'));

  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  const catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());

  repo = await initRepository(new DirectoryBackend(join(base, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
  h.onClose(() => repo.close());
  ({ restorePointId } = await repo.writeRestorePoint({
    vm: { id: 'vm1', name: 'vm1' },
    disks: [{ name: 'vda', sizeBytes: 65536, extents: [{ offset: 0, data: Buffer.alloc(65536, 7) }] }],
  }));
  const mover = await startDataMover({ nc, log, site, repositories: new Map([['default', repo]]), restoreRoots: [root], logger, runDir: join(base, 'run') });
  h.onClose(() => mover.close());

  const scheduler = new JetStreamServer({ connection: nc, site, actor: { kind: 'service', id: 'fake-scheduler' } });
  for (const name of ['RequestBackup', 'CreatePolicy'] as const) {
    scheduler.addCommandHandler('scheduler', name, async (payload) => {
      reachedScheduler.push(`${name} ${JSON.stringify(payload)}`);
      return name === 'RequestBackup' ? { jobId: 'j' } : { policyId: 'p' };
    });
  }
  await new Promise<void>((resolve, reject) => { void scheduler.listen((e?: unknown) => (e ? reject(e) : resolve())); });
  h.onClose(() => scheduler.close());

  // This file sends bad credentials by the hundred from one address: throttling (429 after 10 a minute)
  // is tested in hostile-input.e2e.spec.ts; here every one must meet the check itself.
  gateway = await startGateway({ nc, site, port: 0, token, logger, authFailureLimit: 1_000_000, bodyLimitBytes: 16 * 1024, timeoutMs: 10_000, longTimeoutMs: 30_000 });
  h.onClose(() => gateway.close());
});

afterAll(async () => { await gateway?.close(); });

/** Events the gateway records about callers (a first sign-in, a refusal, failed authentication): the audit trail, not a change. */
const SECURITY_RECORDS = new Set(['SignedIn', 'AccessDenied', 'AuthFailed']);

/**
 * What must hold after every batch: nothing but sign-in/denial records written to the log,
 * nothing reached the scheduler, no file anywhere new.
 */
async function nothingChanged(head: bigint, files: string[]) {
  const written: string[] = [];
  for await (const r of log.readAll({ fromPosition: head })) written.push(r.event.type);
  expect(written.filter((t) => !SECURITY_RECORDS.has(t))).toEqual([]);
  expect(reachedScheduler).toEqual([]);
  expect(await tree(base).then((t) => t.filter((p) => !p.startsWith('repo/') && !p.startsWith('run/')))).toEqual(files);
}

async function snapshot() {
  // A first request signs the caller in (recorded once per gateway process): get it out of the way.
  expect((await raw('GET', '/v1/vms')).status).toBe(200);
  return { head: await log.headPosition(), files: (await tree(base)).filter((p) => !p.startsWith('repo/') && !p.startsWith('run/')) };
}

describe(`fuzz: gateway requests (seed ${SEED}, replay with CAIRN_FUZZ_SEED)`, () => {
  it('refuses every hostile restore target with a 4xx and writes nothing anywhere', async () => {
    const before = await snapshot();
    for (const path of hostilePaths()) {
      for (const overwrite of [false, true]) {
        const body = JSON.stringify({ restorePointId, disk: 'vda', target: { kind: 'file', path }, overwrite });
        const r = await raw('POST', '/v1/restores', body);
        expect({ path, overwrite, status: r.status, type: r.contentType }).toMatchObject({ status: expect.toSatisfy((s: number) => s >= 400 && s < 500) as unknown, type: expect.stringMatching(/problem\+json/) as unknown });
      }
    }
    await nothingChanged(before.head, before.files);
    // The victim behind the symlink is untouched.
    expect(await import('node:fs/promises').then((f) => f.readFile(join(outside, 'victim.raw'), 'utf8'))).toBe('do not overwrite');
  });

  it(`answers ${CASES} mutated bodies, params and raw paths with a 4xx problem, changing nothing`, async () => {
    const r = rng(SEED);
    const before = await snapshot();
    const strings = hostileStrings();
    const values = (): unknown => r.pick<() => unknown>([
      () => r.pick(strings), () => r.int(2 ** 31) - 2 ** 30, () => -1, () => 1e308, () => Number.MAX_SAFE_INTEGER + 2, () => true, () => null,
      () => [], () => [r.pick(strings)], () => ({}), () => ({ __proto__: { admin: true } }), () => ({ constructor: { prototype: { x: 1 } } }),
    ])();
    const validBodies: Record<string, Record<string, unknown>> = {
      '/v1/backups': { vmId: 'vm1', mode: 'full' },
      '/v1/policies': {
        name: 'nightly', selector: { names: ['web-1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
        retention: { daily: 7, weekly: 4, monthly: 0, yearly: 0, last: 3 }, repository: 'local', keyRef: 'default', priority: 5,
      },
      '/v1/restores': { restorePointId, disk: 'vda', target: { kind: 'file', path: join(root, 'ok.raw') } },
    };
    const REQUIRED: Record<string, string[]> = { '/v1/backups': ['vmId'], '/v1/policies': ['name', 'selector', 'schedule', 'retention', 'repository', 'keyRef', 'priority'], '/v1/restores': ['restorePointId', 'disk', 'target'] };
    const idRoutes = ['/v1/vms/', '/v1/jobs/', '/v1/restore-points/', '/v1/policies/'];
    const listRoutes = ['/v1/jobs', '/v1/restore-points', '/v1/policies', '/v1/audit', '/v1/replicas'];
    const seen = new Map<number, number>();
    for (let i = 0; i < CASES; i++) {
      const kind = r.int(7);
      let res: Reply;
      let label: string;
      if (kind <= 2) {
        // A body that is valid but for one field: changed type, hostile string, or an extra field; or nested one level down.
        const path = r.pick(Object.keys(validBodies));
        const body: Record<string, unknown> = structuredClone(validBodies[path]!);
        const keys = Object.keys(body);
        const how = r.int(4);
        if (how === 0) body[r.pick(keys)] = values();
        else if (how === 1) body[`extra${r.int(9)}`] = values();
        else if (how === 2) delete body[r.pick(REQUIRED[path]!)];
        else body.target = { kind: r.pick(['file', 'vm-disk', 'nbd-export', 'FILE', '']), path: r.pick([...strings, ...hostilePaths()]), exportName: r.pick(strings), extra: 1 };
        // Only requests the schema must refuse count (a mutation may by chance stay valid, e.g. a policy name).
        label = `${path} ${JSON.stringify(body).slice(0, 200)}`;
        // A mutation that by chance is still valid (a hostile string is a harmless policy name; an
        // empty selector is a selector) is a request like any other: it does not count.
        if (path === '/v1/policies' && Value.Check(CreatePolicyV1, body)) continue;
        if (path === '/v1/backups' && Value.Check(RequestBackupV1, { mode: 'auto', ...body })) continue;
        res = await raw('POST', path, JSON.stringify(body));
      } else if (kind === 3) {
        // Not JSON, or JSON that is not an object, or too big, or too deep.
        const path = r.pick(Object.keys(validBodies));
        const body = r.pick([
          '{', '{"vmId":', 'null', '[]', '"str"', '42', '{"vmId":"vm1",}', "{'vmId':'vm1'}", '\u0000', '{"a":1}{"b":2}',
          JSON.stringify({ vmId: 'x'.repeat(20_000) }), '['.repeat(5000) + ']'.repeat(5000), `{"vmId":"vm1","mode":"full"${',"x":1'.repeat(3000)}}`,
        ]);
        label = `${path} raw ${JSON.stringify(body.slice(0, 60))}`;
        res = await raw('POST', path, body, r.next() < 0.2 ? { 'Content-Type': r.pick(['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16']) } : {});
      } else if (kind === 4) {
        // Hostile ids in path params, percent-encoded or raw.
        const s = r.pick(strings.filter((x) => x.length > 0 && x.length < 1000));
        const pct = (x: string) => [...Buffer.from(x, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
        const enc = r.pick([
          () => pct(s), () => s.replace(/[^\x21-\x7e]/g, pct).replace(/[#?]/g, pct),
          // Malformed percent-encoding: the router cannot even decode it.
          () => r.pick(['%', '%zz', '%E0%A4%A', '%c0%ae%c0%ae%2f', '%%32%65']),
        ])();
        const path = r.pick(idRoutes) + enc;
        label = `GET ${path}`;
        res = await raw('GET', path);
        // A hostile id is refused by validation (400) or simply names nothing (404): never served.
        expect([400, 404], label).toContain(res.status);
      } else if (kind === 5) {
        // Hostile query strings: wrong types, repeated keys, huge values.
        const path = r.pick(listRoutes);
        const key = r.pick(['limit', 'vmId', 'state', 'actor', 'type', 'from', 'to', 'before', 'x', 'limit[]', '__proto__']);
        const v = r.pick(['-1', '1e9', 'abc', '%00', '..%2F..%2F', encodeURIComponent('../../etc/passwd'), 'x'.repeat(3000), '1&limit=2&limit=3']);
        label = `GET ${path}?${key}=${v.slice(0, 40)}`;
        res = await raw('GET', `${path}?${key}=${v}&limit=-5`);
      } else {
        // Raw paths that try to climb out of /v1, or unknown routes and methods.
        const path = r.pick(['/v1/../etc/passwd', '/v1/%2e%2e/%2e%2e/etc/passwd', '/v1/vms/..%2f..%2fopenapi.json', '//etc/passwd', '/v1/restores/../../x',
          '/v1/backups%00', '/v1/admin', '/v1/vms/vm1/delete', '/%2e%2e/', '/v1/jobs/%2e%2e']);
        const method = r.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']);
        label = `${method} ${path}`;
        res = await raw(method, path, method === 'GET' ? undefined : '{}');
      }
      expect(res.status, label).toBeGreaterThanOrEqual(400);
      expect(res.status, label).toBeLessThan(500);
      if (res.contentType !== 'aborted') expect(res.contentType, label).toMatch(/^application\/problem\+json/);
      seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
    }
    await nothingChanged(before.head, before.files);
    // The fuzz reached more than one kind of refusal (validation, not found, size, media type).
    expect(seen.size).toBeGreaterThanOrEqual(3);
  });
});

describe(`fuzz: access and approval routes (seed ${SEED})`, () => {
  it('refuses mistyped or extra fields and hostile ids on user, token and approval routes with a 4xx, creating nothing', async () => {
    const r = rng(SEED ^ 0xAC5E55);
    const before = await snapshot();
    const strings = hostileStrings();
    // Mutations that no schema can accept: a wrong type, an unknown field, a missing required field.
    const wrongType = (): unknown => r.pick<() => unknown>([() => r.int(1000) - 500, () => true, () => null, () => ({ x: r.pick(strings) }), () => [[r.pick(strings)]]])();
    const bodies: Record<string, { body: Record<string, unknown>; required: string[] }> = {
      '/v1/users': { body: { userId: 'fuzz-user', roles: ['auditor'] }, required: ['userId', 'roles'] },
      '/v1/tokens': { body: { userId: 'admin', name: 'fuzz' }, required: ['userId', 'name'] },
      '/v1/approvals': { body: { action: { kind: 'delete-restore-point', restorePointId } }, required: ['action'] },
      [`/v1/restore-points/${restorePointId}/deletion`]: { body: { reason: 'fuzz' }, required: [] },
      '/v1/users/admin/roles': { body: { roles: ['administrator'] }, required: ['roles'] },
    };
    for (let i = 0; i < 120; i++) {
      let res: Reply;
      let label: string;
      const kind = r.int(4);
      if (kind <= 1) {
        const path = r.pick(Object.keys(bodies));
        const { body: valid, required } = bodies[path]!;
        const body: Record<string, unknown> = structuredClone(valid);
        const how = required.length ? r.int(3) : 1;
        if (how === 0) body[r.pick(Object.keys(valid))] = wrongType();
        else if (how === 1) body[r.pick(['admin', 'roles_', 'token', 'tokenSha256', 'approvedBy', '__proto__x', 'isAdmin'])] = r.pick([true, 'administrator', ['administrator'], r.pick(strings)]);
        else delete body[r.pick(required)];
        if (path === '/v1/approvals' && how === 0 && r.next() < 0.5) body.action = { kind: r.pick(['delete-restore-point', 'delete-everything', '']), restorePointId: r.pick(strings), extra: true };
        label = `POST ${path} ${JSON.stringify(body).slice(0, 200)}`;
        res = await raw('POST', path, JSON.stringify(body));
        expect(res.status, label).toBe(400);
      } else if (kind === 2) {
        const s = r.pick(strings.filter((x) => x.length > 0 && x.length < 1000));
        const enc = [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
        const path = r.pick(['/v1/users/ID/roles', '/v1/users/ID/disable', '/v1/tokens/ID/revoke', '/v1/approvals/ID/approve', '/v1/approvals/ID/reject', '/v1/restore-points/ID/deletion', '/v1/approvals/ID']).replace('ID', enc);
        const method = path.endsWith('/ID') || /approvals\/[^/]+$/.test(path) ? 'GET' : 'POST';
        label = `${method} ${path}`;
        res = await raw(method, path, method === 'POST' ? JSON.stringify(path.endsWith('/roles') ? { roles: ['auditor'] } : {}) : undefined);
        expect([400, 404], label).toContain(res.status);
      } else {
        // Ids that are well formed but name nothing: nothing to revoke, approve or reject.
        const id = `none-${r.int(1e9)}`;
        const path = r.pick([`/v1/tokens/${id}/revoke`, `/v1/approvals/${id}/approve`, `/v1/approvals/${id}/reject`, `/v1/users/${id}/disable`, `/v1/restore-points/${id}/deletion`]);
        label = `POST ${path}`;
        res = await raw('POST', path, '{}');
        expect(res.status, label).toBe(404);
      }
      expect(res.contentType, label).toMatch(/^application\/problem\+json/);
    }
    await nothingChanged(before.head, before.files);
    // No user, token or approval came into being.
    expect(JSON.parse((await raw('GET', '/v1/users')).body).items.map((u: { userId: string }) => u.userId)).not.toContain('fuzz-user');
    expect(JSON.parse((await raw('GET', '/v1/approvals')).body).items).toEqual([]);
  });
});

describe(`fuzz: credentials (seed ${SEED})`, () => {
  it('answers malformed, forged and oversized bearer credentials with 401, signing no one in', async () => {
    const r = rng(SEED ^ 0xBEA7E4);
    const before = await snapshot();
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const forgedJwt = (alg: string) => `${b64({ alg, typ: 'JWT' })}.${b64({ sub: 'admin', roles: ['administrator'], exp: 4102444800 })}.${alg === 'none' ? '' : 'c2ln'}`;
    const headers = [
      '', 'Bearer', 'Bearer ', 'Basic YWRtaW46YWRtaW4=', `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, `Bearer ${token.toUpperCase()}`,
      `Bearer ${token} ${token}`, `Token ${token}`, `Bearer ${'A'.repeat(6000)}`, 'Bearer \xff\xfe', `Bearer ${forgedJwt('none')}`,
      `Bearer ${forgedJwt('HS256')}`, `Bearer ${forgedJwt('RS256')}`, 'Bearer ../../etc/passwd', 'Bearer %00', 'Bearer null', 'Bearer undefined',
    ];
    for (let i = 0; i < 60; i++) {
      const auth = i < headers.length ? headers[i]! : r.pick(headers) + r.pick(['', '=', '.', 'a', ' x']);
      const path = r.pick(['/v1/vms', '/v1/users', '/v1/whoami', '/v1/audit']);
      const method = r.next() < 0.3 ? 'POST' : 'GET';
      const target = method === 'POST' ? r.pick(['/v1/users', '/v1/tokens', '/v1/backups']) : path;
      const res = await raw(method, target, method === 'POST' ? '{}' : undefined, { Authorization: auth });
      expect(res.status, `${method} ${target} with ${JSON.stringify(auth.slice(0, 80))}`).toBe(401);
      expect(res.contentType).toMatch(/^application\/problem\+json/);
    }
    await nothingChanged(before.head, before.files);
    // Nobody was signed in by any of them.
    const signedIn: unknown[] = [];
    for await (const rec of log.readAll({ fromPosition: before.head })) if (rec.event.type === 'SignedIn') signedIn.push(rec.event.data);
    expect(signedIn).toEqual([]);
  });
});

describe(`fuzz: NATS command payloads (seed ${SEED})`, () => {
  const codes = new Set<string>(Object.values(COMMAND_ERROR_CODES));
  const envelope = (name: string, payload: unknown, extra: Record<string, unknown> = {}) => ({
    id: randomUUID(), name, schemaVersion: 1, idempotencyKey: randomUUID(), actor: { kind: 'user', id: 'fuzz' }, site, time: new Date().toISOString(), payload, ...extra,
  });

  async function send(service: string, name: string, data: Uint8Array | string) {
    const msg = await nc.request(commandSubject(site, service, name), typeof data === 'string' ? new TextEncoder().encode(data) : data, { timeout: 15_000 });
    return msg.json<{ accepted: boolean; error?: { code: string; message: string } }>();
  }

  it('refuses malformed, mistyped, oversized and hostile commands with a typed error, changing nothing', async () => {
    const r = rng(SEED ^ 0x5EED);
    const before = await snapshot();
    const strings = hostileStrings();
    const targets: [string, string][] = [['data-mover', 'DeleteRestorePoint'], ['data-mover', 'RestoreDisk'], ['data-mover', 'LockRestorePoint'], ['data-mover', 'StopRestoreExport'], ['scheduler', 'RequestBackup'], ['scheduler', 'CreatePolicy']];
    const cases: { label: string; service: string; name: string; data: string | Uint8Array }[] = [];
    for (const [service, name] of targets) {
      cases.push(
        { label: 'not JSON', service, name, data: '{"id":' },
        { label: 'binary', service, name, data: Uint8Array.from({ length: 256 }, (_, i) => i) },
        { label: 'JSON null', service, name, data: 'null' },
        { label: 'no payload', service, name, data: JSON.stringify(envelope(name, undefined)) },
        { label: 'wrong name', service, name, data: JSON.stringify(envelope('DeleteEverything', {})) },
        { label: 'other site', service, name, data: JSON.stringify({ ...envelope(name, {}), site: 'elsewhere' }) },
        { label: 'bad actor', service, name, data: JSON.stringify(envelope(name, {}, { actor: { kind: 'root', id: '../../' } })) },
        { label: 'future version', service, name, data: JSON.stringify(envelope(name, {}, { schemaVersion: 99 })) },
        { label: 'huge', service, name, data: JSON.stringify(envelope(name, { blob: 'x'.repeat(900_000) })) },
      );
    }
    for (let i = 0; i < 80; i++) {
      const [service, name] = r.pick(targets);
      const s = r.pick(strings);
      const payload = r.pick<() => unknown>([
        () => ({ restorePointId: s, disk: 'vda', target: { kind: 'file', path: join(root, 'x.raw') } }),
        () => ({ restorePointId, disk: s, target: { kind: 'file', path: r.pick(hostilePaths()) } }),
        () => ({ restorePointId, disk: 'vda', target: { kind: 'file', path: r.pick(hostilePaths()) }, overwrite: true }),
        // A deletion with a forged or missing approval: the data mover finds no granted approval in the log.
        () => ({ restorePointId, approvalId: r.pick([randomUUID(), 'approved', s]) }),
        () => ({ restorePointId: s, approvalId: randomUUID() }),
        () => ({ restorePointId: s, retainUntil: r.pick(['tomorrow', '2000-01-01T00:00:00Z', s]) }),
        () => ({ exportName: r.pick(['', 'x'.repeat(300), 'nope']) }),
        () => ({ vmId: s, mode: r.pick(['auto', 'incremental', 7]) }),
        () => ({ name: s, schedule: { kind: 'cron', cron: s }, retention: { keepLast: -1 } }),
        () => r.pick([[], 'string', 12, null, { __proto__: { polluted: true } }]),
      ])();
      cases.push({ label: `random ${i}: ${name} ${JSON.stringify(payload)?.slice(0, 160)}`, service, name, data: JSON.stringify(envelope(name, payload)) });
    }
    let refused = 0;
    for (const c of cases) {
      const reply = await send(c.service, c.name, c.data);
      // A random payload that is by chance valid for its command is not a refusal to count; the
      // fake scheduler would record it and the check below would fail, so none may be.
      expect(reply.accepted, c.label).toBe(false);
      expect(codes.has(reply.error!.code) || /^[a-z_]+$/.test(reply.error!.code), `${c.label}: ${reply.error!.code}`).toBe(true);
      expect(reply.error!.message.length, c.label).toBeGreaterThan(0);
      refused++;
    }
    expect(refused).toBe(cases.length);
    await nothingChanged(before.head, before.files);
    // The restore point is still there (no deletion without a real four-eyes approval).
    expect((await repo.listRestorePoints()).map((p) => p.id)).toContain(restorePointId);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });
});
