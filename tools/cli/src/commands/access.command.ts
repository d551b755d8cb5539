// Users, API tokens and four-eyes approvals: these go through the gateway's API with an API
// token (--token, CAIRN_API_TOKEN, or the bootstrap administrator's token `cairn up` keeps in
// <data>/secrets/api.token), so the gateway checks the caller's roles like any API call. On a
// secure site four-eyes requests and decisions, operator keys and the administrator role are
// also signed here with the caller's own operator key (--operator-key, CAIRN_OPERATOR_KEY, or
// the local operator's key of `cairn up`), which the gateway passes on but cannot make.
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import type { ApprovalAction, ApprovalDecision, EndorsedGrant, EndorsementValue, PersonSignatureValue, Policy, Role } from '@cairn/contracts';
import { collectPages, pagingChoice, pagingOptions, printPage, type Page, type PagingChoice } from '../paging.ts';
import { DEFAULT_DATA_DIR, globals, operatorKeyFor, output, readStackState, table } from '../session.ts';
import type { OperatorKey } from '../operator-key.ts';

const ROLES = ['administrator', 'operator', 'restore-operator', 'auditor'];

interface ApiOptions { gateway?: string; token?: string }

interface Api {
  json: boolean;
  call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>>;
  /** The caller's operator key (undefined: none to sign with). */
  key(): Promise<OperatorKey | undefined>;
}

/** The caller's signature of a four-eyes request or decision (none without an operator key). */
async function signApproval(a: Api, approvalId: string, decision: ApprovalDecision, action: ApprovalAction): Promise<PersonSignatureValue | undefined> {
  const key = await a.key();
  // Loaded here, not at every start of the CLI (docs/benchmarks.md "CLI start-up").
  const { approvalStatement, signStatement } = await import('@cairn/contracts');
  return key ? signStatement((issuedAt) => approvalStatement({ approvalId, decision, userId: key.userId, action, issuedAt }), key.signer) : undefined;
}

/** The caller's endorsement of a key or the administrator role for `userId`. */
async function endorsement(a: Api, userId: string, grant: EndorsedGrant): Promise<EndorsementValue | undefined> {
  const key = await a.key();
  const { endorse } = await import('@cairn/contracts');
  return key ? endorse(key.userId, userId, grant, key.signer) : undefined;
}

/**
 * The signed approval request sent along with a change that may need one (the gateway decides):
 * the action exactly as the gateway will build it from the same body.
 */
async function signedRequest(a: Api, action: ApprovalAction) {
  const approvalId = randomUUID();
  const signature = await signApproval(a, approvalId, 'request', action);
  return signature ? { approval: { approvalId, signature } } : {};
}

const waiting = (r: Record<string, unknown>) => (r.approvalId && r.status === 'pending'
  ? `waiting for another administrator (four-eyes): cairn approval approve ${String(r.approvalId)}`
  : undefined);

/**
 * At the hub with `--site <name>` (commands through the hub, issue 24): the four-eyes requests and
 * decisions go to that site's gateway as signed NATS commands (RequestApproval, DecideApproval)
 * over its leaf link; a pending request is read from the hub's copy of the site's log. Nothing
 * else of the site's API is reachable from the hub.
 */
