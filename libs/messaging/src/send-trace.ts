// The trace a command carries, without loading OpenTelemetry's API where nothing can be traced
// (issue 20: the API's chunk on `cairn restore`'s path to its request). A span exists only in a
// context the caller passes, or in the active context of a process that registered OpenTelemetry
// (a context manager or tracer provider: `registerGlobal` of @opentelemetry/api 1.x writes this
// symbol on globalThis first); without either, `context.active()` is the root context, which has
// no span, and the W3C fields are absent either way.
import type { Context } from '@opentelemetry/api';
import type { TraceContext } from '@cairn/contracts';

const OTEL_API_1 = Symbol.for('opentelemetry.js.api.1');

type TraceFields = typeof import('@cairn/telemetry/trace-fields');
let fields: TraceFields | undefined;

/** Whether this process registered any OpenTelemetry global (API 1.x). */
export function otelRegistered(): boolean {
  return OTEL_API_1 in globalThis;
}

export interface SendTrace {
  /** The command's `trace`: the explicit one, else the given (or active) context's span. */
  readonly command?: TraceContext;
  /** The `traceparent`/`tracestate` headers: the command's, else the active context's span. */
  readonly headers?: TraceContext;
}

/** What `CommandBus.send` writes: as `traceOf` and `injectTrace` do, loading them only when a span can exist. */
export async function sendTrace(explicit: TraceContext | undefined, ctx: Context | undefined): Promise<SendTrace> {
  if (explicit) return { command: explicit, headers: explicit };
  if (!ctx && !otelRegistered()) return {};
  fields ??= await import('@cairn/telemetry/trace-fields');
  const command = fields.traceOf(ctx);
  const headers = command ?? (ctx ? fields.traceOf() : undefined);
  return { ...(command ? { command } : {}), ...(headers ? { headers } : {}) };
}
