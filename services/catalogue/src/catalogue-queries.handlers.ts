// Answers each catalogue query: checks the request against its schema, reads the read model,
// and turns every outcome into a reply (`ok` with the result, or an error code) — never throws.
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import {
  QUERY_SCHEMAS, isQueryName,
  type CatalogueStatus, type QueryName, type QueryReply, type QueryRequest, type QueryResult, type RebuildResult,
} from '@cairn/catalogue-client';
import { CatalogueReadModel, CursorError, NotFoundError } from './catalogue.read-model.ts';

/** What the handlers need besides the read model. */
export interface CatalogueControl {
  status(): Promise<CatalogueStatus>;
  rebuild(): Promise<RebuildResult>;
  /**
   * Resolves once the read models include every event the log held when it was called (or
   * rejects after a bound). A `*.get` miss waits for it and reads once more, so a thing written
   * just before the query (a policy created, then edited at once) is never answered not_found
   * because the projection had not applied it yet.
   */
  caughtUp?(): Promise<void>;
}

type Handlers = { [Q in QueryName]: (request: QueryRequest<Q>) => QueryResult<Q> | Promise<QueryResult<Q>> };

const checks = new Map<QueryName, TypeCheck<TSchema>>(
  (Object.keys(QUERY_SCHEMAS) as QueryName[]).map((name) => [name, TypeCompiler.Compile(QUERY_SCHEMAS[name].request)]),
);

export class CatalogueQueryHandlers {
  private readonly handlers: Handlers;

  constructor(read: CatalogueReadModel, private readonly control: CatalogueControl) {
    this.handlers = {
      'vm.list': (q) => read.vmPage(q),
      'vm.get': (q) => read.getVm(q.vmId),
      'restorePoint.list': (q) => read.restorePointPage(q),
      'restorePoint.get': (q) => read.getRestorePoint(q.restorePointId),
      'testRestore.list': (q) => read.testRestorePage(q),
      'job.list': (q) => read.jobPage(q),
      'job.get': (q) => read.getJob(q.jobId),
      'policy.list': (q) => read.policyPage(q),
      'policy.get': (q) => read.getPolicy(q.policyId),
      'audit.timeline': (q) => read.auditPage(q),
      'replica.list': (q) => read.replicaPage(q),
      'replicationPolicy.list': (q) => read.replicationPolicyPage(q),
      'catalogue.stats': () => read.stats(),
      'catalogue.status': () => control.status(),
      'catalogue.rebuild': () => control.rebuild(),
    };
  }

  async handle(name: string, request: unknown): Promise<QueryReply> {
    if (!isQueryName(name)) return { ok: false, error: { code: 'bad_request', message: `unknown query ${JSON.stringify(name)}` } };
    const check = checks.get(name)!;
    if (!check.Check(request)) {
      const problems = [...check.Errors(request)].slice(0, 5).map((e) => `${e.path || '(request)'}: ${e.message}`);
      return { ok: false, error: { code: 'bad_request', message: `${name}: ${problems.join('; ')}` } };
    }
    const handler = this.handlers[name] as (q: unknown) => unknown;
    try {
      try {
        return { ok: true, result: await handler(request) };
      } catch (e) {
        if (!(e instanceof NotFoundError) || !this.control.caughtUp) throw e;
        // Read your writes: a miss is answered only once this replica has what the log had.
        await this.control.caughtUp().catch(() => undefined);
        return { ok: true, result: await handler(request) };
      }
    } catch (e) {
      if (e instanceof NotFoundError) return { ok: false, error: { code: 'not_found', message: e.message } };
      if (e instanceof CursorError) return { ok: false, error: { code: 'bad_request', message: `${name}: ${e.message}` } };
      return { ok: false, error: { code: 'internal', message: `${name} failed: ${(e as Error).message}` } };
    }
  }
}
