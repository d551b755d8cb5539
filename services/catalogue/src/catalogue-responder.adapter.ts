// Binds the catalogue's queries to NATS: one queue-group subscription per query, so replicas
// share the load, and a plain subscription for `catalogue.rebuild`, which every replica obeys.
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import {
  BROADCAST_QUERIES, CATALOGUE_QUEUE, QUERY_NAMES, REPLICA_HEADER, catalogueQuerySubject, type QueryName, type QueryReply,
} from '@cairn/catalogue-client';
import type { CatalogueQueryHandlers } from './catalogue-queries.handlers.ts';

export interface ResponderOptions {
  readonly nc: NatsConnection;
  readonly site: string;
  readonly replica: string;
  readonly handlers: CatalogueQueryHandlers;
  readonly logger: Logger;
}

/** Requests larger than this are refused unread. */
const MAX_REQUEST_BYTES = 64 * 1024;

export class CatalogueResponder {
  private readonly subs: Subscription[] = [];
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly options: ResponderOptions) {}

  start(): void {
    for (const name of QUERY_NAMES) {
      const subject = catalogueQuerySubject(this.options.site, name);
      const broadcast = BROADCAST_QUERIES.includes(name);
      this.subs.push(this.options.nc.subscribe(subject, {
        ...(broadcast ? {} : { queue: CATALOGUE_QUEUE }),
        callback: (err, msg) => {
          if (err) {
            this.options.logger.error({ subject, err: err.message }, 'query subscription failed');
            return;
          }
          const p = this.answer(name, msg);
          this.inflight.add(p);
          void p.finally(() => this.inflight.delete(p));
        },
      }));
    }
  }

  /** Stops taking queries, then waits for those being answered. */
  async stop(): Promise<void> {
    for (const s of this.subs.splice(0)) s.unsubscribe();
    await Promise.allSettled([...this.inflight]);
  }

  private async answer(name: QueryName, msg: Msg): Promise<void> {
    const traceparent = msg.headers?.get('traceparent') || undefined;
    let reply: QueryReply;
    if (msg.data.length > MAX_REQUEST_BYTES) {
      reply = { ok: false, error: { code: 'bad_request', message: `request of ${msg.data.length} bytes exceeds ${MAX_REQUEST_BYTES}` } };
    } else {
      let request: unknown;
      try {
        request = msg.data.length === 0 ? {} : msg.json();
        reply = await this.options.handlers.handle(name, request);
      } catch {
        reply = { ok: false, error: { code: 'bad_request', message: `${name}: request is not JSON` } };
      }
      const jobId = typeof request === 'object' && request !== null ? (request as { jobId?: unknown }).jobId : undefined;
      const level = reply.ok ? 'debug' : reply.error.code === 'internal' ? 'error' : 'info';
      this.options.logger[level]({
        query: name, ok: reply.ok, ...(reply.ok ? {} : { error: reply.error }),
        ...(typeof jobId === 'string' ? { jobId } : {}), ...(traceparent ? { traceId: traceparent.split('-')[1] } : {}),
      }, `query ${name}`);
    }
    if (!msg.reply) return;
    const h = natsHeaders();
    h.set(REPLICA_HEADER, this.options.replica);
    msg.respond(JSON.stringify(reply), { headers: h });
  }
}
