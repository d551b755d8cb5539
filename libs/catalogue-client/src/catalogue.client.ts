// A typed client for the catalogue's queries, used by the gateway and the CLI. It needs only
// NATS request/reply (the role interface below), so callers pass their own connection.
import type { Msg, MsgHdrs, RequestManyOptions, RequestOptions } from '@nats-io/transport-node';
import { Value } from '@sinclair/typebox/value';
import {
  QUERY_SCHEMAS, QueryReply, REPLICA_HEADER, catalogueQuerySubject,
  type QueryErrorCode, type QueryName, type QueryRequest, type QueryResult,
} from './catalogue.queries.ts';
import type { RebuildResult } from './catalogue.views.ts';

/** What the client needs from a NATS connection. */
export interface QueryTransport {
  request(subject: string, payload?: Uint8Array | string, opts?: RequestOptions): Promise<Msg>;
  requestMany(subject: string, payload?: Uint8Array | string, opts?: Partial<RequestManyOptions>): Promise<AsyncIterable<Msg>>;
}

export class CatalogueQueryError extends Error {
  override readonly name = 'CatalogueQueryError';
  constructor(readonly code: QueryErrorCode, message: string, readonly query: string) {
    super(message);
  }
}

export interface CatalogueClientOptions {
  site: string;
  /** Per-query timeout (default 5 s). */
  timeoutMs?: number;
}

export interface Answer<T> {
  result: T;
  /** The replica that answered. */
  replica: string | undefined;
}

const encoder = new TextEncoder();

export class CatalogueClient {
  private readonly site: string;
  private readonly timeoutMs: number;

  constructor(private readonly nc: QueryTransport, options: CatalogueClientOptions) {
    this.site = options.site;
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  /** Sends one query and returns its result; throws CatalogueQueryError on any refusal. */
  async query<Q extends QueryName>(name: Q, request: QueryRequest<Q>): Promise<QueryResult<Q>> {
    return (await this.ask(name, request)).result;
  }

  /** Like `query`, with the replica that answered. */
  async ask<Q extends QueryName>(name: Q, request: QueryRequest<Q>): Promise<Answer<QueryResult<Q>>> {
    checkRequest(name, request);
    let msg: Msg;
    try {
      msg = await this.nc.request(catalogueQuerySubject(this.site, name), encoder.encode(JSON.stringify(request)), { timeout: this.timeoutMs });
    } catch (e) {
      throw unavailable(name, e);
    }
    return { result: decodeReply(name, msg) as QueryResult<Q>, replica: replicaOf(msg.headers) };
  }

  listVms() { return this.query('vm.list', {}).then((r) => r.items); }
  getVm(vmId: string) { return this.query('vm.get', { vmId }); }
  listRestorePoints(request: QueryRequest<'restorePoint.list'> = {}) { return this.query('restorePoint.list', request).then((r) => r.items); }
  getRestorePoint(restorePointId: string) { return this.query('restorePoint.get', { restorePointId }); }
  listJobs(request: QueryRequest<'job.list'> = {}) { return this.query('job.list', request).then((r) => r.items); }
  getJob(jobId: string) { return this.query('job.get', { jobId }); }
  listPolicies(request: QueryRequest<'policy.list'> = {}) { return this.query('policy.list', request).then((r) => r.items); }
  getPolicy(policyId: string) { return this.query('policy.get', { policyId }); }
  auditTimeline(request: QueryRequest<'audit.timeline'> = {}) { return this.query('audit.timeline', request).then((r) => r.items); }
  status() { return this.query('catalogue.status', {}); }

  /**
   * Asks every replica to drop its read models and replay the log from position 0. Resolves
   * with one result per replica that answered: `replicas` of them when given, otherwise all
   * that answer before `timeoutMs` (default 5 min) or a quiet second after the last answer.
   */
  async rebuild(options: { replicas?: number; timeoutMs?: number } = {}): Promise<RebuildResult[]> {
    const maxWait = options.timeoutMs ?? 300_000;
    const opts: Partial<RequestManyOptions> = options.replicas
      ? { strategy: 'count', maxMessages: options.replicas, maxWait }
      : { strategy: 'stall', stall: 1_000, maxWait };
    let replies: AsyncIterable<Msg>;
    try {
      replies = await this.nc.requestMany(catalogueQuerySubject(this.site, 'catalogue.rebuild'), encoder.encode('{}'), opts);
    } catch (e) {
      throw unavailable('catalogue.rebuild', e);
    }
    const results: RebuildResult[] = [];
    try {
      for await (const msg of replies) {
        // The stall strategy ends the iterator with an empty message on some versions.
        if (msg.data.length === 0) break;
        results.push(decodeReply('catalogue.rebuild', msg) as RebuildResult);
      }
    } catch (e) {
      if (results.length === 0) throw unavailable('catalogue.rebuild', e);
    }
    if (results.length === 0) throw new CatalogueQueryError('unavailable', 'no catalogue replica answered the rebuild request', 'catalogue.rebuild');
    return results;
  }
}

function checkRequest(name: QueryName, request: unknown): void {
  const schema = QUERY_SCHEMAS[name].request;
  if (!Value.Check(schema, request)) {
    const first = Value.Errors(schema, request).First();
    throw new CatalogueQueryError('bad_request', `${name}: ${first ? `${first.path || '(request)'} ${first.message}` : 'invalid request'}`, name);
  }
}

function decodeReply(name: string, msg: Msg): unknown {
  let reply: unknown;
  try {
    reply = msg.json();
  } catch {
    throw new CatalogueQueryError('internal', `${name}: reply is not JSON`, name);
  }
  if (!Value.Check(QueryReply, reply)) throw new CatalogueQueryError('internal', `${name}: malformed reply`, name);
  if (!reply.ok) throw new CatalogueQueryError(reply.error.code, reply.error.message, name);
  return reply.result;
}

function replicaOf(headers: MsgHdrs | undefined): string | undefined {
  return headers?.get(REPLICA_HEADER) || undefined;
}

function unavailable(name: string, cause: unknown): CatalogueQueryError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new CatalogueQueryError('unavailable', `${name}: no catalogue answered (${why}); is the catalogue running for this site?`, name);
}
