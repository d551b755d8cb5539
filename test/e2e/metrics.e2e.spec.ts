// /metrics end to end: a real nats-server with the JetStream event log, a running catalogue and
// the gateway. Job events go into the log, the catalogue projects them, and a scrape (without a
// token) must parse as Prometheus text with the counts and byte sums those events imply. When
// the Debian prometheus binary is there, a real Prometheus scrapes the gateway and answers a query.
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import { newEvent, type CairnEvent, type EventDataMap, type EventType } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { workStreamName } from '@cairn/jobs';
import { useHarness, waitFor } from '@cairn/testing';
import { startCatalogue } from '@cairn/catalogue';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';

const site = 'site-metrics';
const token = 'metrics-token-0123456789abcdef';
const h = useHarness();
const logger = pino({ level: 'silent' });
let nc: NatsConnection;
let log: JetStreamEventLog;
let gateway: RunningGateway;

function ev<K extends EventType>(type: K, data: EventDataMap[K], streamId: string): CairnEvent {
  return newEvent(type, data, { site, streamId, actor: { kind: 'service', id: 'test' } });
}

function completedJob(jobId: string, read: number, stored: number): CairnEvent[] {
  const s = `job-${jobId}`;
  return [
    ev('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, s),
    ev('JobStarted', { jobId, attempt: 1 }, s),
    ev('SnapshotRequested', { jobId, vmId: 'vm1', snapshotId: `s-${jobId}` }, s),
    ev('SnapshotTaken', { jobId, snapshotId: `s-${jobId}`, nbd: { socket: '/run/x.sock', exports: [{ disk: 'vda', exportName: 'vda', sizeBytes: 8192, mode: 'full', reason: 'test' }] } }, s),
    ev('TransferStarted', { jobId, worker: 'dm@1' }, s),
    ev('RestorePointCommitted', { restorePointId: `rp-${jobId}`, jobId, vmId: 'vm1', parentId: null, disks: [{ name: 'vda', sizeBytes: 8192, bytesRead: read, bytesStored: stored, chunksNew: 1, chunksReused: 1 }] }, s),
    ev('SnapshotReleased', { jobId, snapshotId: `s-${jobId}`, cause: 'job_ended' }, s),
    ev('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: read, bytesStored: stored, durationMs: 10 }, s),
  ];
}

interface Parsed { help: Map<string, string>; type: Map<string, string>; samples: Map<string, number> }

/** A strict little reader of the text format: every line is a comment or `name{labels} value`. */
function parseExposition(text: string): Parsed {
  const out: Parsed = { help: new Map(), type: new Map(), samples: new Map() };
  expect(text.endsWith('\n')).toBe(true);
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === 'HELP' ? out.help : out.type).set(meta[2]!, meta[3]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    expect(out.type.has(m[1]!), `TYPE before ${m[1]}`).toBe(true);
    out.samples.set(`${m[1]}${m[2] ?? ''}`, m[3] === 'NaN' ? NaN : Number(m[3]));
  }
  return out;
}

async function scrape() {
  const res = await fetch(`${gateway.url}/metrics`);
  return { status: res.status, contentType: res.headers.get('content-type'), text: await res.text() };
}

beforeAll(async () => {
  const nats = await h.nats();
  nc = await connect({ servers: nats.url });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  await log.append('vm-vm1', [ev('VmDiscovered', { vmId: 'vm1', name: 'web-1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 8192 }] }, 'vm-vm1')], { expectedRevision: 'no_stream' });
  const catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  gateway = await startGateway({ nc, site, port: 0, token, logger, timeoutMs: 3000, longTimeoutMs: 3000 });
  h.onClose(() => gateway.close());
});

afterAll(async () => { await gateway?.close(); });

describe('gateway /metrics', () => {
  it('answers without a token, with zero jobs and no work stream yet', async () => {
    const r = await scrape();
    expect(r.status).toBe(200);
    expect(r.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const p = parseExposition(r.text);
    expect(p.samples.get('cairn_catalogue_up')).toBe(1);
    expect(p.samples.get('cairn_jobs{state="completed"}')).toBe(0);
    expect(p.samples.get('cairn_work_queue_pending')).toBe(0);
    expect(p.samples.get('cairn_dedup_ratio')).toBeNaN();
  });

  it('counts jobs by state, sums restore points and reads the work queue after events are appended', async () => {
    await log.append('job-j1', completedJob('j1', 4096, 1024), { expectedRevision: 'no_stream' });
    await log.append('job-j2', completedJob('j2', 2048, 1024), { expectedRevision: 'no_stream' });
    await log.append('job-j3', [
      ev('JobRequested', { jobId: 'j3', vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, 'job-j3'),
      ev('JobStarted', { jobId: 'j3', attempt: 1 }, 'job-j3'),
      ev('SnapshotRequested', { jobId: 'j3', vmId: 'vm1', snapshotId: 's-j3' }, 'job-j3'),
    ], { expectedRevision: 'no_stream' });
    await log.append('job-j4', [
      ev('JobRequested', { jobId: 'j4', vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, 'job-j4'),
      ev('JobStarted', { jobId: 'j4', attempt: 1 }, 'job-j4'),
      ev('JobFailed', { jobId: 'j4', phase: 'snapshot', reason: 'QMP socket gone "x"', retryable: false }, 'job-j4'),
    ], { expectedRevision: 'no_stream' });
    // The work stream as the scheduler makes it, with two transfers waiting.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: workStreamName(site), subjects: [`cairn.${site}.work.>`], retention: RetentionPolicy.Workqueue });
    const js = jetstream(nc);
    await js.publish(`cairn.${site}.work.transfer`, '{}');
    await js.publish(`cairn.${site}.work.transfer`, '{}');

    const head = Number(await log.headPosition());
    const p = await waitFor(async () => {
      const parsed = parseExposition((await scrape()).text);
      return parsed.samples.get('cairn_catalogue_position') === head ? parsed : undefined;
    }, { timeoutMs: 10_000, what: 'the catalogue to project the job events' });

    expect(p.type.get('cairn_jobs')).toBe('gauge');
    expect(p.help.get('cairn_jobs')).toMatch(/by state/);
    expect(p.samples.get('cairn_jobs{state="completed"}')).toBe(2);
    expect(p.samples.get('cairn_jobs{state="running"}')).toBe(1);
    expect(p.samples.get('cairn_jobs{state="failed"}')).toBe(1);
    expect(p.samples.get('cairn_jobs{state="requested"}')).toBe(0);
    expect(p.samples.get('cairn_jobs{state="cancelled"}')).toBe(0);
    expect(p.samples.get('cairn_job_phase_running{phase="snapshot"}')).toBe(1);
    expect(p.samples.get('cairn_job_phase_running{phase="transfer"}')).toBe(0);
    expect(p.type.get('cairn_backup_bytes_read_total')).toBe('counter');
    expect(p.samples.get('cairn_backup_bytes_read_total')).toBe(6144);
    expect(p.samples.get('cairn_backup_bytes_stored_total')).toBe(2048);
    expect(p.samples.get('cairn_dedup_ratio')).toBe(3);
    expect(p.samples.get('cairn_restore_points')).toBe(2);
    expect(p.samples.get('cairn_catalogue_lag_events')).toBe(0);
    expect(p.samples.get('cairn_catalogue_head_position')).toBe(head);
    expect(p.samples.get('cairn_work_queue_pending')).toBe(2);
  });

  const hasPrometheus = spawnSync('sh', ['-c', 'command -v prometheus']).status === 0;
  it.skipIf(!hasPrometheus)(`is scraped by a real Prometheus, which answers a query for cairn_jobs${hasPrometheus ? '' : ' (skipped: needs the Debian package prometheus)'}`, async () => {
    const dir = await h.tmpDir();
    const port = await freePort();
    const target = new URL(gateway.url).host;
    await writeFile(join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: cairn',
      `    static_configs: [{ targets: ['${target}'] }]`,
      '',
    ].join('\n'));
    const prom = spawn('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => prom.once('exit', () => resolve()));
    h.onClose(async () => { if (prom.exitCode === null && prom.signalCode === null) { prom.kill('SIGTERM'); await exited; } });

    const result = await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=cairn_jobs`).catch(() => undefined);
      if (!res?.ok) return undefined;
      const body = await res.json() as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      return body.data.result.length === 5 ? body.data.result : undefined;
    }, { timeoutMs: 20_000, intervalMs: 250, what: 'prometheus to scrape /metrics' });
    const byState = Object.fromEntries(result.map((r) => [r.metric.state, r.value[1]]));
    expect(byState).toEqual({ requested: '0', running: '1', completed: '2', failed: '1', cancelled: '0' });
    expect(result[0]!.metric).toMatchObject({ __name__: 'cairn_jobs', job: 'cairn', instance: target });
  }, 30_000);

  it('stays exact past 1,000 jobs and restore points (the catalogue aggregates, nothing is paged)', async () => {
    const before = parseExposition((await scrape()).text);
    const n = 1100;
    const jobs = Array.from({ length: n }, (_, i) => ({ jobId: `bulk${i}`, read: 10_000 + i, stored: 1000 + (i % 7), durationMs: 500 + i }));
    // Appended in parallel over many streams: each stream is one job.
    for (let i = 0; i < jobs.length; i += 50) {
      await Promise.all(jobs.slice(i, i + 50).map(({ jobId, read, stored, durationMs }) => {
        const s = `job-${jobId}`;
        return log.append(s, [
          ev('JobRequested', { jobId, vmId: 'vm1', policyId: null, mode: 'full', trigger: 'manual' }, s),
          ev('JobStarted', { jobId, attempt: 1 }, s),
          ev('RestorePointCommitted', { restorePointId: `rp-${jobId}`, jobId, vmId: 'vm1', parentId: null, disks: [{ name: 'vda', sizeBytes: 8192, bytesRead: read, bytesStored: stored, chunksNew: 1, chunksReused: 0 }] }, s),
          ev('JobCompleted', { jobId, restorePointId: `rp-${jobId}`, bytesRead: read, bytesStored: stored, durationMs }, s),
        ], { expectedRevision: 'no_stream' });
      }));
    }
    const head = Number(await log.headPosition());
    const p = await waitFor(async () => {
      const parsed = parseExposition((await scrape()).text);
      return parsed.samples.get('cairn_catalogue_position') === head ? parsed : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: `the catalogue to project ${n} jobs` });
    const sum = (f: (j: typeof jobs[0]) => number) => jobs.reduce((a, j) => a + f(j), 0);
    const was = (k: string) => before.samples.get(k)!;
    expect(p.samples.get('cairn_jobs{state="completed"}')).toBe(was('cairn_jobs{state="completed"}') + n);
    expect(p.samples.get('cairn_jobs{state="completed"}')).toBeGreaterThan(1000);
    expect(p.samples.get('cairn_jobs{state="running"}')).toBe(was('cairn_jobs{state="running"}'));
    expect(p.samples.get('cairn_restore_points')).toBe(was('cairn_restore_points') + n);
    expect(p.samples.get('cairn_backup_bytes_read_total')).toBe(was('cairn_backup_bytes_read_total') + sum((j) => j.read));
    expect(p.samples.get('cairn_backup_bytes_stored_total')).toBe(was('cairn_backup_bytes_stored_total') + sum((j) => j.stored));
    expect(p.samples.get('cairn_dedup_ratio')).toBeCloseTo(p.samples.get('cairn_backup_bytes_read_total')! / p.samples.get('cairn_backup_bytes_stored_total')!, 9);
    expect(p.samples.get('cairn_backup_jobs_completed_total')).toBe(was('cairn_backup_jobs_completed_total') + n);
    expect(p.samples.get('cairn_backup_seconds_total')).toBeCloseTo(was('cairn_backup_seconds_total') + sum((j) => j.durationMs) / 1000, 6);
    expect(p.type.get('cairn_backup_throughput_bytes_per_second')).toBe('gauge');
    expect(p.samples.get('cairn_catalogue_lag_events')).toBe(0);
  }, 120_000);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
