// The hostile-input table of issue 22, replayed in CI against a secure `cairn up` (the embedded
// stack in this process: real nats-server with mutual TLS and one identity per service, real
// gateway, data mover, scheduler, catalogue and audit bridge; the CLI as its own process). Each
// row is an input, the refusal expected and what was observed, over REST (each role), NATS (each
// service identity and the operator's own key) and the CLI. It prints the table and the counts
// tried / refused / wrongly accepted, and wrongly accepted must be 0. Positive controls prove
// the refusals are not a stack that refuses everything. Forged identity events (issue 22's first
// probe) are rows too, through the provenance helpers; provenance.e2e.spec.ts checks every reader.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { CommandBus } from '@cairn/messaging';
import { bindCommandSecurity, signerFromSeed } from '@cairn/command-auth';
import { ALL_IDENTITIES, identityConnectOptions } from '@cairn/nats-security';
import { approvalStatement, endorse, newEvent, newStatementSigner, signStatement, type KnownEvent, type StatementSigner } from '@cairn/contracts';
import { startStack, type Stack } from '@cairn/cli';
import { cli } from './e2e-helpers.ts';
import { closeIdentityConnections, forgeEvent, type Forgery } from './provenance-helpers.ts';

interface Observed { readonly refused: boolean; readonly observed: string }
interface Row { readonly surface: 'REST' | 'NATS' | 'CLI'; readonly as: string; readonly input: string; readonly expected: string; readonly observed: string; readonly refused: boolean }

const h = useHarness();
let stack: Stack;
let dataDir: string;
let outside: string;
let restorePointId: string;
const tokens: Record<string, string> = {};
const rows: Row[] = [];
const ROLES = ['administrator', 'operator', 'restore-operator', 'auditor'] as const;