function hubApi(cmd: Command, g: ReturnType<typeof globals>, state: Awaited<ReturnType<typeof readStackState>>): Api {
  const site = g.site!;
  // One connection per call, closed after it (the CLI then exits).
  const inSession = async <T>(fn: (s: import('../session.ts').Session) => Promise<T>): Promise<T> => (await import('../session.ts')).withSession(cmd, fn);
  const send = (name: 'RequestApproval' | 'DecideApproval', payload: Record<string, unknown>) => inSession(async (s) => {
    const { accepted } = await import('../cli-replies.ts');
    return accepted(await s.bus.send('gateway', name, payload as never, { timeoutMs: 120_000 }), `${name} at site ${site}`) as unknown as Record<string, unknown>;
  });
  const unsupported = (path: string): never => {
    throw new CliError(`${path} is not reachable through the hub: run it at site ${site}'s gateway`, EXIT.usage);
  };
  let key: Promise<OperatorKey | undefined> | undefined;
  return {
    json: Boolean(g.json),
    key() { key ??= operatorKeyFor(g, state); return key; },
    async call(method, path, body) {
      const b = (body ?? {}) as { approvalId?: string; signature?: unknown; reason?: string };
      const m = /^\/v1\/(restore-points|repositories|sites)\/([^/]+)\/(deletion|loss)$/.exec(path);
      if (method === 'POST' && m) {
        const id = decodeURIComponent(m[2]!);
        const action = m[1] === 'restore-points' ? { kind: 'delete-restore-point', restorePointId: id } : m[1] === 'repositories' ? { kind: 'delete-repository', repository: id } : { kind: 'declare-site-lost', site: id };
        if (!b.signature || !b.approvalId) throw new CliError('a four-eyes request through the hub must be signed', EXIT.usage, 'pass your operator key for that site (--operator-key <file> or CAIRN_OPERATOR_KEY)');
        return send('RequestApproval', { approvalId: b.approvalId, action, signature: b.signature, ...(b.reason ? { reason: b.reason } : {}) });
      }
      const d = /^\/v1\/approvals\/([^/]+)\/(approve|reject)$/.exec(path);
      if (method === 'POST' && d) {
        if (!b.signature) throw new CliError('a decision through the hub must be signed', EXIT.usage, 'pass your operator key for that site (--operator-key <file> or CAIRN_OPERATOR_KEY)');
        return send('DecideApproval', { approvalId: decodeURIComponent(d[1]!), decision: d[2], signature: b.signature, ...(b.reason ? { reason: b.reason } : {}) });
      }
      const r = /^\/v1\/approvals\/([^/?]+)$/.exec(path);
      if (method === 'GET' && r) {
        // The request as the site recorded it, from the hub's copy of its log.
        const { items } = await inSession((s) => s.catalogue.query('audit.timeline', { streamId: `approval-${decodeURIComponent(r[1]!)}`, limit: 100 }));
        const asked = items.find((e) => e.type === 'ApprovalRequested');
        if (!asked) throw new CliError(`no approval ${r[1]} of site ${site} at the hub (yet)`, EXIT.notFound);
        return asked.data as Record<string, unknown>;
      }
      return unsupported(path);
    },
  };
}

