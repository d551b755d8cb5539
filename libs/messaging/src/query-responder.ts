// Answers queries over NATS request/reply: one subscription per query subject, in a queue
// group (replicas share the load) or not (every replica answers: broadcasts). Requests over
// the size limit or not JSON get the protocol's bad-request reply unread; the rest go to
// `answer`, whose reply is sent as JSON with the configured headers. Unlike commands, queries
// carry no envelope, change nothing and are not replayed.
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { errorMessage } from './errors.ts';

export interface QueryRoute<N extends string> {
  readonly name: N;
  readonly subject: string;
  /** Queue group; none: every subscriber answers. */
  readonly queue?: string;
}

export interface QueryResponderOptions<N extends string, R> {
  readonly routes: readonly QueryRoute<N>[];
  /** The reply to a request (a rejection is logged and answered as `badRequest` cannot: see `failed`). */
  answer(name: N, request: unknown): Promise<R>;
  /** The reply to a request that cannot be read (too large, not JSON). */
  badRequest(name: N, message: string): R;
  /** The reply when `answer` threw. */
  failed(name: N, message: string): R;
  /** Headers on every reply (e.g. who answered). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Requests larger than this are refused unread (default 64 KiB). */
  readonly maxRequestBytes?: number;
  /** Called after each answer (logging). */
  onAnswered?(name: N, request: unknown, reply: R, traceparent: string | undefined): void;
  onSubscriptionError?(subject: string, err: Error): void;
}

export class QueryResponder<N extends string, R> {
  readonly #subs: Subscription[] = [];
  readonly #inflight = new Set<Promise<void>>();

  constructor(private readonly nc: NatsConnection, private readonly o: QueryResponderOptions<N, R>) {}

  start(): void {
    for (const route of this.o.routes) {
      this.#subs.push(this.nc.subscribe(route.subject, {
        ...(route.queue ? { queue: route.queue } : {}),
        callback: (err, msg) => {
          if (err) { this.o.onSubscriptionError?.(route.subject, err); return; }
          const p = this.#answer(route.name, msg);
          this.#inflight.add(p);
          void p.finally(() => this.#inflight.delete(p));
        },
      }));
    }
  }

  /** Stops taking queries, then waits for those being answered. */
  async stop(): Promise<void> {
    for (const s of this.#subs.splice(0)) s.unsubscribe();
    await Promise.allSettled([...this.#inflight]);
  }

  async #answer(name: N, msg: Msg): Promise<void> {
    const limit = this.o.maxRequestBytes ?? 64 * 1024;
    let request: unknown;
    let reply: R;
    if (msg.data.length > limit) {
      reply = this.o.badRequest(name, `request of ${msg.data.length} bytes exceeds ${limit}`);
    } else {
      let readable = true;
      try {
        request = msg.data.length === 0 ? {} : msg.json();
      } catch {
        readable = false;
      }
      if (!readable) reply = this.o.badRequest(name, `${name}: request is not JSON`);
      else {
        try {
          reply = await this.o.answer(name, request);
        } catch (e) {
          reply = this.o.failed(name, errorMessage(e));
        }
      }
    }
    this.o.onAnswered?.(name, request, reply, msg.headers?.get('traceparent') || undefined);
    if (!msg.reply) return;
    const h = natsHeaders();
    for (const [k, v] of Object.entries(this.o.headers ?? {})) h.set(k, v);
    msg.respond(JSON.stringify(reply), { headers: h });
  }
}
