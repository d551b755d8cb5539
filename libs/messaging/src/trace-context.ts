// W3C trace context across NATS: `traceparent`/`tracestate` headers written by senders and read
// back by handlers, so one trace follows a job from the gateway through every service.
// The propagator is our own W3C instance (not the global one), so it works whether or not the
// process registered OpenTelemetry; spans are only recorded when a tracer provider is registered.
import { context as otelContext, ROOT_CONTEXT, trace, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { MsgHdrs } from '@nats-io/transport-node';
import type { TraceContext } from '@cairn/contracts';

const propagator = new W3CTraceContextPropagator();

const recordSetter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) { carrier[key] = value; },
};

const headersGetter: TextMapGetter<MsgHdrs | undefined> = {
  keys: (carrier) => (carrier ? carrier.keys() : []),
  get: (carrier, key) => {
    if (!carrier?.has(key)) return undefined;
    return carrier.get(key) || undefined;
  },
};

/** The W3C fields of an OpenTelemetry context (none when it carries no valid span). */
export function traceOf(ctx: Context = otelContext.active()): TraceContext | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, recordSetter);
  if (!carrier.traceparent) return undefined;
  return carrier.tracestate ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: carrier.traceparent };
}

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
  const ctx = propagator.extract(ROOT_CONTEXT, headers, headersGetter);
  if (!trace.getSpanContext(ctx)) return { context: ctx };
  const t = traceOf(ctx);
  return t ? { context: ctx, trace: t } : { context: ctx };
}

const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** An OpenTelemetry context whose parent span is the one a stored trace context names. */
export function contextOf(t: TraceContext | undefined, base: Context = ROOT_CONTEXT): Context {
  if (!t) return base;
  return propagator.extract(base, t.tracestate ? { traceparent: t.traceparent, tracestate: t.tracestate } : { traceparent: t.traceparent }, recordGetter);
}