async function api(cmd: Command): Promise<Api> {
  const g = globals(cmd) as ReturnType<typeof globals> & ApiOptions;
  const dataDir = resolve(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR);
  const state = await readStackState(dataDir);
  if (state?.site === 'hub' && g.site && g.site !== 'hub' && !g.gateway) return hubApi(cmd, g, state);
  const base = g.gateway ?? process.env['CAIRN_GATEWAY_URL'] ?? state?.gatewayUrl;
  if (!base) throw new CliError('no gateway found', EXIT.unavailable, 'start Cairn with `npx cairn up`, or pass --gateway <url> / set CAIRN_GATEWAY_URL');
  const token = g.token ?? process.env['CAIRN_API_TOKEN']
    ?? await readFile(join(dataDir, 'secrets', 'api.token'), 'utf8').then((t) => t.trim(), () => undefined);
  if (!token) throw new CliError('no API token', EXIT.usage, 'pass --token <token>, set CAIRN_API_TOKEN, or run where `cairn up` keeps its data (--data)');
  let key: Promise<OperatorKey | undefined> | undefined;
  const self: Api = {
    json: Boolean(g.json),
    key() {
      // The person who signs is the key's user, whoever the API token is (`cairn up`'s token is
      // the gateway's bootstrap user; its operator key the local operator's).
      key ??= operatorKeyFor(g, state);
      return key;
    },
    async call(method, path, body) {
      let res: Response;
      try {
        res = await fetch(`${base.replace(/\/$/, '')}${path}`, {
          method,
          headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      } catch (e) {
        throw new CliError(`cannot reach the gateway at ${base}: ${(e as Error).message}`, EXIT.unavailable, 'is `cairn up` still running?');
      }
      const text = await res.text();
      const parsed = text ? JSON.parse(text) as Record<string, unknown> : {};
      if (res.ok) return parsed;
      const detail = typeof parsed.detail === 'string' ? parsed.detail : `the gateway answered HTTP ${res.status}`;
      // Refusals (401, 403) are exit 7 like every refusal; the problem's own code is kept for --json.
      const code = res.status === 401 || res.status === 403 ? EXIT.denied : res.status === 404 ? EXIT.notFound : res.status === 409 ? EXIT.conflict
        : res.status >= 500 ? EXIT.unavailable : res.status === 400 ? EXIT.usage : EXIT.failure;
      const hint = res.status === 401 ? 'the token is missing, wrong, revoked or expired'
        : parsed.code === 'four_eyes' ? 'another administrator must approve it (`cairn approval approve <id>` with their token)'
          : ['signature_required', 'bad_signature', 'endorsement_required'].includes(String(parsed.code)) ? 'sign with your own current operator key (--operator-key <file> or CAIRN_OPERATOR_KEY; docs/security.md, four-eyes)'
          : res.status === 403 ? 'your roles do not allow this (see `cairn whoami`)' : undefined;
      const reason = typeof parsed.code === 'string' ? parsed.code : res.status === 401 ? 'unauthenticated' : res.status === 403 ? 'forbidden' : undefined;
      throw new CliError(detail, code, hint, reason);
    },
  };
  return self;
}

function withApi<A extends unknown[]>(fn: (a: Api, ...args: A) => Promise<void>) {
  return async function (this: Command, ...args: A) {
    await fn(await api(this), ...args);
  };
}

const items = (r: Record<string, unknown>) => (r.items ?? []) as Array<Record<string, unknown>>;

type Row = Record<string, unknown>;

/** A list route of the API, page by page (`limit`, `after`, `next`), as --limit/--after/--all ask. */
async function listApi(a: Api, path: string, query: Record<string, string | undefined>, o: Record<string, unknown>): Promise<{ page: Page<Row>; choice: PagingChoice }> {
  const choice = pagingChoice(o);
  const page = await collectPages(async (p) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...query, limit: String(p.limit), after: p.after })) if (v !== undefined) params.set(k, v);
    const r = await a.call('GET', `${path}?${params}`);
    return { items: items(r), next: typeof r.next === 'string' ? r.next : null };
  }, choice);
  return { page, choice };
}

function addApiOptions(c: Command): Command {
  return c.option('--gateway <url>', 'gateway URL (default: from `cairn up` state or CAIRN_GATEWAY_URL)')
    .option('--token <token>', 'API token (default: CAIRN_API_TOKEN, else the bootstrap token of `cairn up`)');
}

const roleOption = () => new Option('--role <role...>', 'role(s): administrator, operator, restore-operator, auditor').choices(ROLES).makeOptionMandatory();

