// One trace per job, end to end with real NATS and real QEMU: a backup asked for through the
// gateway under the caller's W3C trace is followed by the scheduler, the snapshot coordinator,
// the data mover and the catalogue, each continuing that trace (NATS headers, the trace stored
// in the job's events); a scheduled job starts its own trace at the scheduler and is one trace
// as well; and every log line written about the job names its trace and job.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { setupTracing } from '@cairn/messaging';
import { startDemoVm, startStack } from '@cairn/cli';
import { cli, jobsWhere, waitForJobEnd } from './e2e-helpers.ts';

interface LogLine { readonly name?: string; readonly msg?: string; readonly jobId?: string; readonly traceId?: string; readonly spanId?: string }

describe('tracing and correlated logs (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('a backup (requested or scheduled) yields one trace whose spans cover every service it passed, and its log lines carry the trace and job ids', async () => {
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
    const expected = [
      'scheduler RequestBackup', 'scheduler start', 'scheduler requestSnapshot', 'snapshot-coordinator RequestSnapshot',
      'scheduler queueTransfer', 'data-mover process', 'scheduler release', 'snapshot-coordinator ReleaseSnapshot',
      'scheduler complete', 'catalogue project JobRequested', 'catalogue project SnapshotTaken', 'catalogue project RestorePointCommitted',
      'catalogue project JobCompleted',
    ];
    const rootsOf = (spans: readonly ReadableSpan[]) => {
      const ids = new Set(spans.map((s) => s.spanContext().spanId));
      return spans.filter((s) => !s.parentSpanContext || !ids.has(s.parentSpanContext.spanId));
    };
    // Spans are exported when they end; a parent may end after its child (the scheduler's
    // `complete` step outlives the catalogue's projection of JobCompleted), so wait for all.
    const spans = await waitFor(() => {
      const all = inTrace();
      const names = new Set(all.map((s) => s.name));
      return expected.every((n) => names.has(n)) && rootsOf(all).length === 1 ? all : undefined;
    }, { what: 'the spans of the job' }).catch(() => inTrace());
    const names = new Set(spans.map((s) => s.name));
    // The command, each scheduler step, the coordinator's snapshot commands, the data mover's
    // transfer from the work queue, and the catalogue projecting the job's events.
    for (const name of expected) expect(names, `span ${name} in ${[...names].join(', ')}`).toContain(name);
    const scopes = new Set(spans.map((s) => s.instrumentationScope.name));
    expect([...scopes].sort()).toEqual(expect.arrayContaining(['@cairn/catalogue', '@cairn/messaging', '@cairn/scheduler']));

    // One trace: no span about this job lives anywhere else, and every span's parent is in the
    // trace (or is the caller's span, the root).
    const aboutJob = exporter.getFinishedSpans().filter((s) => s.attributes['cairn.job.id'] === jobId);
    // Only the request itself precedes the job id.
    expect(spans.filter((s) => s.attributes['cairn.job.id'] !== jobId).map((s) => s.name)).toEqual(['scheduler RequestBackup']);
    expect(new Set(aboutJob.map((s) => s.spanContext().traceId))).toEqual(new Set([traceId]));
    expect(rootsOf(spans).map((s) => s.name)).toEqual(['scheduler RequestBackup']);

    // A scheduled job (no caller) starts its own trace at the scheduler, and is one trace too.
    const created = await cli(['--data', dataDir, '--json', 'policy', 'create', '--name', 'often', '--vm', 'demo', '--cron', '*/5 * * * * *', '--timezone', 'UTC', '--keep-last', '5']);
    expect(created.code, created.stderr).toBe(0);
    const { policyId } = JSON.parse(created.stdout) as { policyId: string };
    const scheduled = await waitFor(async () => (await jobsWhere(catalogue, (j) => j.policyId === policyId && j.state === 'completed'))[0], { timeoutMs: 120_000, intervalMs: 500, what: 'a scheduled backup' });
    const detail = await catalogue.query('job.get', { jobId: scheduled.jobId });
    const scheduledTrace = new Set(detail.events.filter((e) => e.streamId === `job-${scheduled.jobId}`).map((e) => e.trace?.traceparent.split('-')[1]));
    expect(scheduledTrace.size).toBe(1);
    const [otherTraceId] = [...scheduledTrace] as [string];
    expect(otherTraceId).toMatch(/^[0-9a-f]{32}$/);
    expect(otherTraceId).not.toBe(traceId);
    const scheduledSpans = await waitFor(() => {
      const all = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === otherTraceId);
      return all.some((s) => s.name === 'catalogue project JobCompleted') && all.some((s) => s.name === 'scheduler complete') ? all : undefined;
    }, { what: 'the spans of the scheduled job' });
    expect(rootsOf(scheduledSpans).map((s) => s.name)).toEqual(['scheduler schedule']);
    for (const name of ['snapshot-coordinator RequestSnapshot', 'data-mover process', 'catalogue project RestorePointCommitted']) {
      expect(scheduledSpans.map((s) => s.name)).toContain(name);
    }

    // The logs: each line about the job names its trace; each service wrote some.
    await stack.stop();
    stopped = true;
    const lines = (await readFile(stack.logFile, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
    const ofJob = lines.filter((l) => l.jobId === jobId);
    for (const l of ofJob) expect(l.traceId, `${l.name}: ${l.msg}`).toBe(traceId);
    for (const l of lines.filter((x) => x.traceId === traceId)) expect(l.jobId, `${l.name}: ${l.msg}`).toBe(jobId);
    expect([...new Set(ofJob.map((l) => l.name))]).toEqual(expect.arrayContaining(['scheduler', 'snapshot-coordinator', 'data-mover', 'catalogue']));
    expect(ofJob.every((l) => typeof l.spanId === 'string' && /^[0-9a-f]{16}$/.test(l.spanId))).toBe(true);
  }, 240_000);
});
