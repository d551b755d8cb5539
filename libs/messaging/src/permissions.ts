// Permission violations made visible. NATS answers a publish or subscription outside the
// connection's permissions with an asynchronous -ERR; the client turns that into a
// PermissionViolationError on the request, on the subscription, or only as a status event
// (a plain publish). These helpers turn all three into one clear, typed error.
import { errors as natsErrors, type NatsConnection, type Subscription, type SubscriptionOptions } from '@nats-io/transport-node';

/** The server refused a publish or subscription: the subject is outside this identity's permissions. */
export class NatsPermissionDeniedError extends Error {
  override readonly name = 'NatsPermissionDeniedError';
  /** Permanent: retrying with the same identity cannot succeed. */
  readonly retryable = false;
  constructor(
    readonly operation: 'publish' | 'subscribe',
    readonly subject: string,
    readonly identity?: string,
    options?: ErrorOptions,
  ) {
    super(
      `NATS denied ${identity ? `identity ${identity}` : 'this connection'} permission to ${operation} ${JSON.stringify(subject)}: ` +
      'the subject is outside its permissions (see docs/security.md, permission matrix)',
      options,
    );
  }
}

/** The permission violation inside `e` (or its causes) as a NatsPermissionDeniedError; undefined when none. */
export function asPermissionDenied(e: unknown, identity?: string): NatsPermissionDeniedError | undefined {
  for (let cur: unknown = e, depth = 0; cur && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    if (cur instanceof NatsPermissionDeniedError) return cur;
    if (cur instanceof natsErrors.PermissionViolationError) {
      return new NatsPermissionDeniedError(cur.operation === 'subscription' ? 'subscribe' : 'publish', cur.subject, identity, { cause: cur });
    }
  }
  // Some client paths (JetStream API requests) wrap it in a RequestError that keeps only the text.
  const parsed = e instanceof Error ? natsErrors.PermissionViolationError.parse(e.message) : null;
  if (parsed?.subject) return new NatsPermissionDeniedError(parsed.operation === 'subscription' ? 'subscribe' : 'publish', parsed.subject, identity, { cause: e });
  return undefined;
}

/** Calls `fn` for every permission violation the server reports on `nc` (plain publishes have no other path). */
export function onPermissionDenied(nc: NatsConnection, fn: (e: NatsPermissionDeniedError) => void, identity?: string): () => void {
  const status = nc.status();
  void (async () => {
    for await (const s of status) {
      if (s.type === 'error') {
        const denied = asPermissionDenied(s.error, identity);
        if (denied) fn(denied);
      }
    }
  })().catch(() => undefined);
  // The client's status iterator has stop() (it unregisters the listener); the type omits it.
  return () => (status as unknown as { stop(): void }).stop();
}

/**
 * Subscribes and waits for the server's verdict (a round trip): throws NatsPermissionDeniedError
 * when the subscription is refused, instead of a subscription that silently never delivers.
 */
export async function subscribeChecked(nc: NatsConnection, subject: string, options: SubscriptionOptions = {}, identity?: string): Promise<Subscription> {
  const sub = nc.subscribe(subject, options);
  await nc.flush();
  if (sub.isClosed()) {
    const reason = await sub.closed;
    throw asPermissionDenied(reason, identity) ?? reason ?? new Error(`subscription to ${subject} closed at once`);
  }
  return sub;
}

/** Publishes and waits for the server's verdict: throws NatsPermissionDeniedError when refused. */
export async function publishChecked(nc: NatsConnection, subject: string, data: Uint8Array | string, identity?: string): Promise<void> {
  let denied: NatsPermissionDeniedError | undefined;
  const stop = onPermissionDenied(nc, (e) => { if (e.subject === subject) denied = e; }, identity);
  try {
    nc.publish(subject, data);
    // The server answers -ERR before the flush's PONG; let the status iterator deliver it.
    await nc.flush();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    stop();
  }
  if (denied) throw denied;
}