export function registerAccessCommands(program: Command): void {
  addApiOptions(program.command('whoami').description('who the API token is, and what its roles allow'))
    .action(withApi(async (a) => {
      const r = await a.call('GET', '/v1/whoami');
      const actor = r.actor as { id: string };
      output(a, r, () => `${actor.id}: ${(r.roles as string[]).join(', ')} (may ${(r.permissions as string[]).join(', ')})`);
    }));

  const user = addApiOptions(program.command('user').description('API users and their roles (administrators)'));
  user.command('add <userId>').description('create a user with roles').addOption(roleOption()).option('--name <displayName>', 'display name')
    .action(withApi(async (a, userId: string, o: { role: string[]; name?: string }) => {
      const body: Record<string, unknown> = { userId, roles: o.role, ...(o.name ? { displayName: o.name } : {}) };
      const en = o.role.includes('administrator') ? await endorsement(a, userId, { kind: 'administrator' }) : undefined;
      if (en) Object.assign(body, { endorsement: en }, await signedRequest(a, { kind: 'grant-administrator', userId, roles: o.role as Role[], ...(o.name ? { displayName: o.name } : {}), endorsement: en }));
      const r = await a.call('POST', '/v1/users', body);
      output(a, r, () => waiting(r) ?? `user ${userId} created (${o.role.join(', ')}); give them a token: cairn token create --user ${userId}`);
    }));
  pagingOptions(user.command('list').description('users and their roles, by user id'), 'users')
    .action(withApi(async (a, o: Record<string, unknown>) => {
      const { page, choice } = await listApi(a, '/v1/users', {}, o);
      printPage(a.json, page, choice, () => table(page.items.map((u) => ({ ...u, roles: (u.roles as string[]).join(',') })), ['userId', 'roles', 'disabled', 'createdAt', 'createdBy']));
    }));
  user.command('roles <userId>').description('replace a user\'s roles').addOption(roleOption())
    .action(withApi(async (a, userId: string, o: { role: string[] }) => {
      const body: Record<string, unknown> = { roles: o.role };
      const en = o.role.includes('administrator') ? await endorsement(a, userId, { kind: 'administrator' }) : undefined;
      if (en) Object.assign(body, { endorsement: en }, await signedRequest(a, { kind: 'grant-administrator', userId, roles: o.role as Role[], endorsement: en }));
      const r = await a.call('POST', `/v1/users/${encodeURIComponent(userId)}/roles`, body);
      output(a, r, () => waiting(r) ?? `user ${userId}: ${o.role.join(', ')}`);
    }));
  // Operator keys: the seed is made here and written only to --out (0600); the gateway records
  // the public half (UserKeyAdded). CLI commands over NATS are then signed with it.
  const key = user.command('key').description('operator keys: sign CLI commands sent over NATS (docs/security.md)');
  key.command('add <userId>').description('make an operator key for a user: the seed goes to --out (0600), the public key is recorded')
    .requiredOption('--out <file>', 'where to write the key (never overwritten); give it to the user: --operator-key <file> or CAIRN_OPERATOR_KEY')
    .option('--name <name>', 'what the key is for')
    .action(withApi(async (a, userId: string, o: { out: string; name?: string }) => {
      const g = globals(key);
      const state = await readStackState(resolve(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR));
      const out = resolve(o.out);
      const { createOperatorKey } = await import('../operator-key.ts');
      const k = await createOperatorKey(out, userId, g.site ?? process.env['CAIRN_SITE'] ?? state?.site).catch((e: NodeJS.ErrnoException) => {
        throw new CliError(e.code === 'EEXIST' ? `${out} exists: a key file is never overwritten` : `cannot write ${out}: ${e.message}`, EXIT.usage);
      });
      let r;
      try {
        const body: Record<string, unknown> = { publicKey: k.publicKey, ...(o.name ? { name: o.name } : {}) };
        const en = await endorsement(a, userId, { kind: 'key', publicKey: k.publicKey });
        if (en) Object.assign(body, { endorsement: en }, await signedRequest(a, { kind: 'add-operator-key', userId, publicKey: k.publicKey, ...(o.name ? { name: o.name } : {}), endorsement: en }));
        r = await a.call('POST', `/v1/users/${encodeURIComponent(userId)}/keys`, body);
      } catch (e) {
        await rm(out, { force: true });
        throw e;
      }
      const pending = waiting(r);
      output(a, { userId, publicKey: k.publicKey, file: out, user: r }, () => pending
        ? `key ${k.publicKey} for ${userId} is ${pending}; its seed is in ${out} (0600)`
        : `key ${k.publicKey} added for ${userId}; its seed is in ${out} (0600): cairn --operator-key ${out} …`);
    }));
  key.command('list <userId>').description('a user\'s current operator keys (public halves)')
    .action(withApi(async (a, userId: string) => {
      const { page } = await listApi(a, '/v1/users', {}, {});
      const u = (page.items as Array<{ userId: string; keys?: string[] }>).find((x) => x.userId === userId);
      if (!u) throw new CliError(`no user ${userId}`, EXIT.notFound);
      output(a, u.keys ?? [], () => (u.keys ?? []).join('\n') || '(none)');
    }));
  key.command('revoke <userId> <publicKey>').description('revoke an operator key: commands it signs are refused at once').option('--reason <text>')
    .action(withApi(async (a, userId: string, publicKey: string, o: { reason?: string }) => {
      output(a, await a.call('POST', `/v1/users/${encodeURIComponent(userId)}/keys/${encodeURIComponent(publicKey)}/revoke`, o.reason ? { reason: o.reason } : {}),
        () => `key ${publicKey} of ${userId} revoked`);
    }));
  user.command('disable <userId>').description('disable a user: all their tokens stop working at once').option('--reason <text>')
    .action(withApi(async (a, userId: string, o: { reason?: string }) => {
      output(a, await a.call('POST', `/v1/users/${encodeURIComponent(userId)}/disable`, o.reason ? { reason: o.reason } : {}), () => `user ${userId} disabled`);
    }));

  const token = addApiOptions(program.command('token').description('API tokens (administrators issue and revoke them)'));
  token.command('create').description('issue a token to a user; it is printed once and never stored')
    .requiredOption('--user <userId>', 'whose token').option('--name <name>', 'what it is for', 'cli')
    .option('--expires-in-days <n>', 'expire after N days (default never)')
    .action(withApi(async (a, o: { user: string; name: string; expiresInDays?: string }) => {
      const days = o.expiresInDays === undefined ? undefined : Number(o.expiresInDays);
      if (days !== undefined && !(Number.isInteger(days) && days > 0)) throw new CliError('--expires-in-days must be a positive whole number', EXIT.usage);
      const r = await a.call('POST', '/v1/tokens', { userId: o.user, name: o.name, ...(days ? { expiresInDays: days } : {}) });
      output(a, r, () => `token ${String(r.tokenId)} for ${o.user}${r.expiresAt ? ` (expires ${String(r.expiresAt)})` : ''}:\n${String(r.token)}\n(shown once: keep it now)`);
    }));
  pagingOptions(token.command('list').description('tokens (ids, owners, state; never the tokens), oldest first'), 'tokens').option('--user <userId>')
    .action(withApi(async (a, o: { user?: string } & Record<string, unknown>) => {
      const { page, choice } = await listApi(a, '/v1/tokens', { userId: o.user }, o);
      printPage(a.json, page, choice, () => table(page.items, ['tokenId', 'userId', 'name', 'issuedAt', 'expiresAt', 'revoked']));
    }));
  token.command('revoke <tokenId>').description('revoke a token: it stops working at once').option('--reason <text>')
    .action(withApi(async (a, tokenId: string, o: { reason?: string }) => {
      output(a, await a.call('POST', `/v1/tokens/${encodeURIComponent(tokenId)}/revoke`, o.reason ? { reason: o.reason } : {}), () => `token ${tokenId} revoked`);
    }));

  const approval = addApiOptions(program.command('approval').description('four-eyes requests: a second administrator approves destructive acts'));
  pagingOptions(approval.command('list').description('requests, newest first'), 'requests').option('--status <status>', 'pending, approved, rejected, done or failed')
    .action(withApi(async (a, o: { status?: string } & Record<string, unknown>) => {
      const { page, choice } = await listApi(a, '/v1/approvals', { status: o.status }, o);
      printPage(a.json, page, choice, () => table(page.items.map((x) => ({ ...x, action: describe(x.action) })), ['approvalId', 'action', 'status', 'requestedBy', 'approvedBy', 'requestedAt']));
    }));
  approval.command('show <approvalId>').description('one request')
    .action(withApi(async (a, id: string) => {
      const r = await a.call('GET', `/v1/approvals/${encodeURIComponent(id)}`);
      output(a, r, () => `${id}: ${describe(r.action)}, ${String(r.status)}, requested by ${String(r.requestedBy)}${r.approvedBy ? `, approved by ${String(r.approvedBy)}` : ''}${r.detail ? ` (${String(r.detail)})` : ''}`);
    }));
  approval.command('approve <approvalId>').description('approve another administrator\'s request; the act is carried out now')
    .action(withApi(async (a, id: string) => {
      const pending = await a.call('GET', `/v1/approvals/${encodeURIComponent(id)}`);
      const signature = await signApproval(a, id, 'grant', pending.action as ApprovalAction);
      const r = await a.call('POST', `/v1/approvals/${encodeURIComponent(id)}/approve`, signature ? { signature } : {});
      output(a, r, () => `approved: ${describe(r.action)} ${String(r.status)}`);
    }));
  approval.command('reject <approvalId>').description('reject (or withdraw your own) pending request').option('--reason <text>')
    .action(withApi(async (a, id: string, o: { reason?: string }) => {
      const pending = await a.call('GET', `/v1/approvals/${encodeURIComponent(id)}`);
      const signature = await signApproval(a, id, 'reject', pending.action as ApprovalAction);
      output(a, await a.call('POST', `/v1/approvals/${encodeURIComponent(id)}/reject`, { ...(o.reason ? { reason: o.reason } : {}), ...(signature ? { signature } : {}) }), () => `rejected ${id}`);
    }));

  registerPolicyRetention(program);
  registerPolicyImmutability(program);
  registerRepositoryDeletion(program);
  registerSiteLoss(program);

  // `cairn restore-point delete`: asks; a second administrator approves with `cairn approval approve`.
  const rp = program.commands.find((c) => c.name() === 'restore-point') ?? program.command('restore-point').description('restore points');
  addApiOptions(rp.command('delete <restorePoint>').description('ask for a restore point to be deleted (it is once a second administrator approves)'))
    .option('--reason <text>')
    .action(withApi(async (a, id: string, o: { reason?: string }) => {
      const approvalId = randomUUID();
      const signature = await signApproval(a, approvalId, 'request', { kind: 'delete-restore-point', restorePointId: id });
      const r = await a.call('POST', `/v1/restore-points/${encodeURIComponent(id)}/deletion`, { ...(o.reason ? { reason: o.reason } : {}), ...(signature ? { approvalId, signature } : {}) });
      output(a, r, () => `deletion of ${id} requested (approval ${String(r.approvalId)}); another administrator runs: cairn approval approve ${String(r.approvalId)}`);
    }));
}

