// Tracing and log correlation for every Cairn process: an AsyncLocalStorage context manager (so
// the span of the message being handled stays active across awaits), the tracer provider with
// an exporter chosen by the standard OTEL_* variables, job spans that continue the trace stored
// in a job's events, and the fields (traceId, spanId, jobId) a pino mixin adds to each log line.
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  context as otelContext, createContextKey, isSpanContextValid, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace,
  type Attributes, type Context, type ContextManager,
} from '@opentelemetry/api';
import {
  BasicTracerProvider, BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor,
  type SpanExporter, type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { TraceContext } from '@cairn/contracts';
import { contextOf } from './trace-fields.ts';
import { OtlpHttpJsonExporter } from './otlp-exporter.ts';

/** Keeps the active OpenTelemetry context per async call chain (what sdk-trace-node registers). */
export class AsyncLocalStorageContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.storage.run(ctx, () => fn.call(thisArg, ...args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const run = (...args: unknown[]) => this.with(ctx, () => (target as (...a: unknown[]) => unknown)(...args));
    return run as T;
  }

  enable(): this { return this; }

  disable(): this {
    this.storage.disable();
    return this;
  }
}

let contextManagerSet = false;

/**
 * Makes `context.active()` follow async call chains, once per process. Without it every span
 * started "active" is forgotten at the first await, and nothing downstream can continue it.
 */
export function ensureContextManager(): void {
  if (contextManagerSet) return;
  contextManagerSet = true;
  otelContext.setGlobalContextManager(new AsyncLocalStorageContextManager());
}

export interface TracingOptions {
  /** Where finished spans go; default: chosen by OTEL_TRACES_EXPORTER (see tracingExporterFromEnv). */
  readonly exporter?: SpanExporter | null;
  /** Export each span at once (tests) instead of in batches. */
  readonly simple?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

export interface Tracing {
  readonly provider: BasicTracerProvider;
  /** Flushes and stops exporting; the global provider is unregistered. */
  shutdown(): Promise<void>;
}

/**
 * The exporter the standard variables ask for: OTEL_TRACES_EXPORTER=otlp sends OTLP/HTTP JSON
 * to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces`,
 * default http://localhost:4318) with OTEL_EXPORTER_OTLP_HEADERS; `console` prints spans;
 * unset or `none` records spans (so logs and events carry trace ids) but exports nothing.
 */
export function tracingExporterFromEnv(env: NodeJS.ProcessEnv = process.env): SpanExporter | null {
  const kind = (env['OTEL_TRACES_EXPORTER'] ?? 'none').split(',')[0]!.trim().toLowerCase();
  if (kind === 'console') return new ConsoleSpanExporter();
  if (kind !== 'otlp') return null;
  const explicit = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT'];
  const base = (env['OTEL_EXPORTER_OTLP_ENDPOINT'] ?? 'http://localhost:4318').replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  for (const pair of (env['OTEL_EXPORTER_OTLP_TRACES_HEADERS'] ?? env['OTEL_EXPORTER_OTLP_HEADERS'] ?? '').split(',')) {
    const i = pair.indexOf('=');
    if (i > 0) headers[decodeURIComponent(pair.slice(0, i).trim())] = decodeURIComponent(pair.slice(i + 1).trim());
  }
  return new OtlpHttpJsonExporter({ url: explicit ?? `${base}/v1/traces`, headers, serviceName: env['OTEL_SERVICE_NAME'] ?? 'cairn' });
}

let active: Tracing | undefined;

/**
 * Registers the context manager and a tracer provider for this process (once: a second call
 * returns the first). Spans are recorded (sampled) whether or not anything exports them.
 */
export function setupTracing(options: TracingOptions = {}): Tracing {
  ensureContextManager();
  if (active) return active;
  if (process.env['OTEL_SDK_DISABLED'] === 'true' && options.exporter === undefined) {
    const provider = new BasicTracerProvider();
    return { provider, shutdown: () => Promise.resolve() };
  }
  const exporter = options.exporter === undefined ? tracingExporterFromEnv(options.env) : options.exporter;
  const spanProcessors: SpanProcessor[] = exporter ? [options.simple ? new SimpleSpanProcessor(exporter) : new BatchSpanProcessor(exporter)] : [];
  const provider = new BasicTracerProvider({ spanProcessors });
  trace.setGlobalTracerProvider(provider);
  const tracing: Tracing = {
    provider,
    async shutdown() {
      if (active === tracing) active = undefined;
      await provider.shutdown().catch(() => undefined);
      trace.disable();
    },
  };
  active = tracing;
  return tracing;
}

const JOB_ID = createContextKey('cairn.jobId');

/** The job whose handling is under way in this call chain, if any. */
export function activeJobId(ctx: Context = otelContext.active()): string | undefined {
  const v = ctx.getValue(JOB_ID);
  return typeof v === 'string' ? v : undefined;
}

/** A context that says which job is being handled (read by the log mixin). */
export function withJobId(ctx: Context, jobId: string | undefined): Context {
  return jobId ? ctx.setValue(JOB_ID, jobId) : ctx;
}

/**
 * The fields to add to a log line: the active trace and span, and the job being handled.
 * Use as pino's `mixin`, so every line logged while handling a job carries them.
 */
export function logCorrelation(): { traceId?: string; spanId?: string; jobId?: string } {
  const ctx = otelContext.active();
  const sc = trace.getSpanContext(ctx);
  const jobId = activeJobId(ctx);
  const out: { traceId?: string; spanId?: string; jobId?: string } = {};
  if (sc && isSpanContextValid(sc)) {
    out.traceId = sc.traceId;
    out.spanId = sc.spanId;
  }
  if (jobId) out.jobId = jobId;
  return out;
}

/**
 * pino options that add `logCorrelation()` to each line. A field the caller logs explicitly
 * (e.g. its own `jobId`) wins, and no key is written twice.
 */
export const correlatedLogOptions = {
  mixin: () => logCorrelation(),
  mixinMergeStrategy: (mergeObject: object, mixinObject: object) => Object.assign({}, mixinObject, mergeObject),
};

export interface JobSpanOptions {
  readonly jobId?: string;
  /** The job's stored trace to continue (the trace of its latest event); default: the active context. */
  readonly parent?: TraceContext;
  readonly attributes?: Attributes;
  readonly kind?: SpanKind;
  /** Start a new trace even when a span is active (a job that starts here). */
  readonly root?: boolean;
}

/**
 * Runs `fn` in a new active span named `name` (instrumentation scope `tracerName`), continuing
 * the given trace, with the job id in the context for logs. Errors end the span as failed.
 */
export function inSpan<T>(tracerName: string, name: string, options: JobSpanOptions, fn: () => Promise<T>): Promise<T> {
  ensureContextManager();
  const base = options.parent ? contextOf(options.parent) : options.root ? ROOT_CONTEXT : otelContext.active();
  const parent = withJobId(base, options.jobId ?? activeJobId(otelContext.active()));
  const attributes: Attributes = { ...(options.jobId ? { 'cairn.job.id': options.jobId } : {}), ...options.attributes };
  return trace.getTracer(tracerName).startActiveSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, attributes, ...(options.root ? { root: true } : {}) }, parent, async (span) => {
    try {
      const r = await fn();
      span.setStatus({ code: SpanStatusCode.OK });
      return r;
    } catch (e) {
      span.recordException(e instanceof Error ? e : new Error(String(e)));
      span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
      throw e;
    } finally {
      span.end();
    }
  });
}

/**
 * The job a message is about: a `jobId` field (work, command payloads), the `jobId` of an
 * event's data, or the correlation id of an event in a job stream.
 */
export function jobIdOf(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as { jobId?: unknown; data?: { jobId?: unknown }; streamId?: unknown; correlationId?: unknown };
  if (typeof v.jobId === 'string' && v.jobId.length > 0) return v.jobId;
  if (typeof v.data === 'object' && v.data !== null && typeof v.data.jobId === 'string' && v.data.jobId.length > 0) return v.data.jobId;
  if (typeof v.streamId === 'string' && v.streamId.startsWith('job-')) return v.streamId.slice(4);
  return undefined;
}
