// The source side's view of a target site's copy: a ReplicaSink whose calls are requests
// across the leaf connection. Counts every byte it sends (payload, headers, subject) and
// keeps to the policy's bandwidth limit.
import { errors as natsErrors, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { replicationSubject } from '@cairn/contracts';
import { encodeRefs, sha256Hex, TokenBucket, type ReplicaRefs, type ReplicaSink, type RepositoryIdentity, type SealedObject, type SealedRef, type ReplicaVerifyReport } from '@cairn/repository';
import { b64, H, headerBytes, makeHeaders, packIds, TransferError, unpackIds, type CommitMeta, type TransferOp } from './transfer-protocol.ts';
import { Refusal } from '@cairn/contracts';
import type { EscrowEnvelope, EscrowKeyStatement } from '@cairn/nats-security';

export interface RemoteSinkOptions {
  readonly timeoutMs?: number;
  /** Most bytes per second (unlimited when undefined). */
  readonly bandwidthBytesPerSec?: number;
  /** Largest message body; bigger objects go in parts (default: the server's max_payload less 8 KiB, at most 1 MiB). */
  readonly maxPart?: number;
}

export interface SinkStats {
  bytesSent: number;
  bytesReceived: number;
  requests: number;
}

/** The target site did not answer (cut off, down, or no receiver there). */
export class TargetUnavailableError extends Refusal {
  override readonly name: string = 'TargetUnavailableError';
  constructor(message: string, options?: ErrorOptions) {
    super('unavailable', message);
    if (options?.cause !== undefined) this.cause = options.cause;
  }
}

export class RemoteSink implements ReplicaSink {
  readonly stats: SinkStats = { bytesSent: 0, bytesReceived: 0, requests: 0 };
  private readonly bucket?: TokenBucket;
  private readonly maxPart: number;
  /** What the target records with ReplicaCommitted; set before `commit`. */
  commitMeta?: Omit<CommitMeta, 'bytesSent'>;
  /** Send puts as repairs (replace what is there). */
  repairing = false;

  constructor(private readonly nc: NatsConnection, readonly sourceSite: string, readonly targetSite: string, private readonly o: RemoteSinkOptions = {}) {
    if (o.bandwidthBytesPerSec) this.bucket = new TokenBucket(o.bandwidthBytesPerSec, Math.min(o.bandwidthBytesPerSec, 1024 * 1024), Date.now());
    const serverMax = nc.info?.max_payload ?? 1024 * 1024;
    this.maxPart = o.maxPart ?? Math.min(1024 * 1024, serverMax) - 8 * 1024;
  }

  private async request(op: TransferOp, body: Uint8Array, hdrs: Record<string, string> = {}, timeoutMs = this.o.timeoutMs ?? 30_000): Promise<Msg> {
    const subject = replicationSubject(this.targetSite, this.sourceSite, op);
    // Subject, reply inbox (~30), headers and body: what this request puts on the link.
    const size = body.length + (Object.keys(hdrs).length ? headerBytes(hdrs) : 0) + subject.length + 30;
    if (this.bucket) {
      const wait = this.bucket.reserve(size, Date.now());
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    this.stats.bytesSent += size;
    this.stats.requests++;
    let reply: Msg;
    try {
      reply = await this.nc.request(subject, body, { timeout: timeoutMs, ...(Object.keys(hdrs).length ? { headers: makeHeaders(hdrs) } : {}) });
    } catch (e) {
      if (e instanceof natsErrors.NoRespondersError || e instanceof natsErrors.TimeoutError || e instanceof natsErrors.RequestError) {
        throw new TargetUnavailableError(`site ${this.targetSite} does not answer ${op}: ${(e as Error).message}`, { cause: e });
      }
      throw e;
    }
    this.stats.bytesReceived += reply.data.length;
    if (reply.headers?.get(H.status) !== 'ok') {
      let err: { code?: string; message?: string } = {};
      try { err = reply.json(); } catch { /* not JSON */ }
      if (reply.headers?.get(H.status) === undefined || reply.headers?.code === 503) throw new TargetUnavailableError(`site ${this.targetSite}: no receiver for ${op}`);
      throw new TransferError(err.code ?? 'internal', `site ${this.targetSite} refused ${op}: ${err.message ?? '(no detail)'}`);
    }
    return reply;
  }

  private json<T>(op: TransferOp, value: unknown, hdrs: Record<string, string> = {}, timeoutMs?: number): Promise<T> {
    return this.request(op, new TextEncoder().encode(JSON.stringify(value)), hdrs, timeoutMs).then((m) => m.json<T>());
  }

  async adopt(identity: RepositoryIdentity): Promise<unknown> {
    return this.json('adopt', {
      repositoryId: identity.repositoryId, config: b64(identity.config), keys: identity.keys.map((k) => ({ keyId: k.keyId, bytes: b64(k.bytes) })),
    });
  }

  async missing(refs: readonly SealedRef[]): Promise<SealedRef[]> {
    const out: SealedRef[] = [];
    for (const kind of ['chunk', 'index-page'] as const) {
      const ids = refs.filter((r) => r.kind === kind).map((r) => r.id);
      if (!ids.length) continue;
      const reply = await this.request('missing', packIds(ids), { [H.kind]: kind });
      for (const id of unpackIds(reply.data)) out.push({ kind, id });
    }
    for (const r of refs) if (r.kind === 'manifest' && !(await this.hasRestorePoint(r.id))) out.push(r);
    return out;
  }

  async hasRestorePoint(id: string): Promise<boolean> {
    return (await this.request('has-rp', new TextEncoder().encode(id))).json<boolean>();
  }

  async put(obj: SealedObject): Promise<void> {
    const parts = Math.max(1, Math.ceil(obj.bytes.length / this.maxPart));
    for (let i = 0; i < parts; i++) {
      await this.request('put', obj.bytes.subarray(i * this.maxPart, (i + 1) * this.maxPart), {
        [H.kind]: obj.kind, [H.id]: obj.id, [H.sha256]: obj.sha256, [H.part]: String(i), [H.parts]: String(parts),
        ...(this.repairing ? { [H.repair]: '1' } : {}),
      });
    }
  }

  async commit(manifest: { readonly id: string; readonly bytes: Uint8Array; readonly sha256: string }, pageIds: readonly string[]): Promise<boolean> {
    if (!this.commitMeta) throw new Error('commitMeta must be set before commit');
    const hdrs = { [H.id]: manifest.id, [H.sha256]: manifest.sha256 };
    // The recorded figure includes this commit message itself (counted as request() counts it).
    const fixed = headerBytes(hdrs) + replicationSubject(this.targetSite, this.sourceSite, 'commit').length + 30;
    let body = { manifest: b64(manifest.bytes), pageIds, meta: { ...this.commitMeta, bytesSent: 0 } };
    for (let i = 0; i < 4; i++) {
      const total = this.stats.bytesSent + new TextEncoder().encode(JSON.stringify(body)).length + fixed;
      if (total === body.meta.bytesSent) break;
      body = { ...body, meta: { ...body.meta, bytesSent: total } };
    }
    return (await this.json<{ created: boolean }>('commit', body, hdrs)).created;
  }

  /** The ids the restore point references, before its commit (in parts like a large object). */
  async putRefs(restorePointId: string, refs: ReplicaRefs): Promise<void> {
    const bytes = encodeRefs(refs);
    const sha256 = sha256Hex(bytes);
    const parts = Math.max(1, Math.ceil(bytes.length / this.maxPart));
    for (let i = 0; i < parts; i++) {
      await this.request('refs', bytes.subarray(i * this.maxPart, (i + 1) * this.maxPart), {
        [H.id]: restorePointId, [H.sha256]: sha256, [H.part]: String(i), [H.parts]: String(parts),
      });
    }
  }

  /** Tells the target the source let the restore point go: it removes its replica. */
  expire(restorePointId: string, reason: string): Promise<{ held: boolean }> {
    return this.json('expire', { restorePointId, reason });
  }

  /** The target's escrow key statement (checked by the caller against the hub CA). */
  escrowKey(): Promise<EscrowKeyStatement> {
    return this.json('escrow-key', {});
  }

  /** Hands the target the source's key sealed for it. */
  escrow(envelope: EscrowEnvelope): Promise<{ stored: boolean }> {
    return this.json('escrow', envelope);
  }

  verify(): Promise<ReplicaVerifyReport> {
    return this.json('verify', {}, {}, 10 * 60_000);
  }

  async repaired(objects: ReadonlyArray<{ kind: string; id: string; damage: string }>): Promise<void> {
    await this.json('repaired', { objects });
  }
}
