// What a sent command carries for tracing (send-trace.ts), as traceOf and injectTrace gave it.
import { ROOT_CONTEXT, TraceFlags, trace } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { otelRegistered, sendTrace } from './send-trace.ts';

const traceId = '0af7651916cd43dd8448eb211c80319c';
const spanId = 'b7ad6b7169203331';

describe('sendTrace', () => {
  it('carries an explicit trace in the command and its headers', async () => {
    const t = { traceparent: `00-${traceId}-${spanId}-01` };
    expect(await sendTrace(t, undefined)).toEqual({ command: t, headers: t });
  });

  it('takes the span of a context the caller passes', async () => {
    const ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: TraceFlags.SAMPLED });
    const t = { traceparent: `00-${traceId}-${spanId}-01` };
    expect(await sendTrace(undefined, ctx)).toEqual({ command: t, headers: t });
  });

  it('carries nothing for a context without a span', async () => {
    expect(await sendTrace(undefined, ROOT_CONTEXT)).toEqual({});
  });

  it('carries nothing when no context is passed and OpenTelemetry is not registered', async () => {
    expect(otelRegistered()).toBe(false);
    expect(await sendTrace(undefined, undefined)).toEqual({});
  });
});