const KEEP = ['last', 'daily', 'weekly', 'monthly', 'yearly'] as const;

function registerPolicyRetention(program: Command): void {
  const policy = program.commands.find((c) => c.name() === 'policy') ?? program.command('policy').description('protection policies');
  const cmd = addApiOptions(policy.command('retention <policyId>')
    .description('change a policy\'s retention; keeping fewer restore points waits for a second administrator (four-eyes)'));
  for (const k of KEEP) cmd.option(`--keep-${k} <n>`, `${k === 'last' ? 'latest' : k} restore points to keep (default: unchanged)`);
  cmd.action(withApi(async (a, policyId: string, o: Partial<Record<`keep${Capitalize<(typeof KEEP)[number]>}`, string>>) => {
    const current = await a.call('GET', `/v1/policies/${encodeURIComponent(policyId)}`);
    const retention = { ...(current.retention as Record<string, number>) };
    for (const k of KEEP) {
      const v = o[`keep${k[0]!.toUpperCase()}${k.slice(1)}` as keyof typeof o];
      if (v === undefined) continue;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new CliError(`--keep-${k} must be a whole number >= 0`, EXIT.usage);
      retention[k] = n;
    }
    const body = { ...policyBody(current), retention };
    const r = await a.call('POST', `/v1/policies/${encodeURIComponent(policyId)}`, { ...body, ...await signedPolicyRequest(a, policyId, current, body) });
    output(a, r, () => r.approvalId
      ? `retention of ${policyId} shortened: waiting for a second administrator (approval ${String(r.approvalId)}; cairn approval approve ${String(r.approvalId)})`
      : `policy ${policyId} updated`);
  }));
}

