// Whether a NATS connection is up, followed from its status events: what a service's health
// and readiness report (the gateway's /health, `cairn run`'s /ready).
import type { NatsConnection } from '@nats-io/transport-node';

export type NatsConnectionState = 'connected' | 'disconnected' | 'closed';

/**
 * The connection's state from the client's own status events, so a health check answers at
 * once and truthfully while NATS is away (a query would wait for its timeout; `isClosed()`
 * stays false while the client reconnects).
 */
export function trackConnection(nc: NatsConnection): () => NatsConnectionState {
  let up = true;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnecting' || s.type === 'staleConnection') up = false;
      else if (s.type === 'reconnect') up = true;
    }
  })().catch(() => undefined);
  return () => (nc.isClosed() ? 'closed' : up ? 'connected' : 'disconnected');
}
