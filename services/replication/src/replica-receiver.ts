// The target side of replication at one site: serves `cairn.<site>.repl.<source>.<op>` for
// every source site, keeps one keyless copy repository per source site (a ReplicaTarget on
// `<replicasDir>/<source>`), and records ReplicaCommitted / ReplicaVerified / ReplicaRepaired
// / ReplicaExpired / ReplicaGarbageCollected in this site's log. It never holds a key: what it
// stores is what the source sealed. A replica the source expired is removed on `expire`, and a
// replica GC of that copy follows (keyless: the refs lists the source sent with each copy).
// Each copy is verified after a copy into it went quiet, and on a schedule (ReplicaVerified
// with its trigger; damage is a notice). Verify and GC of one copy never overlap.
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { assertSite, newEvent, type Actor } from '@cairn/contracts';
import { WrongExpectedRevisionError, type EventLog } from '@cairn/eventlog';
import { DirectoryBackend, ReplicaExpiredError, ReplicaIntegrityError, ReplicaTarget, type Backend, type ReplicaGcReport, type ReplicaVerifyReport, type SealedKind } from '@cairn/repository';
import type { EscrowEnvelope, EscrowKeyStatement } from '@cairn/nats-security';
import { H, makeHeaders, packIds, TransferError, unb64, unpackIds, type CommitMeta, type TransferOp } from './transfer-protocol.ts';

const KINDS: readonly SealedKind[] = ['chunk', 'index-page', 'manifest'];
const PARTS_TTL_MS = 10 * 60_000;

export interface ReceiverOptions {
  readonly nc: NatsConnection;
  readonly log: EventLog;
  readonly site: string;
  /** One copy repository per source site under this directory (unless `backendFor` is given). */
  readonly replicasDir: string;
  readonly backendFor?: (sourceSite: string) => Backend;
  readonly actor: Actor;
  readonly logger: Logger;
  /** Count every object stored, per source site and id, in `received` (tests; it grows with the copy). */
  readonly recordReceived?: boolean;
  /**
   * Source sites to serve (`cairn.<site>.repl.<peer>.*` each); default every site
   * (`cairn.<site>.repl.*.*`). Behind a secure hub they must be named: the hub forwards a
   * site's interest to a peer's leaf only within what that peer may send
   * (`cairn.<site>.repl.<peer>.>`), and a wildcard over the source is not within it.
   */
  readonly peers?: readonly string[];
  /** Replica GC after expiries: unreferenced objects younger than this stay (default 1 hour). */
  readonly gcGraceMs?: number;
  /** Wait after an expiry before the replica GC runs (default 5 s; more expiries in between join it). */
  readonly gcDelayMs?: number;
  /**
   * Key escrow (docs/sites.md, disaster recovery): this site's escrow key statement (from its hub
   * bundle), shown to sources, and where the sealed keys they send are kept (one file per source).
   */
  readonly escrow?: { readonly statement: EscrowKeyStatement; readonly dir: string };
  /** Wait after a commit before the copy is verified (default 5 s; it waits on while a copy is running). */
  readonly verifyAfterCopyMs?: number;
  /** Verify every copy held here this often (default 24 h; 0: never on a schedule). */
  readonly verifyEveryMs?: number;
  /** How long after a transfer call a copy counts as running (default 60 s): no sweep, no verify then. */
  readonly copyIdleMs?: number;
}

