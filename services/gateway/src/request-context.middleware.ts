// First thing every request meets: a request id and a W3C trace context (the caller's
// `traceparent` when valid, a new one otherwise) that commands carry into the event log,
// and one log line per request when it ends.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { HttpRequest, HttpResponse } from './http.types.ts';
import { redactUrl } from './edge-hardening.ts';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The caller's trace continued by a new span of ours, or a new trace. */
export function continueTrace(header: unknown): string {
  const m = typeof header === 'string' ? TRACEPARENT.exec(header.trim()) : null;
  const traceId = m && !/^0+$/.test(m[1]!) ? m[1]! : randomBytes(16).toString('hex');
  const flags = m?.[3] ?? '01';
  return `00-${traceId}-${randomBytes(8).toString('hex')}-${flags}`;
}

export function requestContext(logger: Logger) {
  return (req: HttpRequest, res: HttpResponse & { getHeader(name: string): unknown }, next: () => void): void => {
    const ctx = { requestId: randomUUID(), traceparent: continueTrace(req.headers.traceparent), startedAt: performance.now() };
    req.cairn = ctx;
    res.setHeader('X-Request-Id', ctx.requestId);
    res.setHeader('traceparent', ctx.traceparent);
    res.on('finish', () => {
      const location = res.getHeader('Location');
      const jobId = req.params?.jobId ?? (typeof location === 'string' ? /\/v1\/jobs\/([^/]+)$/.exec(location)?.[1] : undefined);
      const status = res.statusCode;
      logger[status >= 500 ? 'warn' : status >= 400 ? 'info' : 'debug']({
        method: req.method, path: redactUrl(req.originalUrl ?? req.url), status, ms: Math.round(performance.now() - ctx.startedAt),
        requestId: ctx.requestId, traceId: ctx.traceparent.split('-')[1], ...(jobId ? { jobId } : {}),
        ...(req.cairn?.actor ? { actor: req.cairn.actor.id } : {}),
      }, 'request');
    });
    next();
  };
}
