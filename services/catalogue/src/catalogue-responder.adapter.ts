// Binds the catalogue's queries to NATS through the messaging library's query responder: one
// queue-group subscription per query, so replicas share the load, and a plain subscription
// for `catalogue.rebuild`, which every replica obeys. Each reply names the replica.
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  BROADCAST_QUERIES, CATALOGUE_QUEUE, QUERY_NAMES, REPLICA_HEADER, catalogueQuerySubject, type QueryName, type QueryReply,
} from '@cairn/catalogue-client';
import { QueryResponder } from '@cairn/messaging';
import type { CatalogueQueryHandlers } from './catalogue-queries.handlers.ts';

export interface ResponderOptions {
  readonly nc: NatsConnection;
  readonly site: string;
  readonly replica: string;
  readonly handlers: CatalogueQueryHandlers;
  readonly logger: Logger;
}

const error = (code: 'bad_request' | 'internal', message: string): QueryReply => ({ ok: false, error: { code, message } });

export function catalogueResponder(o: ResponderOptions): QueryResponder<QueryName, QueryReply> {
  return new QueryResponder<QueryName, QueryReply>(o.nc, {
    routes: QUERY_NAMES.map((name) => ({
      name, subject: catalogueQuerySubject(o.site, name), ...(BROADCAST_QUERIES.includes(name) ? {} : { queue: CATALOGUE_QUEUE }),
    })),
    answer: (name, request) => o.handlers.handle(name, request),
    badRequest: (_name, message) => error('bad_request', message),
    failed: (name, message) => error('internal', `${name} failed: ${message}`),
    headers: { [REPLICA_HEADER]: o.replica },
    onAnswered: (name, request, reply, traceparent) => {
      const jobId = typeof request === 'object' && request !== null ? (request as { jobId?: unknown }).jobId : undefined;
      const level = reply.ok ? 'debug' : reply.error.code === 'internal' ? 'error' : 'info';
      o.logger[level]({
        query: name, ok: reply.ok, ...(reply.ok ? {} : { error: reply.error }),
        ...(typeof jobId === 'string' ? { jobId } : {}), ...(traceparent ? { traceId: traceparent.split('-')[1] } : {}),
      }, `query ${name}`);
    },
    onSubscriptionError: (subject, err) => o.logger.error({ subject, err: err.message }, 'query subscription failed'),
  });
}
