// The control plane at scale (issue 19): N simulated VMs, one backup job each, through the
// scheduler, the snapshot coordinator (simulated hypervisor), three data movers and the catalogue,
// each its own `cairn run` process, on a three-node NATS cluster. Mid-run one nats-server and one
// data mover are SIGKILLed (the member is started again); at the end the log is read back and
// every job must have exactly one RestorePointCommitted and one JobCompleted.
//   npx tsx tools/bench/src/scale.ts [--vms 10000] [--movers 3] [--kill-at 0.3]
// Prints wall time, jobs/s and p50/p99 of request → JobCompleted, as JSON at the end.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { natsServers } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import { startNatsCluster } from '@cairn/nats-server';
import { simulatedVmName } from '@cairn/hypervisor';

const { values } = parseArgs({ options: {
  vms: { type: 'string', default: '10000' }, movers: { type: 'string', default: '3' }, 'kill-at': { type: 'string', default: '0.3' },
  'max-jobs-per-host': { type: 'string', default: '64' }, keep: { type: 'boolean', default: false },
} });
const VMS = Number(values.vms);
const MOVERS = Number(values.movers);
const CLI = join(import.meta.dirname, '..', '..', 'cli', 'bin', 'cairn.js');
const say = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-scale-'));
const procs: ChildProcess[] = [];
const cleanup = async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await cluster.stop().catch(() => undefined);
  if (!values.keep) await rm(dir, { recursive: true, force: true });
};
const cluster = await startNatsCluster({ dir: join(dir, 'nats'), size: 3, name: 'cairn-bench', maxPayload: 8 * 1024 * 1024 });
try {
  const nats = cluster.url;
  const env = {
    ...process.env, CAIRN_NATS_URL: nats, CAIRN_SITE: 'bench', CAIRN_REPO_PASSPHRASE: 'bench-scale', CAIRN_LOG_LEVEL: 'warn',
    CAIRN_SIMULATED_HYPERVISOR: '1', CAIRN_CONFIG: join(dir, 'cairn.yaml'), CAIRN_FILE_INDEX: '0',
  };
  await writeFile(env.CAIRN_CONFIG, `site: bench\nconcurrency:\n  maxJobsPerHost: ${Number(values['max-jobs-per-host'])}\n`);
  const run = (name: string, args: string[]) => {
    const p = spawn(process.execPath, [CLI, '--data', join(dir, name), ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(p);
    return new Promise<ChildProcess>((resolve, reject) => {
      let out = '';
      p.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; if (/ running \(site /.test(out)) resolve(p); });
      p.once('exit', (code) => reject(new Error(`${name} exited (${code}) before it ran: ${out}`)));
    });
  };
  await mkdir(join(dir, 'repository'));
  const init = spawn(process.execPath, [CLI, 'repo', '--repo', join(dir, 'repository'), 'init'], { env, stdio: 'inherit' });
  await new Promise((r) => init.once('exit', r));
  const t0 = Date.now();
  await Promise.all([
    run('scheduler', ['run', 'scheduler']),
    run('catalogue', ['run', 'catalogue']),
    run('coordinator', ['run', 'snapshot-coordinator', '--simulated', String(VMS)]),
  ]);
  const movers = await Promise.all(Array.from({ length: MOVERS }, (_, i) => run(`mover-${i + 1}`, ['run', 'data-mover', '--repo', join(dir, 'repository'), '--ack-wait-ms', '10000'])));
  say(`services up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const nc = await connect({ servers: natsServers(nats), maxReconnectAttempts: -1 });
  const log = await createJetStreamEventLog({ nc, site: 'bench' });
  // Every VM discovered before the run starts (the inventory is not what is measured).
  for (;;) {
    let n = 0;
    for await (const r of log.readAll({ category: 'vm' })) if (r.event.type === 'VmDiscovered') n++;
    if (n >= VMS) break;
    say(`discovered ${n}/${VMS}`);
    await new Promise((r) => setTimeout(r, 2000));
  }
  const head = await log.headPosition();
  const requestedAt = new Map<string, number>();
  const completedAt = new Map<string, number>();
  const sub = log.subscribe({ from: head, category: 'job' });
  void (async () => {
    for await (const r of sub) {
      if (r.event.type === 'JobCompleted' || r.event.type === 'JobFailed') completedAt.set(r.event.correlationId, Date.parse(r.event.time));
      if (r.event.type === 'JobRequested') requestedAt.set(r.event.correlationId, Date.parse(r.event.time));
    }
  })();

  const bus = new CommandBus(nc, { site: 'bench', actor: { kind: 'user', id: 'bench' }, defaultTimeoutMs: 60_000 });
  const start = Date.now();
  let sent = 0;
  let killed = false;
  const kill = async () => {
    killed = true;
    const member = cluster.members[1]!;
    say(`SIGKILL nats member 2 (pid ${member.pid}) and mover 1 (pid ${movers[0]!.pid}) at ${completedAt.size} completed`);
    await member.kill('SIGKILL');
    movers[0]!.kill('SIGKILL');
    setTimeout(() => { void member.start().then(() => say('nats member 2 started again')); }, 5000);
  };
  // Requests in flight: a few hundred at once (the scheduler queues beyond its host limit).
  const window = 200;
  const inflight = new Set<Promise<unknown>>();
  for (let i = 0; i < VMS; i++) {
    const p = bus.send('scheduler', 'RequestBackup', { vmId: simulatedVmName(i, VMS), mode: 'auto' }, { idempotencyKey: `bench-${i}` })
      .then((r) => { sent++; return r; }, (e: unknown) => say(`request ${i}: ${(e as Error).message}`))
      .finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= window) await Promise.race(inflight);
    if (!killed && completedAt.size >= VMS * Number(values['kill-at'])) await kill();
  }
  await Promise.all(inflight);
  say(`${sent} requests accepted in ${((Date.now() - start) / 1000).toFixed(1)} s`);
  let last = -1;
  while (completedAt.size < sent) {
    if (!killed && completedAt.size >= VMS * Number(values['kill-at'])) await kill();
    if (completedAt.size !== last) { say(`${completedAt.size}/${sent} ended, load ${loadavg()[0]!.toFixed(1)}`); last = completedAt.size; }
    await new Promise((r) => setTimeout(r, 2000));
  }
  const wallMs = Date.now() - start;
  await sub.stop();

  // Exactly once, from the log: per job one RestorePointCommitted and one JobCompleted.
  const perJob = new Map<string, { committed: number; completed: number; failed: number; started: number }>();
  const reasons = new Set<string>();
  for await (const r of log.readAll({ category: 'job' })) {
    if (r.position <= head) continue;
    const j = perJob.get(r.event.correlationId) ?? { committed: 0, completed: 0, failed: 0, started: 0 };
    if (r.event.type === 'RestorePointCommitted') j.committed++;
    if (r.event.type === 'JobCompleted') j.completed++;
    if (r.event.type === 'JobFailed') { j.failed++; if (reasons.size < 5) reasons.add(JSON.stringify(r.event.data).slice(0, 300)); }
    if (r.event.type === 'TransferStarted') j.started++;
    perJob.set(r.event.correlationId, j);
  }
  const jobs = [...perJob.values()];
  const latencies = [...completedAt].map(([id, at]) => at - (requestedAt.get(id) ?? at)).sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const result = {
    vms: VMS, movers: MOVERS, jobs: jobs.length, wallSeconds: +(wallMs / 1000).toFixed(1), jobsPerSecond: +(jobs.length / (wallMs / 1000)).toFixed(1),
    p50Ms: pct(0.5), p99Ms: pct(0.99),
    completedOnce: jobs.filter((j) => j.completed === 1 && j.committed === 1).length,
    failed: jobs.filter((j) => j.failed > 0).length,
    committedTwice: jobs.filter((j) => j.committed > 1).length, completedTwice: jobs.filter((j) => j.completed > 1).length,
    redelivered: jobs.filter((j) => j.started > 1).length,
    load: loadavg().map((x) => +x.toFixed(1)),
    ...(reasons.size ? { failureReasons: [...reasons] } : {}),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  await log.close();
  await nc.close();
} finally {
  await cleanup();
}
