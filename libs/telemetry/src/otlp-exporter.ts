// A small OTLP/HTTP exporter (JSON encoding, POST to `/v1/traces`): enough to send Cairn's
// spans to any OpenTelemetry collector, Jaeger or Tempo without the full exporter packages.
import type { AttributeValue, Attributes, HrTime } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

export interface OtlpHttpJsonExporterOptions {
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly serviceName: string;
  readonly timeoutMs?: number;
}

type AnyValue = { stringValue: string } | { boolValue: boolean } | { intValue: string } | { doubleValue: number } | { arrayValue: { values: AnyValue[] } };

function anyValue(v: AttributeValue): AnyValue {
  if (Array.isArray(v)) return { arrayValue: { values: v.filter((x) => x !== null && x !== undefined).map((x) => anyValue(x as AttributeValue)) } };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
  return { stringValue: String(v) };
}

function attributes(a: Attributes): { key: string; value: AnyValue }[] {
  return Object.entries(a).filter(([, v]) => v !== undefined).map(([key, v]) => ({ key, value: anyValue(v as AttributeValue) }));
}

const nanos = (t: HrTime): string => (BigInt(t[0]) * 1_000_000_000n + BigInt(t[1])).toString();

/** OTLP/JSON body for a batch of spans (one resource, one scope per instrumentation scope). */
export function otlpJson(spans: readonly ReadableSpan[], serviceName: string): unknown {
  const scopes = new Map<string, ReadableSpan[]>();
  for (const s of spans) {
    const key = `${s.instrumentationScope.name}@${s.instrumentationScope.version ?? ''}`;
    scopes.set(key, [...(scopes.get(key) ?? []), s]);
  }
  return {
    resourceSpans: [{
      resource: { attributes: attributes({ 'service.name': serviceName }) },
      scopeSpans: [...scopes.values()].map((group) => ({
        scope: { name: group[0]!.instrumentationScope.name, ...(group[0]!.instrumentationScope.version ? { version: group[0]!.instrumentationScope.version } : {}) },
        spans: group.map((s) => ({
          traceId: s.spanContext().traceId,
          spanId: s.spanContext().spanId,
          ...(s.parentSpanContext ? { parentSpanId: s.parentSpanContext.spanId } : {}),
          name: s.name,
          kind: s.kind + 1,
          startTimeUnixNano: nanos(s.startTime),
          endTimeUnixNano: nanos(s.endTime),
          attributes: attributes(s.attributes),
          events: s.events.map((e) => ({ timeUnixNano: nanos(e.time), name: e.name, attributes: attributes(e.attributes ?? {}) })),
          status: { code: s.status.code, ...(s.status.message ? { message: s.status.message } : {}) },
        })),
      })),
    }],
  };
}

export class OtlpHttpJsonExporter implements SpanExporter {
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly options: OtlpHttpJsonExporterOptions) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const p = fetch(this.options.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.options.headers },
      body: JSON.stringify(otlpJson(spans, this.options.serviceName)),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
    }).then(async (res) => {
      await res.arrayBuffer().catch(() => undefined);
      done(res.ok ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: new Error(`OTLP export: HTTP ${res.status}`) });
    }, (e: unknown) => done({ code: ExportResultCode.FAILED, error: e instanceof Error ? e : new Error(String(e)) }));
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  async forceFlush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
  }
}
