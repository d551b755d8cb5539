// One trace per job, end to end with real NATS and real QEMU: a backup asked for through the
// gateway under the caller's W3C trace is followed by the scheduler, the snapshot coordinator,
// the data mover and the catalogue, each continuing that trace (NATS headers, the trace stored
// in the job's events); a scheduled job starts its own trace at the scheduler and is one trace
// as well; and every log line written about the job names its trace and job. Then the same with
// the scheduler and the data mover as `cairn run` processes exporting OTLP to a loopback collector.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { setupTracing } from '@cairn/telemetry';
import { startDemoVm, startStack } from '@cairn/cli';
import { cli, jobsWhere, runService, waitForJobEnd } from './e2e-helpers.ts';

// This file's policies run every few seconds: allow it (a site's default minimum is 5 min), in this
// process and the `cairn` processes it starts.
process.env['CAIRN_MIN_SCHEDULE_INTERVAL_MS'] = '1000';

interface LogLine { readonly name?: string; readonly msg?: string; readonly jobId?: string; readonly traceId?: string; readonly spanId?: string }

// One tracer provider for the file: tracers obtained by modules stay bound to the first one.
const exporter = new InMemorySpanExporter();
const tracing = setupTracing({ exporter, simple: true });
afterAll(() => tracing.shutdown());

describe('tracing and correlated logs (real NATS, real QEMU)', () => {
  const h = useHarness();

  it('a backup (requested or scheduled) yields one trace whose spans cover every service it passed, and its log lines carry the trace and job ids', async () => {
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

  it('across processes: a scheduler and a data mover run by `cairn run` continue the trace over NATS and export it over OTLP', async () => {
    // An OTLP/HTTP collector on loopback for the child processes' spans.
    const exported: { service: string; traceId: string; name: string; parentSpanId?: string; spanId: string }[] = [];
    const collector = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => {
        const doc = JSON.parse(body) as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: { traceId: string; spanId: string; parentSpanId?: string; name: string }[] }[] }[] };
        for (const rs of doc.resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
          for (const ss of rs.scopeSpans) for (const sp of ss.spans) exported.push({ service, ...sp });
        }
        res.writeHead(200).end('{}');
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    h.onClose(() => new Promise<void>((r) => collector.close(() => r())));
    const otel = (service: string) => ({
      OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as { port: number }).port}`, OTEL_SERVICE_NAME: service,
    });

    const dataDir = await h.tmpDir('cairn-trace-procs-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 16 * 1024 * 1024);
    h.onClose(() => vm.stop());
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], without: ['scheduler', 'data-mover'] });
    h.onClose(() => stack.stop());
    const common = ['--nats', stack.natsUrl, '--site', stack.site];
    const scheduler = runService('scheduler', [...common, '--data', join(dataDir, 'sched'), 'run', 'scheduler', '--lease-ms', '2000'], otel('cairn-scheduler'));
    const mover = runService('data-mover', [...common, '--data', join(dataDir, 'mover'), 'run', 'data-mover', '--repo', join(dataDir, 'repository')],
      { ...otel('cairn-data-mover'), CAIRN_REPO_PASSPHRASE: stack.passphrase });
    for (const p of [scheduler, mover]) h.onClose(async () => { p.kill('SIGTERM'); await p.exited; });
    await Promise.all([scheduler.ready, mover.ready]);
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const demo = await waitFor(async () => (await catalogue.query('vm.list', {})).items.find((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });

    const traceId = randomBytes(16).toString('hex');
    const jobId = await waitFor(async () => {
      const res = await fetch(`${stack.gatewayUrl}/v1/backups`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.gatewayToken}`, 'content-type': 'application/json', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
        body: JSON.stringify({ vmId: demo.vmId, mode: 'full' }),
      });
      // The scheduler process may not have folded the VM yet: then it refuses, and we ask again.
      return res.status === 202 ? (await res.json() as { jobId: string }).jobId : undefined;
    }, { what: 'the scheduler process to accept the backup' });
    expect((await waitForJobEnd(catalogue, jobId)).state).toBe('completed');

    // The children's spans arrive in batches; the test process has the coordinator's and the catalogue's.
    const remote = await waitFor(() => {
      const mine = exported.filter((x) => x.traceId === traceId);
      const names = new Set(mine.map((x) => x.name));
      return names.has('scheduler complete') && names.has('data-mover process') ? mine : undefined;
    }, { timeoutMs: 30_000, what: 'the child processes to export their spans' });
    expect(new Set(remote.filter((x) => x.name.startsWith('scheduler ')).map((x) => x.service))).toEqual(new Set(['cairn-scheduler']));
    expect(remote.find((x) => x.name === 'data-mover process')!.service).toBe('cairn-data-mover');
    const local = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    expect(local.map((s) => s.name)).toEqual(expect.arrayContaining(['snapshot-coordinator RequestSnapshot', 'catalogue project JobCompleted']));
    // The data mover's span is a child of the scheduler's queueTransfer step in the other process,
    // the coordinator's of its requestSnapshot step (a retried step has several spans: any of them).
    const idsOf = (name: string) => new Set(remote.filter((x) => x.name === name).map((x) => x.spanId));
    for (const m of remote.filter((x) => x.name === 'data-mover process')) expect(idsOf('scheduler queueTransfer')).toContain(m.parentSpanId);
    for (const c of local.filter((s) => s.name === 'snapshot-coordinator RequestSnapshot')) expect(idsOf('scheduler requestSnapshot')).toContain(c.parentSpanContext?.spanId);

    // The children's own log lines (stdout) about the job carry its trace.
    for (const p of [scheduler, mover]) {
      const lines = p.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine).filter((l) => l.jobId === jobId);
      expect(lines.length, `${p.name} logged about the job`).toBeGreaterThan(0);
      for (const l of lines) expect(l.traceId, `${p.name}: ${l.msg}`).toBe(traceId);
    }
  }, 240_000);
});
