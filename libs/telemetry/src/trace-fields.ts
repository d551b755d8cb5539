// W3C trace context as stored data: the `traceparent`/`tracestate` fields of an OpenTelemetry
// context (what events and work messages carry), and a context continuing a stored one. Our
// own W3C propagator instance (not the global one), so it works whether or not the process
// registered OpenTelemetry.
import { context as otelContext, ROOT_CONTEXT, type Context, type TextMapGetter, type TextMapSetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { TraceContext } from '@cairn/contracts';

const propagator = new W3CTraceContextPropagator();

const recordSetter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) { carrier[key] = value; },
};

const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** The W3C fields of an OpenTelemetry context (none when it carries no valid span). */
export function traceOf(ctx: Context = otelContext.active()): TraceContext | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, recordSetter);
  if (!carrier.traceparent) return undefined;
  return carrier.tracestate ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: carrier.traceparent };
}

/** An OpenTelemetry context whose parent span is the one a stored trace context names. */
export function contextOf(t: TraceContext | undefined, base: Context = ROOT_CONTEXT): Context {
  if (!t) return base;
  return propagator.extract(base, t.tracestate ? { traceparent: t.traceparent, tracestate: t.tracestate } : { traceparent: t.traceparent }, recordGetter);
}
