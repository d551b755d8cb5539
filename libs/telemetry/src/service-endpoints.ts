// The HTTP face of a service running as its own process (`cairn run <service> --http host:port`):
//   /health   liveness: 200 while the process answers and its health probe resolves (detail in
//             the body, e.g. a scheduler on standby); 503 when the probe fails. A supervisor
//             (systemd watchdog, Kubernetes liveness) restarts on that.
//   /ready    readiness: 200 when its NATS connection is up and the service says it is ready;
//             503 with the reason otherwise (a load balancer or Kubernetes stops sending to it).
//   /metrics  Prometheus: the process's own figures (CPU, memory, event loop, GC; prom-client's
//             defaults) and the numbers of its health detail as gauges `cairn_<service>_<field>`,
//             every sample labelled with the service and instance.
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

export interface ServiceProbe {
  /** The service's health detail (any JSON object); a throw is a failing health. */
  health(): unknown;
  /** Why it is not ready (undefined when it is). */
  notReady?(): Promise<string | undefined> | string | undefined;
  /** The NATS connection's state now (messaging's trackConnection). */
  connection(): 'connected' | 'disconnected' | 'closed';
}

export interface ServiceEndpointsOptions {
  readonly service: string;
  readonly instance: string;
  /** Where to listen; port 0 picks a free one (the address is in `url`). */
  readonly host: string;
  readonly port: number;
  readonly probe: ServiceProbe;
}

export interface ServiceEndpoints {
  readonly url: string;
  close(): Promise<void>;
}

/** `127.0.0.1:9100`, `:9100` (loopback) or `[::1]:9100` → host and port. */
export function parseListenAddress(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) throw new Error(`an HTTP address is host:port (e.g. 127.0.0.1:9100, or :0 for any free port on loopback), not ${JSON.stringify(text)}`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** The numbers in a health detail, one level of nesting deep: `{status: {lag: 3}}` → `status_lag`. */
export function healthGauges(detail: unknown): Map<string, number> {
  const out = new Map<string, number>();
  const visit = (value: unknown, path: string[]) => {
    if (typeof value === 'number' && Number.isFinite(value)) out.set(path.join('_'), value);
    else if (typeof value === 'bigint') out.set(path.join('_'), Number(value));
    else if (typeof value === 'boolean') out.set(path.join('_'), value ? 1 : 0);
    else if (typeof value === 'string' && /^\d{1,15}$/.test(value)) out.set(path.join('_'), Number(value));
    else if (value && typeof value === 'object' && !Array.isArray(value) && path.length < 2) {
      for (const [k, v] of Object.entries(value)) visit(v, [...path, k]);
    }
  };
  visit(detail, []);
  return new Map([...out].map(([k, v]) => [k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/[^a-zA-Z0-9_]/g, '_').toLowerCase(), v]));
}

export async function startServiceEndpoints(o: ServiceEndpointsOptions): Promise<ServiceEndpoints> {
  const registry = new Registry();
  registry.setDefaultLabels({ service: o.service, instance: o.instance });
  collectDefaultMetrics({ register: registry });
  const prefix = `cairn_${o.service.replace(/-/g, '_')}_`;
  const gauges = new Map<string, Gauge>();
  const ready = new Gauge({ name: 'cairn_service_ready', help: '1 when /ready answers 200', registers: [registry] });
  const connected = new Gauge({ name: 'cairn_service_nats_connected', help: '1 while the NATS connection is up', registers: [registry] });

  const readiness = async (): Promise<string | undefined> => {
    const state = o.probe.connection();
    if (state !== 'connected') return `NATS ${state}`;
    return o.probe.notReady?.();
  };
  const json = (res: import('node:http').ServerResponse, status: number, body: unknown) =>
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405, { allow: 'GET, HEAD' }).end(); return; }
    void (async () => {
      switch (path) {
        case '/health':
          try {
            json(res, 200, { status: 'ok', service: o.service, instance: o.instance, nats: o.probe.connection(), detail: await o.probe.health() });
          } catch (e) {
            json(res, 503, { status: 'failing', service: o.service, instance: o.instance, reason: (e as Error).message });
          }
          return;
        case '/ready': {
          const why = await readiness().catch((e: unknown) => (e as Error).message);
          json(res, why ? 503 : 200, why ? { status: 'not ready', reason: why } : { status: 'ready' });
          return;
        }
        case '/metrics': {
          const why = await readiness().catch((e: unknown) => (e as Error).message);
          ready.set(why ? 0 : 1);
          connected.set(o.probe.connection() === 'connected' ? 1 : 0);
          const detail = await Promise.resolve(o.probe.health()).catch(() => undefined);
          for (const [field, value] of healthGauges(detail)) {
            let g = gauges.get(field);
            if (!g) {
              g = new Gauge({ name: `${prefix}${field}`, help: `${o.service} health field ${field}`, registers: [registry] });
              gauges.set(field, g);
            }
            g.set(value);
          }
          res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
          return;
        }
        default:
          json(res, 404, { error: `no ${path}: /health, /ready, /metrics` });
      }
    })().catch(() => { if (!res.headersSent) res.writeHead(500).end(); });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => { server.off('error', reject); resolve(); });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  const host = o.host.includes(':') ? `[${o.host}]` : o.host;
  return {
    url: `http://${host}:${port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