async function rest(token: string | undefined, method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${stack.gatewayUrl}${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: Record<string, unknown>;
  try { json = text ? JSON.parse(text) as Record<string, unknown> : {}; } catch { json = { text }; }
  return { status: res.status, body: json, headers: res.headers };
}

/** A REST answer counts as a refusal when it is a 4xx problem (never a 2xx, never a 5xx). */
function restRefusal(r: { status: number; body: Record<string, unknown> }, want?: number): Observed {
  const errors = JSON.stringify(r.body['errors'] ?? []);
  const ok = r.status >= 400 && r.status < 500 && (want === undefined || r.status === want) && !errors.includes('undefined');
  return { refused: ok, observed: `${r.status} ${String(r.body['code'] ?? r.body['title'] ?? '')}`.trim() };
}

/** Refused with this status and problem code. */
function codeRefusal(r: { status: number; body: Record<string, unknown> }, want: number, code: string): Observed {
  const o = restRefusal(r, want);
  return { refused: o.refused && r.body['code'] === code, observed: o.observed };
}

async function probe(surface: Row['surface'], as: string, input: string, expected: string, run: () => Promise<Observed>): Promise<void> {
  let o: Observed;
  try {
    o = await run();
  } catch (e) {
    o = { refused: false, observed: `probe threw: ${(e as Error).message.slice(0, 120)}` };
  }
  rows.push({ surface, as, input, expected, ...o });
}

const sha = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

beforeAll(async () => {
  dataDir = await h.tmpDir('cairn-e2e-hostile-');
  outside = await h.tmpDir('cairn-e2e-hostile-home-');
  stack = await startStack({ dataDir, secure: true, operator: { kind: 'user', id: 'local-op' }, restoreRoots: [] });
  h.onClose(() => stack.stop());
  const w = await stack.repository.writeRestorePoint({
    vm: { id: 'vm1', name: 'vm1' }, disks: [{ name: 'vda', sizeBytes: 65536, extents: [{ offset: 0, data: Buffer.alloc(65536, 7) }] }],
  });
  restorePointId = w.restorePointId;
  tokens['administrator'] = stack.gatewayToken;
  for (const role of ROLES.slice(1)) {
    const userId = `u-${role}`;
    expect((await rest(stack.gatewayToken, 'POST', '/v1/users', { userId, roles: [role] })).status).toBe(201);
    const t = await rest(stack.gatewayToken, 'POST', '/v1/tokens', { userId, name: `${role} token` });
    tokens[role] = t.body['token'] as string;
  }
  await mkdir(join(dataDir, 'restores'), { recursive: true });
  await symlink(join(dataDir, 'secrets'), join(dataDir, 'restores', 'to-secrets'));
  await symlink(dataDir, join(dataDir, 'restores', 'to-data'));
}, 180_000);

afterAll(async () => { await closeIdentityConnections(); await stack?.stop(); });

describe('hostile input across REST, NATS and the CLI (secure cairn up)', () => {
  it('a locked-out administrator gets back in with their own operator key, audited; no service or REST caller can', async () => {
    const head = await stack.log.headPosition();
    const r = await cli(['--data', dataDir, '--json', 'access', 'recover', '--reason', 'lost every token']);
    expect(r.code, r.stderr).toBe(0);
    const { token, userId } = JSON.parse(r.stdout) as { token: string; userId: string };
    expect(userId).toBe('local-op');
    expect((await rest(token, 'GET', '/v1/whoami')).body).toMatchObject({ actor: { id: 'local-op' }, roles: ['administrator'] });
    const events: KnownEvent[] = [];
    for await (const e of stack.log.readAll({ fromPosition: head })) events.push(e.event as KnownEvent);
    expect(events.find((e) => e.type === 'AccessRecovered')).toMatchObject({ actor: { kind: 'user', id: 'local-op' }, data: { userId: 'local-op', reason: 'lost every token' } });
    // A service identity (the gateway's own, which the REST API acts through) is refused, as it
    // would be acting for a person it authenticated, and so is the admin identity signing as itself.
    const security = stack.security!;
    for (const [identity, code] of [['gateway', 'forbidden'], ['admin', 'unauthenticated']] as const) {
      const nc = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(security.credentials(identity)) });
      h.onClose(() => nc.close());
      bindCommandSecurity(nc, { signer: signerFromSeed(await readFile(security.credentials(identity).seedFile, 'utf8')) });
      const bus = new CommandBus(nc, { site: stack.site, actor: { kind: 'service', id: `${identity}@${stack.site}` } });
      expect(await bus.send('gateway', 'RecoverAccess', { reason: 'x' }), identity).toMatchObject({ accepted: false, error: { code } });
      const forPerson = await bus.send('gateway', 'RecoverAccess', { reason: 'x' }, { actor: { kind: 'user', id: 'local-op' } });
      expect(forPerson.accepted, `${identity} acting for local-op`).toBe(false);
    }
    // There is no REST route for it.
    expect((await rest(stack.gatewayToken, 'POST', '/v1/access/recover', { reason: 'x' })).status).toBe(404);
  }, 120_000);

  it('refuses every probe of the table, changes nothing it protects, and says so in counts', async () => {
    const protectedFiles = [join(dataDir, 'stack.json'), join(dataDir, 'secrets', 'api.token'), join(dataDir, 'repository', 'config')];
    const before = await Promise.all(protectedFiles.map(sha));
    const target = (path: string, overwrite = true) => ({ restorePointId, disk: 'vda', target: { kind: 'file', path }, overwrite });
    const hostileTargets: [string, string][] = [
      ['<data>/repository/config', join(dataDir, 'repository', 'config')],
      ['<data>/secrets/api.token', join(dataDir, 'secrets', 'api.token')],
      ['<data>/stack.json', join(dataDir, 'stack.json')],
      ['<data>/x.raw', join(dataDir, 'x.raw')],
      ['<cwd>/x.raw (outside the roots)', join(process.cwd(), 'cairn-hostile-x.raw')],
      ['/tmp/x.raw (outside the roots)', join(outside, 'x.raw')],
      ['<data>/restores/to-secrets/api.token (symlink out)', join(dataDir, 'restores', 'to-secrets', 'api.token')],
      ['<data>/restores/to-data/stack.json (symlink out)', join(dataDir, 'restores', 'to-data', 'stack.json')],
      ['a 4 KB restore path', join(dataDir, 'restores', 'a'.repeat(4000))],
      ['a 4 KB path of short names', join(dataDir, 'restores', ...Array.from({ length: 400 }, () => 'abcdefghi'))],
      ['relative path', 'x.raw'],
      ['NUL byte', join(dataDir, 'restores', 'a\0b.raw')],
    ];

    // REST: every role tries every hostile restore target (overwrite on).
    for (const role of ROLES) {
      for (const [what, path] of hostileTargets) {
        await probe('REST', role, `POST /v1/restores → ${what}`, '4xx, nothing written', async () =>
          restRefusal(await rest(tokens[role], 'POST', '/v1/restores', target(path))));
      }
    }

    // REST: input rules and edges, as the administrator.
    const admin = tokens['administrator']!;
    const policy = (over: Record<string, unknown>) => ({
      name: 'p', selector: { names: ['vm1'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
      retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 1 }, repository: 'default', keyRef: 'default', priority: 1, ...over,
    });
    const restRows: [string, string, () => Promise<Observed>][] = [
      ['POST /v1/policies cron "* * * * * * *" (7 fields)', '400, errors named', async () => restRefusal(await rest(admin, 'POST', '/v1/policies', policy({ schedule: { cron: '* * * * * * *', timezone: 'UTC' } })), 400)],
      ['POST /v1/policies cron "* * * * *" (every minute)', '400 minimum interval', async () => restRefusal(await rest(admin, 'POST', '/v1/policies', policy({ schedule: { cron: '* * * * *', timezone: 'UTC' } })), 400)],
      ['POST /v1/policies cron "*/10 * * * * *"', '400 minimum interval', async () => restRefusal(await rest(admin, 'POST', '/v1/policies', policy({ schedule: { cron: '*/10 * * * * *', timezone: 'UTC' } })), 400)],
      ['POST /v1/policies name with U+202E (bidi override)', '400', async () => restRefusal(await rest(admin, 'POST', '/v1/policies', policy({ name: 'nightly\u202eexe.sh' })), 400)],
      ['POST /v1/policies name with ESC and newline', '400', async () => restRefusal(await rest(admin, 'POST', '/v1/policies', policy({ name: 'a\u001b[2J\nb' })), 400)],
      ['POST /v1/users displayName with a control character', '400', async () => restRefusal(await rest(admin, 'POST', '/v1/users', { userId: 'ctl', roles: ['auditor'], displayName: 'x\u0007' }), 400)],
      ['POST /v1/users/u-auditor/keys nkey with a bad checksum', '400', async () => restRefusal(await rest(admin, 'POST', '/v1/users/u-auditor/keys', { publicKey: `U${'A'.repeat(55)}` }), 400)],
      ['POST /v1/repositories/nowhere/deletion (unknown repository)', '404', async () => restRefusal(await rest(admin, 'POST', '/v1/repositories/nowhere/deletion', {}), 404)],
      ['POST /v1/restore-points/nope/deletion (unknown restore point)', '404', async () => restRefusal(await rest(admin, 'POST', '/v1/restore-points/nope/deletion', {}), 404)],
      ['GET /v1/whoami?access_token=<valid token> (no header)', '400 credential_in_url, token not echoed', async () => {
        const r = await rest(undefined, 'GET', `/v1/whoami?access_token=${admin}`);
        const o = restRefusal(r, 400);
        return JSON.stringify(r.body).includes(admin) ? { refused: false, observed: 'token echoed in the problem' } : o;
      }],
      ['GET /v1/vms?token=<valid token> with the header too', '400 credential_in_url', async () => restRefusal(await rest(admin, 'GET', `/v1/vms?token=${admin}`), 400)],
      ['POST /v1/restores target.path of 5000 characters', '400', async () => restRefusal(await rest(admin, 'POST', '/v1/restores', target(`/${'x'.repeat(5000)}`)), 400)],
      ['POST /v1/restores unknown restore point', '404', async () => restRefusal(await rest(admin, 'POST', '/v1/restores', { ...target(join(dataDir, 'restores', 'nope.raw')), restorePointId: 'nope' }), 404)],
    ];
    for (const [input, expected, run] of restRows) await probe('REST', 'administrator', input, expected, run);

    // REST: four-eyes on a secure site needs the people's own signatures and endorsements
    // (docs/security.md, four-eyes that no single identity completes): an administrator's token
    // alone, a key of nobody, a signature of another act or a stale one make nothing.
    const root = stack.operator!.signer as StatementSigner;
    const stranger = newStatementSigner();
    // The repository's deletion (the restore point here is in the repository, not the catalogue).
    const deletion = (signer: StatementSigner, userId: string, repository = 'default', at = new Date()) => {
      const approvalId = randomUUID();
      const signature = signStatement((issuedAt) => approvalStatement({ approvalId, decision: 'request', userId, action: { kind: 'delete-repository', repository }, issuedAt }), signer, at);
      return { approvalId, signature };
    };
    const path = '/v1/repositories/default/deletion';
    const fourEyesRows: [string, string, () => Promise<Observed>][] = [
      ['POST /v1/repositories/default/deletion unsigned (token only)', '403 signature_required', async () => codeRefusal(await rest(admin, 'POST', path, {}), 403, 'signature_required')],
      ['POST /v1/repositories/default/deletion signed by a key of no user', '403 bad_signature', async () => codeRefusal(await rest(admin, 'POST', path, deletion(stranger, 'local-op')), 403, 'bad_signature')],
      ['POST /v1/repositories/default/deletion signed by the operator for another repository', '403 bad_signature', async () => codeRefusal(await rest(admin, 'POST', path, deletion(root, 'local-op', 'other')), 403, 'bad_signature')],
      ['POST /v1/repositories/default/deletion signed 10 min ago (stale)', '403 bad_signature', async () => codeRefusal(await rest(admin, 'POST', path, deletion(root, 'local-op', 'default', new Date(Date.now() - 600_000))), 403, 'bad_signature')],
      ['POST /v1/approvals/<unknown>/approve', '404', async () => restRefusal(await rest(admin, 'POST', `/v1/approvals/${randomUUID()}/approve`), 404)],
      ['POST /v1/approvals grant-administrator (only through /v1/users)', '422', async () => restRefusal(await rest(admin, 'POST', '/v1/approvals', { action: { kind: 'grant-administrator', userId: 'eve', roles: ['administrator'], endorsement: endorse('local-op', 'eve', { kind: 'administrator' }, root) } }), 422)],
      ['POST /v1/users administrator without an endorsement', '403 endorsement_required', async () => codeRefusal(await rest(admin, 'POST', '/v1/users', { userId: 'eve', roles: ['administrator'] }), 403, 'endorsement_required')],
      ['POST /v1/users administrator endorsed by a key of no administrator', '403 endorsement_required', async () => codeRefusal(await rest(admin, 'POST', '/v1/users', { userId: 'eve', roles: ['administrator'], endorsement: endorse('local-op', 'eve', { kind: 'administrator' }, stranger) }), 403, 'endorsement_required')],
      ['POST /v1/users/u-auditor/keys without an endorsement', '403 endorsement_required', async () => codeRefusal(await rest(admin, 'POST', '/v1/users/u-auditor/keys', { publicKey: stranger.publicKey }), 403, 'endorsement_required')],
    ];
    for (const [input, expected, run] of fourEyesRows) await probe('REST', 'administrator', input, expected, run);

    // NATS: each identity of the site (and the operator's own key) sends hostile commands.
    const security = stack.security!;
    for (const identity of ALL_IDENTITIES) {
      const nc: NatsConnection = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(security.credentials(identity)) });
      h.onClose(() => nc.close());
      bindCommandSecurity(nc, { signer: signerFromSeed(await readFile(security.credentials(identity).seedFile, 'utf8')) });
      const bus = new CommandBus(nc, { site: stack.site, actor: { kind: 'service', id: `${identity}@${stack.site}` }, defaultTimeoutMs: 15_000 });
      const viaNats = async (service: string, name: string, payload: unknown): Promise<Observed> => {
        try {
          const r = await bus.send(service as never, name as never, payload as never);
          return r.accepted ? { refused: false, observed: 'accepted' } : { refused: true, observed: r.error.code };
        } catch (e) {
          return { refused: true, observed: (e as Error).name };
        }
      };
      for (const [what, path] of hostileTargets.slice(0, 8)) {
        await probe('NATS', identity, `RestoreDisk → ${what}`, 'forbidden or no permission', () => viaNats('data-mover', 'RestoreDisk', target(path)));
      }
      await probe('NATS', identity, 'CreatePolicy cron with 7 fields', 'invalid or no permission', () => viaNats('scheduler', 'CreatePolicy', policy({ schedule: { cron: '* * * * * * *', timezone: 'UTC' } })));
      await probe('NATS', identity, 'CreatePolicy every minute', 'invalid or no permission', () => viaNats('scheduler', 'CreatePolicy', policy({ schedule: { cron: '* * * * *', timezone: 'UTC' } })));
    }
    // The operator's own signed key (what the local CLI sends): outside the roots is its right, the protected places are not.
    const own = new CommandBus(stack.nc, { site: stack.site, actor: stack.operator!.actor, defaultTimeoutMs: 15_000 });
    for (const [what, path] of hostileTargets.slice(0, 4).concat(hostileTargets.slice(6, 8))) {
      await probe('NATS', 'local-op (own key)', `RestoreDisk → ${what}`, 'forbidden', async () => {
        const r = await own.send('data-mover', 'RestoreDisk', target(path) as never);
        return r.accepted ? { refused: false, observed: 'accepted' } : { refused: true, observed: r.error.code };
      });
    }

    // CLI (its own process, signing with the operator key cairn up made).
    const d = ['--data', dataDir];
    const cliRows: [string, string[]][] = [
      ['restore --to <data>/stack.json --force', [...d, 'restore', restorePointId, '--disk', 'vda', '--to', join(dataDir, 'stack.json'), '--force']],
      ['restore --to <data>/secrets/api.token --force', [...d, 'restore', restorePointId, '--disk', 'vda', '--to', join(dataDir, 'secrets', 'api.token'), '--force']],
      ['restore --to <data>/restores/to-data/x.raw (symlink into the data dir)', [...d, 'restore', restorePointId, '--disk', 'vda', '--to', join(dataDir, 'restores', 'to-data', 'x.raw')]],
      ['policy create --cron "* * * * * * *"', [...d, 'policy', 'create', '--name', 'seven', '--vm', 'vm1', '--cron', '* * * * * * *', '--timezone', 'UTC']],
      ['policy create --cron "* * * * *"', [...d, 'policy', 'create', '--name', 'often', '--vm', 'vm1', '--cron', '* * * * *', '--timezone', 'UTC']],
      ['policy create --name "a\\u202eb"', [...d, 'policy', 'create', '--name', 'a\u202eb', '--vm', 'vm1', '--cron', '0 2 * * *', '--timezone', 'UTC']],
    ];
    for (const [input, args] of cliRows) {
      await probe('CLI', 'local-op', input, 'non-zero exit, nothing changed', async () => {
        const r = await cli(args);
        return { refused: r.code !== 0, observed: `exit ${r.code}: ${r.stderr.split('\n')[0]!.slice(0, 90)}` };
      });
    }

    // Positive controls: the same paths that refuse the hostile inputs let the legitimate ones through.
    const mine = join(outside, 'mine.raw');
    const ownRestore = await cli([...d, '--json', 'restore', restorePointId, '--disk', 'vda', '--to', mine]);
    expect(ownRestore.code, ownRestore.stderr).toBe(0);
    expect((await stat(mine)).mode & 0o077, 'restored file not world- or group-readable').toBe(0);
    const byRita = await rest(tokens['restore-operator'], 'POST', '/v1/restores', target(join(dataDir, 'restores', 'rita.raw'), false));
    expect(byRita.status, JSON.stringify(byRita.body)).toBe(200);
    expect((await stat(join(dataDir, 'restores', 'rita.raw'))).mode & 0o077).toBe(0);
    expect((await rest(admin, 'POST', '/v1/policies', policy({ name: 'nightly' }))).status).toBe(201);

    // Accounts: disable the local operator (allowed: admin remains), then the last administrator cannot go.
    expect((await rest(admin, 'POST', '/v1/users/local-op/disable', {})).status).toBe(200);
    await probe('REST', 'administrator', 'POST /v1/users/admin/disable (last enabled administrator)', '409 last_administrator', async () =>
      restRefusal(await rest(admin, 'POST', '/v1/users/admin/disable', {}), 409));
    await probe('REST', 'administrator', 'POST /v1/users/admin/roles → operator (last administrator)', '409 last_administrator', async () =>
      restRefusal(await rest(admin, 'POST', '/v1/users/admin/roles', { roles: ['operator'] }), 409));

    // Security headers on every kind of answer (public, authenticated, problem).
    for (const [input, token, path] of [['GET /health', undefined, '/health'], ['GET /v1/whoami', admin, '/v1/whoami'], ['GET /v1/nope (404)', admin, '/v1/nope'], ['GET /v1/vms without a token (401)', undefined, '/v1/vms']] as const) {
      await probe('REST', token ? 'administrator' : 'anonymous', `${input}: security headers`, 'nosniff, no-store, CSP frame-ancestors none', async () => {
        const r = await rest(token, 'GET', path);
        const csp = r.headers.get('content-security-policy') ?? '';
        const ok = r.headers.get('x-content-type-options') === 'nosniff' && r.headers.get('cache-control') === 'no-store' && /frame-ancestors 'none'/.test(csp) && /script-src 'self'/.test(csp);
        return { refused: ok, observed: ok ? 'headers present' : `got nosniff=${r.headers.get('x-content-type-options')} cache=${r.headers.get('cache-control')} csp=${csp}`.slice(0, 160) };
      });
    }

    // Forged identity events (issue 22, probe 1): with each identity's own NATS credentials and
    // nkey, mint an administrator and a token for it (signed as itself, unsigned, or claiming the
    // gateway); the token must not get in. The gateway writes these events itself: its row is its own.
    // These failed sign-ins count towards throttling, so they come last but one.
    const head = await stack.log.headPosition();
    for (const identity of ALL_IDENTITIES.filter((i) => i !== 'gateway')) {
      for (const how of ['signed', 'unsigned', 'signed-as-other'] as Forgery[]) {
        await probe('NATS', identity, `forge UserCreated(administrator) + TokenIssued (${how}), then GET /v1/whoami with it`, 'refused by NATS or readers: 401/429', async () => {
          const userId = `mallory-${identity}-${how}`;
          const token = `cairn_forged-${identity}-${how}-0000000000000000000000`;
          const sha = createHash('sha256').update(token).digest('hex');
          const by = { site: stack.site, actor: { kind: 'user' as const, id: 'admin' } };
          const outcomes = [
            await forgeEvent({ stack: stack as never, identity, how, event: newEvent('UserCreated', { userId, roles: ['administrator'] }, { ...by, streamId: `user-${userId}` }) }),
            await forgeEvent({ stack: stack as never, identity, how, event: newEvent('TokenIssued', { tokenId: sha.slice(0, 24), userId, name: 'forged', tokenSha256: sha, expiresAt: null }, { ...by, streamId: `token-${sha.slice(0, 24)}` }) }),
          ];
          const r = await rest(token, 'GET', '/v1/whoami');
          const stored = outcomes.filter((o) => o.refusedBy === undefined).length;
          return { refused: r.status === 401 || r.status === 429, observed: `${2 - stored} refused by NATS, ${stored} stored; whoami ${r.status}` };
        });
      }
    }

    // Last (it blocks this address for a minute): 300 bad tokens in a burst are throttled and reported in a few events.
    await probe('REST', 'anonymous', '300 bad bearer tokens in a burst (after the forged ones)', '429 (after 10 failures a minute), ≤ 4 AuthFailed events', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 300; i++) statuses.push((await rest(`cairn_bad-token-${i}-0000000000000000000000000000`, 'GET', '/v1/vms')).status);
      const events: KnownEvent[] = [];
      for await (const r of stack.log.readAll({ fromPosition: head })) events.push(r.event as KnownEvent);
      const authFailed = events.filter((e) => e.type === 'AuthFailed');
      const throttled = statuses.filter((s) => s === 429).length;
      const ok = statuses.every((s) => s === 401 || s === 429) && throttled >= 290 && authFailed.length >= 1 && authFailed.length <= 4;
      return { refused: ok, observed: `${statuses.filter((s) => s === 401).length}×401, ${throttled}×429, ${authFailed.length} AuthFailed` };
    });

    // Nothing protected changed; no token reached the log file.
    expect(await Promise.all(protectedFiles.map(sha))).toEqual(before);
    const logText = await readFile(stack.logFile, 'utf8');
    expect(logText.includes(admin), 'an API token was written to the log').toBe(false);

    const width = (k: keyof Row, max: number) => Math.min(max, Math.max(...rows.map((r) => String(r[k]).length)));
    const pad = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n));
    const cols: [keyof Row, number][] = [['surface', 5], ['as', width('as', 22)], ['input', width('input', 70)], ['expected', width('expected', 36)], ['observed', width('observed', 60)]];
    const lines = rows.map((r) => `${r.refused ? 'refused ' : 'ACCEPTED'} ${cols.map(([k, n]) => pad(String(r[k]), n)).join(' | ')}`);
    const wrong = rows.filter((r) => !r.refused);
    console.log(`hostile-input table\n${lines.join('\n')}\nhostile input: ${rows.length} tried, ${rows.length - wrong.length} refused, ${wrong.length} wrongly accepted`);
    expect(wrong.map((r) => `${r.surface} ${r.as}: ${r.input} → ${r.observed}`)).toEqual([]);
    expect(rows.length).toBeGreaterThan(150);
  }, 900_000);
});