/**
 * The signed request for the approval a policy change needs, if it needs one (the same rule
 * the gateway applies: `policyChangeApproval`); the act is the whole new policy.
 */
async function signedPolicyRequest(a: Api, policyId: string, current: Record<string, unknown>, body: Record<string, unknown>) {
  const policy = { ...body, policyId } as unknown as Policy;
  const { policyChangeApproval } = await import('@cairn/contracts');
  const kind = policyChangeApproval(current as unknown as Policy, policy);
  return kind ? signedRequest(a, { kind, policyId, policy }) : {};
}

/** The updatable fields of a policy as the API returned it (immutability kept as it is). */
function policyBody(current: Record<string, unknown>) {
  return {
    name: current.name, selector: current.selector, schedule: current.schedule, retention: current.retention,
    repository: current.repository, keyRef: current.keyRef, priority: current.priority,
    ...(current.immutable !== undefined ? { immutable: current.immutable } : {}),
  };
}

function registerPolicyImmutability(program: Command): void {
  const policy = program.commands.find((c) => c.name() === 'policy') ?? program.command('policy').description('protection policies');
  addApiOptions(policy.command('immutable <policyId> <onOrOff>')
    .description('lock new restore points until the end of their retention (on), or stop doing so (off: waits for a second administrator; existing locks stay)'))
    .action(withApi(async (a, policyId: string, onOrOff: string) => {
      if (onOrOff !== 'on' && onOrOff !== 'off') throw new CliError('say on or off', EXIT.usage);
      const current = await a.call('GET', `/v1/policies/${encodeURIComponent(policyId)}`);
      const body = { ...policyBody(current), immutable: onOrOff === 'on' };
      const r = await a.call('POST', `/v1/policies/${encodeURIComponent(policyId)}`, { ...body, ...await signedPolicyRequest(a, policyId, current, body) });
      output(a, r, () => r.approvalId
        ? `immutability of ${policyId} off: waiting for a second administrator (approval ${String(r.approvalId)}; cairn approval approve ${String(r.approvalId)}); restore points already locked stay locked`
        : `policy ${policyId} updated: immutable ${onOrOff}`);
    }));
}

