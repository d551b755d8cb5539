// W3C trace context as stored data: the `traceparent`/`tracestate` fields of an OpenTelemetry
// context (what events and work messages carry), and a context continuing a stored one. Our
// own W3C propagator instance (not the global one), so it works whether or not the process
// registered OpenTelemetry.
import { createRequire } from 'node:module';
import { context as otelContext, isSpanContextValid, ROOT_CONTEXT, trace, type Context, type TextMapGetter, type TextMapPropagator, type TextMapSetter } from '@opentelemetry/api';
import type { TraceContext } from '@cairn/contracts';

let propagator: TextMapPropagator | undefined;
/**
 * The W3C propagator of `@opentelemetry/core`, loaded on first use: the package (with its
 * semantic conventions, ~260 KB, ~15-20 ms of CPU to load) is needed only where a trace is
 * written or read, and a CLI command, which has no span, never needs it.
 */
export function w3cPropagator(): TextMapPropagator {
  if (!propagator) {
    const core = createRequire(import.meta.url)('@opentelemetry/core') as typeof import('@opentelemetry/core');
    propagator = new core.W3CTraceContextPropagator();
  }
  return propagator;
}

const recordSetter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) { carrier[key] = value; },
};

const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

/** The W3C fields of an OpenTelemetry context (none when it carries no valid span). */
export function traceOf(ctx: Context = otelContext.active()): TraceContext | undefined {
  // The propagator's own first check: no valid span, nothing to write.
  const span = trace.getSpanContext(ctx);
  if (!span || !isSpanContextValid(span)) return undefined;
  const carrier: Record<string, string> = {};
  w3cPropagator().inject(ctx, carrier, recordSetter);
  if (!carrier.traceparent) return undefined;
  return carrier.tracestate ? { traceparent: carrier.traceparent, tracestate: carrier.tracestate } : { traceparent: carrier.traceparent };
}

/** An OpenTelemetry context whose parent span is the one a stored trace context names. */
export function contextOf(t: TraceContext | undefined, base: Context = ROOT_CONTEXT): Context {
  if (!t) return base;
  return w3cPropagator().extract(base, t.tracestate ? { traceparent: t.traceparent, tracestate: t.tracestate } : { traceparent: t.traceparent }, recordGetter);
}
