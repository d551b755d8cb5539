// W3C trace context across NATS: `traceparent`/`tracestate` headers written by senders and read
// back by handlers, so one trace follows a job from the gateway through every service.
// The propagator is our own W3C instance (not the global one), so it works whether or not the
// process registered OpenTelemetry; spans are only recorded when a tracer provider is registered.
import { context as otelContext, ROOT_CONTEXT, trace, type Context, type TextMapGetter } from '@opentelemetry/api';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { TraceContext } from '@cairn/contracts';
// The narrow entry: the main one reaches the tracing SDK and prom-client (docs/benchmarks.md "CLI start-up").
import { traceOf, w3cPropagator } from '@cairn/telemetry/trace-fields';

const headersGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => (carrier ? carrier.keys() : []),
  get: (carrier, key) => {
    if (!carrier?.has(key)) return undefined;
    return carrier.get(key) || undefined;
  },
};

/** Writes the trace headers: the explicit trace when given, else the context's current span. */
export function injectTrace(headers: MsgHdrs, explicit?: TraceContext, ctx: Context = otelContext.active()): TraceContext | undefined {
  const t = explicit ?? traceOf(ctx);
  if (!t) return undefined;
  headers.set('traceparent', t.traceparent);
  if (t.tracestate) headers.set('tracestate', t.tracestate);
  return t;
}

export interface ExtractedTrace {
  /** An OpenTelemetry context whose parent span is the sender's (ROOT_CONTEXT when none). */
  readonly context: Context;
  /** The validated W3C fields, when the message carried a valid `traceparent`. */
  readonly trace?: TraceContext;
}

/** Reads the trace headers of a received message; malformed values are ignored, not fatal. */
export function extractTrace(headers: MsgHdrs | undefined): ExtractedTrace {
  const ctx = w3cPropagator().extract(ROOT_CONTEXT, headers, headersGetter);
  if (!trace.getSpanContext(ctx)) return { context: ctx };
  const t = traceOf(ctx);
  return t ? { context: ctx, trace: t } : { context: ctx };
}