function registerRepositoryDeletion(program: Command): void {
  const repo = program.commands.find((c) => c.name() === 'repo') ?? program.command('repo').description('repositories');
  addApiOptions(repo.command('delete <repository>')
    .description('ask for a whole repository of the site (default: default) to be deleted; it is once a second administrator approves and no lock is live'))
    .option('--reason <text>')
    .action(withApi(async (a, name: string, o: { reason?: string }) => {
      const approvalId = randomUUID();
      const signature = await signApproval(a, approvalId, 'request', { kind: 'delete-repository', repository: name });
      const r = await a.call('POST', `/v1/repositories/${encodeURIComponent(name)}/deletion`, { ...(o.reason ? { reason: o.reason } : {}), ...(signature ? { approvalId, signature } : {}) });
      output(a, r, () => `deletion of repository ${name} requested (approval ${String(r.approvalId)}); another administrator runs: cairn approval approve ${String(r.approvalId)}`);
    }));
}

function registerSiteLoss(program: Command): void {
  const site = program.commands.find((c) => c.name() === 'site') ?? program.command('site');
  addApiOptions(site.command('declare-lost <site>')
    .description('disaster recovery: ask for another site to be declared lost here; once a second administrator approves, this site opens the repository key that site escrowed for it and restores its replicas'))
    .option('--reason <text>')
    .action(withApi(async (a, name: string, o: { reason?: string }) => {
      const approvalId = randomUUID();
      const signature = await signApproval(a, approvalId, 'request', { kind: 'declare-site-lost', site: name });
      const r = await a.call('POST', `/v1/sites/${encodeURIComponent(name)}/loss`, { ...(o.reason ? { reason: o.reason } : {}), ...(signature ? { approvalId, signature } : {}) });
      output(a, r, () => `site ${name} to be declared lost (approval ${String(r.approvalId)}); another administrator runs: cairn approval approve ${String(r.approvalId)}`);
    }));
}

function describe(action: unknown): string {
  const x = action as { kind: string; restorePointId?: string; policyId?: string; repository?: string; userId?: string; site?: string };
  return `${x.kind} ${x.restorePointId ?? x.policyId ?? x.repository ?? x.userId ?? x.site ?? ''}`.trim();
}
