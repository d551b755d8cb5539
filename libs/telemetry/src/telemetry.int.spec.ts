// Tracing set up as a Cairn process does it: spans continuing a stored W3C trace, exported as
// OTLP/HTTP JSON to a real HTTP collector on loopback (configured by the standard OTEL_*
// variables), and pino lines carrying the trace, span and job they were written under.
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { waitFor } from '@cairn/testing';
import { correlatedLogOptions, inSpan, setupTracing, tracingExporterFromEnv } from './telemetry.ts';

interface Received { readonly url: string; readonly headers: IncomingHttpHeaders; readonly body: unknown }
const received: Received[] = [];
const collector = createServer((req, res) => {
  let data = '';
  req.setEncoding('utf8').on('data', (d: string) => { data += d; }).on('end', () => {
    received.push({ url: req.url ?? '', headers: req.headers, body: JSON.parse(data) });
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
const port = (collector.address() as { port: number }).port;
afterAll(() => new Promise<void>((r) => collector.close(() => r())));

interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; attributes: { key: string; value: Record<string, unknown> }[] }
interface OtlpBody { resourceSpans: { resource: { attributes: { key: string; value: { stringValue: string } }[] }; scopeSpans: { scope: { name: string }; spans: OtlpSpan[] }[] }[] }

describe('tracing and log correlation', () => {
  it('continues a stored trace, exports OTLP/HTTP JSON to the collector the OTEL_* variables name, and stamps log lines', async () => {
    const exporter = tracingExporterFromEnv({
      OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}/`, OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-token=s3cret',
      OTEL_SERVICE_NAME: 'cairn-test',
    });
    const tracing = setupTracing({ exporter, simple: true });
    const lines: Record<string, unknown>[] = [];
    const raw: string[] = [];
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { raw.push(chunk.toString('utf8')); lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>); done(); } });
    const logger = pino({ level: 'info', ...correlatedLogOptions }, sink).child({ service: 'scheduler' });

    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const stored = { traceparent: `00-${traceId}-00f067aa0ba902b7-01` };
    logger.info('before any job');
    await inSpan('@cairn/test', 'scheduler start', { jobId: 'job-1', parent: stored, attributes: { 'cairn.job.step': 'start' } }, async () => {
      await new Promise((r) => setTimeout(r, 5)); // the context survives awaits and timers
      logger.info({ step: 'start' }, 'job step start');
      await inSpan('@cairn/test', 'nested', {}, async () => {
        logger.info({ jobId: 'explicit' }, 'a line that names its own job');
      });
    });
    await expect(inSpan('@cairn/test', 'failing', { jobId: 'job-1', parent: stored }, async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    await tracing.provider.forceFlush();
    await tracing.shutdown();

    // The log lines.
    expect(lines[0]).not.toHaveProperty('traceId');
    expect(lines[0]).not.toHaveProperty('jobId');
    expect(lines[1]).toMatchObject({ msg: 'job step start', service: 'scheduler', jobId: 'job-1', traceId, step: 'start' });
    expect(lines[1]!['spanId']).toMatch(/^[0-9a-f]{16}$/);
    expect(lines[2]).toMatchObject({ jobId: 'explicit', traceId });
    expect(raw[2]!.match(/"jobId"/g)).toHaveLength(1); // the caller's field wins, no key twice
    expect(lines[2]!['spanId']).not.toBe(lines[1]!['spanId']);

    // What the collector got.
    const spans = await waitFor(() => {
      const all = received.flatMap((r) => (r.body as OtlpBody).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)));
      return all.length >= 3 ? all : undefined;
    }, { what: 'three spans at the collector' });
    expect(received.every((r) => r.url === '/v1/traces' && r.headers['x-collector-token'] === 's3cret' && r.headers['content-type'] === 'application/json')).toBe(true);
    expect((received[0]!.body as OtlpBody).resourceSpans[0]!.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'cairn-test' } });
    const byName = new Map(spans.map((s) => [s.name, s]));
    expect(spans.every((s) => s.traceId === traceId)).toBe(true);
    expect(byName.get('scheduler start')!.parentSpanId).toBe('00f067aa0ba902b7');
    expect(byName.get('nested')!.parentSpanId).toBe(byName.get('scheduler start')!.spanId);
    expect(byName.get('scheduler start')!.attributes).toContainEqual({ key: 'cairn.job.id', value: { stringValue: 'job-1' } });
    expect(byName.get('scheduler start')!.spanId).toBe(lines[1]!['spanId']);
    expect(byName.get('failing')).toMatchObject({ status: { code: 2, message: 'boom' } });
  });
});
