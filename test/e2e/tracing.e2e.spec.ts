// One trace per job, end to end with real NATS and real QEMU: a backup asked for through the
// gateway under the caller's W3C trace is followed by the scheduler, the snapshot coordinator,
// the data mover and the catalogue, each continuing that trace (NATS headers, the trace stored
// in the job's events); and every log line written about the job names its trace and job.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { setupTracing } from '@cairn/messaging';
import { startDemoVm, startStack } from '@cairn/cli';
import { waitForJobEnd } from './e2e-helpers.ts';

interface LogLine { readonly name?: string; readonly msg?: string; readonly jobId?: string; readonly traceId?: string; readonly spanId?: string }

describe('tracing and correlated logs (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('a backup yields one trace whose spans cover every service it passed, and its log lines carry the trace and job ids', async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = setupTracing({ exporter, simple: true });
    h.onClose(() => tracing.shutdown());

    const dataDir = await h.tmpDir('cairn-trace-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 16 * 1024 * 1024);
    h.onClose(() => vm.stop());
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }] });
    let stopped = false;
    h.onClose(() => (stopped ? undefined : stack.stop()));
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const demo = await waitFor(async () => (await catalogue.query('vm.list', {})).items.find((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });

    // The caller's trace: the gateway continues it, so the job's spans share its trace id.
    const traceId = randomBytes(16).toString('hex');
    const res = await fetch(`${stack.gatewayUrl}/v1/backups`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.gatewayToken}`, 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      body: JSON.stringify({ vmId: demo.vmId, mode: 'full' }),
    });
    expect(res.status, await res.clone().text()).toBe(202);
    const { jobId } = await res.json() as { jobId: string };
    const job = await waitForJobEnd(catalogue, jobId);
    expect(job.state).toBe('completed');

    // Every event of the job carries the job's trace (what lets the next service continue it).
    for (const e of job.events) expect(e.trace?.traceparent.split('-')[1], `${e.type} trace`).toBe(traceId);

    const inTrace = (): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    await waitFor(() => inTrace().some((s) => s.name === 'catalogue project JobCompleted') || undefined, { what: 'the catalogue span of JobCompleted' });
    const spans = inTrace();
    const names = new Set(spans.map((s) => s.name));
    // The command, each scheduler step, the coordinator's snapshot commands, the data mover's
    // transfer from the work queue, and the catalogue projecting the job's events.
    for (const name of [
      'scheduler RequestBackup', 'scheduler start', 'scheduler requestSnapshot', 'snapshot-coordinator RequestSnapshot',
      'scheduler queueTransfer', 'data-mover process', 'scheduler release', 'snapshot-coordinator ReleaseSnapshot',
      'scheduler complete', 'catalogue project JobRequested', 'catalogue project SnapshotTaken', 'catalogue project RestorePointCommitted',
      'catalogue project JobCompleted',
    ]) expect(names, `span ${name} in ${[...names].join(', ')}`).toContain(name);
    const scopes = new Set(spans.map((s) => s.instrumentationScope.name));
    expect([...scopes].sort()).toEqual(expect.arrayContaining(['@cairn/catalogue', '@cairn/messaging', '@cairn/scheduler']));

    // One trace: no span about this job lives anywhere else, and every span's parent is in the
    // trace (or is the caller's span, the root).
    const aboutJob = exporter.getFinishedSpans().filter((s) => s.attributes['cairn.job.id'] === jobId);
    expect(aboutJob.length).toBeGreaterThanOrEqual(spans.length - 1);
    expect(new Set(aboutJob.map((s) => s.spanContext().traceId))).toEqual(new Set([traceId]));
    const ids = new Set(spans.map((s) => s.spanContext().spanId));
    const roots = spans.filter((s) => !s.parentSpanContext || !ids.has(s.parentSpanContext.spanId));
    expect(roots.map((s) => s.name)).toEqual(['scheduler RequestBackup']);

    // The logs: each line about the job names its trace; each service wrote some.
    await stack.stop();
    stopped = true;
    const lines = (await readFile(stack.logFile, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
    const ofJob = lines.filter((l) => l.jobId === jobId);
    for (const l of ofJob) expect(l.traceId, `${l.name}: ${l.msg}`).toBe(traceId);
    for (const l of lines.filter((x) => x.traceId === traceId)) expect(l.jobId, `${l.name}: ${l.msg}`).toBe(jobId);
    expect(new Set(ofJob.map((l) => l.name))).toEqual(new Set(['scheduler', 'snapshot-coordinator', 'data-mover', 'catalogue']));
    expect(ofJob.every((l) => typeof l.spanId === 'string' && /^[0-9a-f]{16}$/.test(l.spanId))).toBe(true);
  }, 240_000);
});