export class ReplicaReceiver {
  private subs: Subscription[] = [];
  private readonly targets = new Map<string, ReplicaTarget>();
  private readonly parts = new Map<string, { chunks: Uint8Array[]; at: number }>();
  /** Objects stored per source site and id, with `recordReceived` (tests prove nothing came twice). */
  readonly received = new Map<string, number>();
  /** Objects stored since start. */
  objectsReceived = 0;
  private inFlight = new Set<Promise<void>>();
  /** Replica GC runs due after expiries, per source site. */
  private readonly gcTimers = new Map<string, NodeJS.Timeout>();
  private readonly verifyTimers = new Map<string, NodeJS.Timeout>();
  private verifySchedule: NodeJS.Timeout | undefined;
  /** Verify and GC of one copy run one after the other (a sweep must not look like damage). */
  private readonly lanes = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly o: ReceiverOptions) {}

  start(): void {
    const sources = this.o.peers?.length ? this.o.peers.map((p) => assertSite(p)) : ['*'];
    this.subs = sources.map((source) => this.o.nc.subscribe(`cairn.${this.o.site}.repl.${source}.*`, {
      queue: 'replication',
      callback: (err, msg) => {
        if (err) { this.o.logger.warn({ err: err.message }, 'replication receiver subscription failed'); return; }
        const p = this.handle(msg).finally(() => this.inFlight.delete(p));
        this.inFlight.add(p);
      },
    }));
    const every = this.o.verifyEveryMs ?? 24 * 3600_000;
    if (every > 0) {
      this.verifySchedule = setInterval(() => { for (const source of this.targets.keys()) this.verifySoon(source, 0, 'schedule'); }, every);
      this.verifySchedule.unref();
    }
  }

  private lane<T>(sourceSite: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.lanes.get(sourceSite) ?? Promise.resolve()).catch(() => undefined).then(fn);
    this.lanes.set(sourceSite, run);
    return run;
  }

  /** A verify of `sourceSite`'s copy soon, once no copy into it is running. */
  private verifySoon(sourceSite: string, delayMs = this.o.verifyAfterCopyMs ?? 5_000, trigger: 'after-copy' | 'schedule' = 'after-copy'): void {
    if (this.closed || this.verifyTimers.has(sourceSite)) return;
    const timer = setTimeout(() => {
      this.verifyTimers.delete(sourceSite);
      const t = this.target(sourceSite);
      if (t.copyRunning) { this.verifySoon(sourceSite, Math.min(t.busyMs, 5_000), trigger); return; }
      const p: Promise<void> = this.verify(sourceSite, trigger).then(() => undefined, (err: Error) => { this.o.logger.warn({ sourceSite, err: err.message }, 'replica verify failed'); })
        .finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }, delayMs);
    timer.unref();
    this.verifyTimers.set(sourceSite, timer);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of [...this.gcTimers.values(), ...this.verifyTimers.values()]) clearTimeout(t);
    this.gcTimers.clear();
    this.verifyTimers.clear();
    clearInterval(this.verifySchedule);
    for (const sub of this.subs) sub.unsubscribe();
    await Promise.allSettled([...this.inFlight]);
  }

  /** The copy of `sourceSite`'s repository held here. */
  target(sourceSite: string): ReplicaTarget {
    assertSite(sourceSite);
    let t = this.targets.get(sourceSite);
    if (!t) {
      const backend = this.o.backendFor?.(sourceSite) ?? new DirectoryBackend(join(this.o.replicasDir, sourceSite), { createRoot: true });
      t = new ReplicaTarget(backend, undefined, this.o.copyIdleMs);
      this.targets.set(sourceSite, t);
    }
    return t;
  }

  /** Keyless verify of the copy of `sourceSite`'s repository, recorded as ReplicaVerified. */
  async verify(sourceSite: string, trigger: 'after-copy' | 'schedule' | 'manual' = 'manual'): Promise<ReplicaVerifyReport> {
    const t = this.target(sourceSite);
    const report = await this.lane(sourceSite, () => t.verify());
    const repositoryId = (await t.repositoryId()) ?? '';
    await this.o.log.append(`replicacheck-${sourceSite}`, [newEvent('ReplicaVerified', {
      sourceSite, repositoryId, trigger, ok: report.ok, objectsChecked: report.objectsChecked, bytesChecked: report.bytesChecked,
      damagedCount: report.damaged.length,
      damaged: report.damaged.slice(0, 100).map((d) => ({ kind: d.kind, id: d.id, damage: d.damage })),
    }, { site: this.o.site, actor: this.o.actor, streamId: `replicacheck-${sourceSite}` })], { expectedRevision: 'any' });
    if (!report.ok) this.o.logger.warn({ sourceSite, trigger, damaged: report.damaged.length, first: report.damaged[0] }, 'replica verify found damage');
    else this.o.logger.info({ sourceSite, trigger, objects: report.objectsChecked }, 'replica verified');
    return report;
  }

  /**
   * Replica GC of the copy of `sourceSite`'s repository (keyless; see ReplicaTarget.gc),
   * recorded as ReplicaGarbageCollected unless deferred by a running copy.
   */
  async gc(sourceSite: string, graceMs = this.o.gcGraceMs ?? 3600_000): Promise<ReplicaGcReport> {
    const t = this.target(sourceSite);
    const report = await this.lane(sourceSite, () => t.gc({ graceMs }));
    if (report.deferred) {
      this.o.logger.info({ sourceSite }, 'replica GC deferred: a copy is being received');
      return report;
    }
    const { deferred: _, ...data } = report;
    await this.o.log.append(`replicacheck-${sourceSite}`, [newEvent('ReplicaGarbageCollected', {
      sourceSite, repositoryId: (await t.repositoryId()) ?? '', ...data,
    }, { site: this.o.site, actor: this.o.actor, streamId: `replicacheck-${sourceSite}` })], { expectedRevision: 'any' });
    if (report.withoutRefs) this.o.logger.warn({ sourceSite, withoutRefs: report.withoutRefs }, 'replica GC swept nothing: replicas copied before refs lists existed make their objects unknown');
    else this.o.logger.info({ sourceSite, ...data }, 'replica GC done');
    return report;
  }

  /** A replica GC of `sourceSite`'s copy soon (after expiries); a deferred one tries again. */
  private gcSoon(sourceSite: string, delayMs = this.o.gcDelayMs ?? 5_000): void {
    if (this.closed || this.gcTimers.has(sourceSite)) return;
    const timer = setTimeout(() => {
      this.gcTimers.delete(sourceSite);
      const run = this.gc(sourceSite).then((r) => {
        if (r.deferred) this.gcSoon(sourceSite, this.target(sourceSite).busyMs);
      }, (err: Error) => this.o.logger.warn({ sourceSite, err: err.message }, 'replica GC failed'));
      const p = run.finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }, delayMs);
    timer.unref();
    this.gcTimers.set(sourceSite, timer);
  }

  /**
   * The source let a restore point go: remove its replica and record ReplicaExpired once (only
   * where a replica was committed here). Again after a crash, it records what is missing.
   */
  private async expire(source: string, restorePointId: string, reason: string): Promise<{ held: boolean }> {
    const t = this.target(source);
    if ((await t.repositoryId()) === undefined) return { held: false };
    const held = await t.expire(restorePointId);
    const streamId = `replica-${restorePointId}`;
    let committed = false;
    let expired = false;
    for await (const r of this.o.log.readStream(streamId)) {
      if (r.event.type === 'ReplicaCommitted' && r.event.data.sourceSite === source) committed = true;
      if (r.event.type === 'ReplicaExpired') expired = true;
    }
    if (committed && !expired) {
      await this.o.log.append(streamId, [newEvent('ReplicaExpired', { restorePointId, sourceSite: source, targetSite: this.o.site, reason },
        { site: this.o.site, actor: this.o.actor, streamId })], { expectedRevision: 'stream_exists' });
      this.o.logger.info({ source, restorePointId, reason }, 'replica expired');
    }
    if (held || committed) this.gcSoon(source);
    return { held };
  }

  private async handle(msg: Msg): Promise<void> {
    const [, , , source = '', op = ''] = msg.subject.split('.');
    try {
      const result = await this.dispatch(source, op as TransferOp, msg);
      const body = result instanceof Uint8Array ? result : new TextEncoder().encode(JSON.stringify(result ?? null));
      msg.respond(body, { headers: makeHeaders({ [H.status]: 'ok' }) });
    } catch (e) {
      const code = e instanceof TransferError ? e.code : e instanceof ReplicaIntegrityError ? 'integrity' : e instanceof ReplicaExpiredError ? 'expired' : 'internal';
      if (code !== 'incomplete') this.o.logger.warn({ source, op, code, err: (e as Error).message }, 'replication request refused');
      msg.respond(new TextEncoder().encode(JSON.stringify({ code, message: (e as Error).message })), { headers: makeHeaders({ [H.status]: 'error' }) });
    }
  }

  /** Objects go only into a copy that has the source's identity (config and keys) already. */
  private async requireAdopted(source: string, target: ReplicaTarget): Promise<void> {
    if ((await target.repositoryId()) === undefined) {
      throw new TransferError('not_adopted', `this site holds no copy of ${source}'s repository yet: adopt first`);
    }
  }

  private async dispatch(source: string, op: TransferOp, msg: Msg): Promise<unknown> {
    const target = this.target(source);
    if (op === 'missing' || op === 'put' || op === 'commit' || op === 'refs') await this.requireAdopted(source, target);
    const header = (name: string): string => {
      const v = msg.headers?.get(name);
      if (!v) throw new TransferError('bad_request', `header ${name} missing`);
      return v;
    };
    switch (op) {
      case 'adopt': {
        const x = msg.json<{ repositoryId: string; config: string; keys: Array<{ keyId: string; bytes: string }> }>();
        return target.adopt({ repositoryId: x.repositoryId, config: unb64(x.config), keys: x.keys.map((k) => ({ keyId: k.keyId, bytes: unb64(k.bytes) })) });
      }
      case 'missing': {
        const kind = header(H.kind) as SealedKind;
        if (!KINDS.includes(kind) || kind === 'manifest') throw new TransferError('bad_request', `kind ${kind}`);
        const lacking = await target.missing(unpackIds(msg.data).map((id) => ({ kind, id })));
        return packIds(lacking.map((r) => r.id));
      }
      case 'has-rp':
        return target.hasRestorePoint(msg.string());
      case 'put': {
        const kind = header(H.kind) as SealedKind;
        if (!KINDS.includes(kind)) throw new TransferError('bad_request', `kind ${kind}`);
        const id = header(H.id);
        const part = Number(header(H.part));
        const parts = Number(header(H.parts));
        const bytes = this.assemble(`${source}\0${kind}\0${id}`, msg.data, part, parts);
        if (!bytes) return null; // more parts to come
        const obj = { kind, id, bytes, sha256: header(H.sha256) };
        if (msg.headers?.get(H.repair) === '1') await target.repair(obj);
        else await target.put(obj);
        this.objectsReceived++;
        if (this.o.recordReceived) {
          const k = `${source}/${kind}/${id}`;
          this.received.set(k, (this.received.get(k) ?? 0) + 1);
        }
        return null;
      }
      case 'refs': {
        const id = header(H.id);
        const bytes = this.assemble(`${source}\0refs\0${id}`, msg.data, Number(header(H.part)), Number(header(H.parts)));
        if (!bytes) return null;
        await target.storeRefs(id, bytes, header(H.sha256));
        return null;
      }
      case 'expire': {
        const x = msg.json<{ restorePointId: string; reason: string }>();
        if (typeof x?.restorePointId !== 'string' || typeof x.reason !== 'string') throw new TransferError('bad_request', 'expire needs restorePointId and reason');
        return this.expire(source, x.restorePointId, x.reason.slice(0, 500));
      }
      case 'commit': {
        const x = msg.json<{ manifest: string; pageIds: string[]; meta: CommitMeta }>();
        const id = header(H.id);
        const created = await target.commit({ id, bytes: unb64(x.manifest), sha256: header(H.sha256) }, x.pageIds);
        await this.recordCommit(source, id, (await target.repositoryId()) ?? '', x.meta);
        this.verifySoon(source);
        this.o.logger.info({ source, restorePointId: id, created, bytesSent: x.meta.bytesSent, chunksSent: x.meta.chunksSent }, 'replica committed');
        return { created };
      }
      case 'verify': {
        const r = await this.verify(source);
        return { ...r, damaged: r.damaged.map((d) => ({ ...d })) };
      }
      case 'repaired': {
        const x = msg.json<{ objects: Array<{ kind: SealedKind; id: string; damage: string }> }>();
        await this.o.log.append(`replicacheck-${source}`, [newEvent('ReplicaRepaired', {
          sourceSite: source, repositoryId: (await target.repositoryId()) ?? '', repaired: x.objects.slice(0, 100), repairedCount: x.objects.length,
        }, { site: this.o.site, actor: this.o.actor, streamId: `replicacheck-${source}` })], { expectedRevision: 'any' });
        return null;
      }
      case 'escrow-key':
        if (!this.o.escrow) throw new TransferError('no_escrow', `site ${this.o.site} has no escrow key (its hub bundle predates key escrow, or it joined no hub)`);
        return this.o.escrow.statement;
      case 'escrow':
        return this.storeEscrow(source, msg.json<EscrowEnvelope>());
      default:
        throw new TransferError('bad_request', `unknown operation ${JSON.stringify(op)}`);
    }
  }

  /**
   * Keeps what `source` sealed for this site (never opened here until the source is declared
   * lost): one file per source, replaced by a newer wrapping (a rotation there), recorded as
   * KeyEscrowReceived when it changed.
   */
  private async storeEscrow(source: string, e: EscrowEnvelope): Promise<{ stored: boolean }> {
    const escrow = this.o.escrow;
    if (!escrow) throw new TransferError('no_escrow', `site ${this.o.site} has no escrow key`);
    const fields = ['repositoryId', 'recipient', 'wrappedAt', 'ephemeral', 'nonce', 'ciphertext', 'tag'] as const;
    if (e?.version !== 1 || !Array.isArray(e.keyIds) || fields.some((f) => typeof e[f] !== 'string' || e[f].length > 4096)) throw new TransferError('bad_request', 'not an escrow envelope');
    if (e.sourceSite !== source || e.targetSite !== this.o.site) throw new TransferError('bad_request', `an escrow from ${e.sourceSite} for ${e.targetSite} sent by ${source} to ${this.o.site}`);
    if (e.recipient !== escrow.statement.publicKey) throw new TransferError('wrong_recipient', `the escrow is sealed to another key than site ${this.o.site}'s escrow key`);
    const file = join(escrow.dir, `${source}.json`);
    const before = await readFile(file, 'utf8').then((t) => JSON.parse(t) as EscrowEnvelope, () => undefined);
    if (before && before.ciphertext === e.ciphertext) return { stored: false };
    await mkdir(escrow.dir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(e, null, 2) + '\n', { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file);
    await this.o.log.append(`replicacheck-${source}`, [newEvent('KeyEscrowReceived', {
      sourceSite: source, repositoryId: e.repositoryId, keyIds: [...e.keyIds], wrappedAt: e.wrappedAt, recipient: e.recipient,
    }, { site: this.o.site, actor: this.o.actor, streamId: `replicacheck-${source}` })], { expectedRevision: 'any' });
    this.o.logger.info({ source, repositoryId: e.repositoryId, keyIds: e.keyIds }, 'key escrow received');
    return { stored: true };
  }

  /** ReplicaCommitted once per restore point at this site, even when a commit is retried. */
  private async recordCommit(source: string, restorePointId: string, repositoryId: string, meta: CommitMeta): Promise<void> {
    const streamId = `replica-${restorePointId}`;
    try {
      await this.o.log.append(streamId, [newEvent('ReplicaCommitted', {
        restorePointId, vmId: meta.vmId, vmName: meta.vmName, jobId: meta.jobId, policyId: meta.policyId,
        sourceSite: source, targetSite: this.o.site, repositoryId, sourceCommittedAt: meta.sourceCommittedAt,
        disks: meta.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes })),
        chunksSent: meta.chunksSent, pagesSent: meta.pagesSent, bytesSent: meta.bytesSent,
      }, { site: this.o.site, actor: this.o.actor, streamId, correlationId: meta.jobId ?? streamId })], { expectedRevision: 'no_stream' });
    } catch (e) {
      if (!(e instanceof WrongExpectedRevisionError)) throw e; // recorded by an earlier attempt
    }
  }

  private assemble(key: string, data: Uint8Array, part: number, parts: number): Uint8Array | undefined {
    if (!(Number.isInteger(parts) && parts >= 1 && Number.isInteger(part) && part >= 0 && part < parts)) {
      throw new TransferError('bad_request', `part ${part} of ${parts}`);
    }
    if (parts === 1) return data;
    const now = Date.now();
    for (const [k, v] of this.parts) if (now - v.at > PARTS_TTL_MS) this.parts.delete(k);
    let entry = this.parts.get(key);
    if (part === 0) { entry = { chunks: [], at: now }; this.parts.set(key, entry); }
    if (!entry || entry.chunks.length !== part) {
      this.parts.delete(key);
      throw new TransferError('incomplete', `part ${part} of ${key.replaceAll('\0', ' ')} came without the parts before it; send the object again`);
    }
    entry.chunks.push(Uint8Array.from(data));
    entry.at = now;
    if (part < parts - 1) return undefined;
    this.parts.delete(key);
    return Buffer.concat(entry.chunks);
  }
}

