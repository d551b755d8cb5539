// The control plane at scale (issue 19): N simulated VMs, one backup job each, through the
// scheduler, the snapshot coordinator (simulated hypervisor), three data movers and the catalogue,
// each its own `cairn run` process, on a three-node NATS cluster. Mid-run one nats-server and one
// data mover are SIGKILLed (the member is started again); at the end the log is read back and
// every job must have exactly one RestorePointCommitted and one JobCompleted.
//   npx tsx tools/bench/src/scale.ts --vms 10000 --policies
//     [--hosts <n>, default one per 100 VMs] [--max-jobs-per-host 8] [--transfers 8] [--movers 3]
//     [--kill-at 0.3] [--kill-member 2|meta] [--policy-ms 10] [--profile <dir>] [--keep] [--log-level warn] [--cli <another build's tools/cli/bin/cairn.js>]
// --policies: one policy per VM, all due at the same minute, so the scheduler's cron requests
// every job; without it, one manual RequestBackup per VM. The jobs start once the movers' first
// scheduled verify has run. Prints wall time, jobs/s, p50/p99 of due minute (or request) →
// JobCompleted, CPU seconds per process (each mover's by thread), each process's garbage
// collections in the job phase (`gcOfJobs`: mark-compacts / scavenges, pause ms per job; counted
// by gc-count.mjs, preloaded), read / write system calls per job of each process
// (`syscallsPerJob`) and their KiB (`ioKiBPerJob`) and appends per job, as JSON at the end.
// Around the kill it prints each second's job events by step (started, snapshot, queued, transfer,
// committed, released, completed, by the events' own times) and JobCompleted per 10 s, with
// `completedIn60sAfterKill`: a step whose events stop shows who stalls. Each service's log goes
// to <run dir>/<service>.log (`--log-level`, default warn; the run dir stays with --keep, with
// the nats-servers' logs under nats/).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { natsServers } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { CommandBus } from '@cairn/messaging';
import { jetStreamMetaLeader, startNatsCluster } from '@cairn/nats-server';
import { simulatedVmName } from '@cairn/hypervisor';

const { values } = parseArgs({ options: {
  vms: { type: 'string', default: '10000' }, movers: { type: 'string', default: '3' }, 'kill-at': { type: 'string', default: '0.3' },
  // Backups at once per hypervisor host (cairn.yaml concurrency.maxJobsPerHost).
  'max-jobs-per-host': { type: 'string', default: '8' }, keep: { type: 'boolean', default: false },
  // The `cairn` CLI the services run (default: this checkout's), e.g. another build's for an A/B.
  cli: { type: 'string' },
  // One policy per VM (selector: its name), all due at the same minute, started by the scheduler's cron.
  policies: { type: 'boolean', default: false },
  // Simulated hypervisor hosts the VMs are spread over (each its own per-host slot limit);
  // default one per 100 VMs, a dense but ordinary KVM host.
  hosts: { type: 'string' },
  // V8 CPU profiles of every `cairn run` process (written when they are stopped with SIGTERM).
  profile: { type: 'string' },
  // Transfers each data mover runs at once.
  transfers: { type: 'string', default: '8' },
  // Expected time to create one policy (ms): sets how far ahead the shared due minute is.
  'policy-ms': { type: 'string', default: '10' },
  // Count the NATS messages the services send during the job phase, by subject pattern (a `>`
  // subscription of this process: it adds work to nats-server, so not for CPU figures).
  'count-subjects': { type: 'boolean', default: false },
  // The services' log level (their logs are written to <run dir>/<service>.log; keep them with --keep).
  'log-level': { type: 'string', default: 'warn' },
  // Which nats member the kill takes: its number (1-3), or `meta`, the one holding the JetStream
  // metadata leader at the kill (from the members' logs): the case where the services' log
  // subscriptions lose their consumers with the leader (issue 19).
  'kill-member': { type: 'string', default: '2' },
} });
const VMS = Number(values.vms);
const MOVERS = Number(values.movers);
const HOSTS = values.hosts !== undefined ? Number(values.hosts) : Math.max(1, Math.ceil(VMS / 100));
const CLI = values.cli ?? join(import.meta.dirname, '..', '..', 'cli', 'bin', 'cairn.js');
const say = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

const dir = await mkdtemp(join(tmpdir(), 'cairn-bench-scale-'));
const procs: ChildProcess[] = [];
const cleanup = async () => {
  const live = procs.filter((p) => p.exitCode === null && p.signalCode === null);
  // SIGTERM first: a stopping `cairn run` writes its CPU profile (--profile); SIGKILL after 30 s.
  await Promise.all(live.map((p) => new Promise<void>((resolve) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); resolve(); }, values.profile ? 30_000 : 5_000);
    p.once('exit', () => { clearTimeout(t); resolve(); });
    p.kill('SIGTERM');
  })));
  await cluster.stop().catch(() => undefined);
  if (!values.keep) await rm(dir, { recursive: true, force: true });
};
const cluster = await startNatsCluster({ dir: join(dir, 'nats'), size: 3, name: 'cairn-bench', maxPayload: 8 * 1024 * 1024 });
try {
  const nats = cluster.url;
  const env = {
    ...process.env, CAIRN_NATS_URL: nats, CAIRN_SITE: 'bench', CAIRN_REPO_PASSPHRASE: 'bench-scale', CAIRN_LOG_LEVEL: values['log-level'],
    CAIRN_SIMULATED_HYPERVISOR: '1', CAIRN_CONFIG: join(dir, 'cairn.yaml'), CAIRN_FILE_INDEX: '0',
    // Every process counts its garbage collections (gc-count.mjs) into the run's gc directory.
    CAIRN_BENCH_GC_DIR: join(dir, 'gc'),
    NODE_OPTIONS: [process.env['NODE_OPTIONS'] ?? '', `--import=${pathToFileURL(join(import.meta.dirname, 'gc-count.mjs')).href}`,
      ...(values.profile ? [`--cpu-prof --cpu-prof-dir=${values.profile}`] : [])].join(' ').trim(),
  };
  await mkdir(env.CAIRN_BENCH_GC_DIR, { recursive: true });
  await writeFile(env.CAIRN_CONFIG, `site: bench\nconcurrency:\n  maxJobsPerHost: ${Number(values['max-jobs-per-host'])}\n`);
  const names = new Map<ChildProcess, string>();
  const cpuSnapshot = async () => {
    const cpuOf = async (pid: number | undefined) => {
      const f = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ');
      return f ? (Number(f[11]) + Number(f[12])) / 100 : undefined;
    };
    const out: Record<string, number> = {};
    for (const p of procs) { const c = p.exitCode === null && p.signalCode === null ? await cpuOf(p.pid) : undefined; if (c !== undefined) out[names.get(p)!] = c; }
    for (const [i, m] of cluster.members.entries()) { const c = await cpuOf(m.pid); if (c !== undefined) out[`nats-${i + 1}`] = c; }
    return out;
  };
  // Read and write system calls of each process so far (/proc/<pid>/io: syscr, syscw), and their
  // bytes (rchar, wchar): socket and file I/O alike, so a change in how often a process writes
  // to NATS, or in how much a data mover reads over NBD, shows here.
  const ioSnapshot = async () => {
    const ioOf = async (pid: number | undefined) => {
      const t = await readFile(`/proc/${pid}/io`, 'utf8').catch(() => '');
      const r = /syscr: (\d+)/.exec(t)?.[1];
      const w = /syscw: (\d+)/.exec(t)?.[1];
      const rb = Number(/rchar: (\d+)/.exec(t)?.[1] ?? 0);
      const wb = Number(/wchar: (\d+)/.exec(t)?.[1] ?? 0);
      return r && w ? { reads: Number(r), writes: Number(w), readBytes: rb, writeBytes: wb } : undefined;
    };
    const out: Record<string, { reads: number; writes: number; readBytes: number; writeBytes: number }> = {};
    for (const p of procs) { const c = p.exitCode === null && p.signalCode === null ? await ioOf(p.pid) : undefined; if (c) out[names.get(p)!] = c; }
    for (const [i, m] of cluster.members.entries()) { const c = await ioOf(m.pid); if (c) out[`nats-${i + 1}`] = c; }
    return out;
  };
  // Each `cairn run` process's garbage collections so far (main thread): gc-count.mjs writes them when sent SIGUSR2.
  type GcCounts = { scavenge: number; markCompact: number; incremental: number; weak: number; ms: number };
  const gcSnapshot = async () => {
    const out: Record<string, GcCounts> = {};
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGUSR2');
    await new Promise((r) => setTimeout(r, 500));
    for (const p of procs) {
      const c = await readFile(join(env.CAIRN_BENCH_GC_DIR, `${p.pid}.json`), 'utf8').then((t) => JSON.parse(t) as GcCounts, () => undefined);
      if (c) out[names.get(p)!] = c;
    }
    return out;
  };
  // A data mover's CPU split by thread (its main thread, the chunk workers, libuv's pool that runs
  // the file operations and their fsyncs, V8's helpers), user and system seconds, by thread name.
  const threadSnapshot = async () => {
    const out: Record<string, Record<string, { user: number; system: number }>> = {};
    for (const p of procs) {
      const name = names.get(p)!;
      if (!name.startsWith('mover-') || p.exitCode !== null || p.signalCode !== null) continue;
      const byThread: Record<string, { user: number; system: number }> = {};
      for (const tid of await readdir(`/proc/${p.pid}/task`).catch(() => [] as string[])) {
        const stat = await readFile(`/proc/${p.pid}/task/${tid}/stat`, 'utf8').catch(() => '');
        const comm = /\((.*)\)/.exec(stat)?.[1] ?? '?';
        const f = stat.split(') ')[1]?.split(' ');
        if (!f) continue;
        const kind = tid === String(p.pid) ? 'main' : comm;
        const t = (byThread[kind] ??= { user: 0, system: 0 });
        t.user += Number(f[11]) / 100;
        t.system += Number(f[12]) / 100;
      }
      out[name] = byThread;
    }
    return out;
  };
  const run = (name: string, args: string[]) => {
    const p = spawn(process.execPath, [CLI, '--data', join(dir, name), ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(p);
    names.set(p, name);
    // Its log (stdout) to a file of the run's directory: what a service did around the kills.
    const logFile = createWriteStream(join(dir, `${name}.log`));
    return new Promise<ChildProcess>((resolve, reject) => {
      let out: string | undefined = '';
      p.stdout!.setEncoding('utf8').on('data', (d: string) => {
        logFile.write(d);
        if (out === undefined) return;
        out += d;
        if (/ running \(site /.test(out)) { out = undefined; resolve(p); }
      });
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
    run('coordinator', ['run', 'snapshot-coordinator', '--simulated', String(VMS), ...(HOSTS > 1 ? ['--simulated-hosts', String(HOSTS)] : [])]),
  ]);
  const movers = await Promise.all(Array.from({ length: MOVERS }, (_, i) => run(`mover-${i + 1}`, ['run', 'data-mover', '--repo', join(dir, 'repository'), '--ack-wait-ms', '10000', '--transfers', String(values.transfers)])));
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
  // The movers' scheduled verify of the repository (one per day, its first round 60 s after a
  // mover starts) is done before the jobs, as it is in a 10,000-VM run with policies (the due
  // minute comes later): otherwise it lands in the measured phase at a different moment each
  // run, and the mover that wins it reads every chunk written so far once its transfers pause
  // (seen as 3.7-5.9 ms per job for two movers and 16-25 for the third at 600 VMs). Its cost is
  // per day and repository, not per job.
  const verifyWaitStart = Date.now();
  let verifiedBeforeJobs = false;
  while (!verifiedBeforeJobs && Date.now() - verifyWaitStart < 120_000) {
    for await (const r of log.readAll({ category: 'verify' })) if (r.event.type === 'VerifyCompleted') verifiedBeforeJobs = true;
    if (!verifiedBeforeJobs) await new Promise((r) => setTimeout(r, 2000));
  }
  say(verifiedBeforeJobs ? `the movers' scheduled verify ran before the jobs (waited ${((Date.now() - verifyWaitStart) / 1000).toFixed(0)} s)` : 'no scheduled verify seen within 120 s: the jobs start anyway');
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
  // Requests (or policy creations) in flight: a few hundred at once.
  const window = 200;
  const inflight = new Set<Promise<unknown>>();
  const pipeline = async (n: number, one: (i: number) => Promise<unknown>, onEach?: () => Promise<void>) => {
    for (let i = 0; i < n; i++) {
      const p = one(i).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= window) await Promise.race(inflight);
      await onEach?.();
    }
    await Promise.all(inflight);
  };
  let dueAt: number | undefined;
  if (values.policies) {
    // One policy per VM (its selector: the VM's name), every schedule due at the same minute:
    // far enough ahead that all of them exist by then (the scheduler does not run slots that
    // came due before a policy was created).
    const created0 = Date.now();
    dueAt = Math.ceil((created0 + 45_000 + VMS * Number(values['policy-ms'])) / 60_000) * 60_000;
    const due = new Date(dueAt);
    const cron = `${due.getUTCMinutes()} ${due.getUTCHours()} * * *`;
    say(`creating ${VMS} policies, cron "${cron}" UTC (due ${due.toISOString().slice(11, 19)})`);
    let created = 0;
    await pipeline(VMS, (i) => bus.send('scheduler', 'CreatePolicy', {
      name: `bench-${i + 1}`, selector: { names: [simulatedVmName(i, VMS)] }, schedule: { cron, timezone: 'UTC' },
      retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 1 }, repository: 'default', keyRef: 'default', priority: 0, fileIndex: false,
    }, { idempotencyKey: `bench-policy-${i}` }).then(() => { created++; }, (e: unknown) => say(`policy ${i}: ${(e as Error).message}`)));
    say(`${created} policies created in ${((Date.now() - created0) / 1000).toFixed(1)} s`);
    if (created !== VMS) throw new Error(`only ${created} of ${VMS} policies were created`);
    if (Date.now() >= dueAt) throw new Error(`the policies were created after their due minute: run again with a larger --policy-ms (now ${values['policy-ms']})`);
    say(`waiting ${((dueAt - Date.now()) / 1000).toFixed(0)} s for the due minute`);
    await new Promise((r) => setTimeout(r, dueAt! - Date.now()));
  }
  const counter = values['count-subjects'] ? countSubjects(nc) : undefined;
  // CPU seconds of each process when the jobs begin: what they spend on the jobs is the difference.
  const cpuAtStart = await cpuSnapshot();
  const threadsAtStart = await threadSnapshot();
  const gcAtStart = await gcSnapshot();
  const ioAtStart = await ioSnapshot();
  const start = dueAt ?? Date.now();
  let sent = 0;
  let killed = false;
  let killedAt: number | undefined;
  let killedMember = 2;
  const kill = async () => {
    killed = true;
    killedAt = Date.now();
    const index = values['kill-member'] === 'meta' ? await jetStreamMetaLeader(cluster) ?? 1 : Number(values['kill-member']) - 1;
    killedMember = index + 1;
    const member = cluster.members[index]!;
    say(`SIGKILL nats member ${index + 1}${values['kill-member'] === 'meta' ? ' (the metadata leader)' : ''} (pid ${member.pid}) and mover 1 (pid ${movers[0]!.pid}) at ${completedAt.size} completed`);
    await member.kill('SIGKILL');
    movers[0]!.kill('SIGKILL');
    setTimeout(() => { void member.start().then(() => say(`nats member ${index + 1} started again`)); }, 5000);
  };
  if (values.policies) {
    // The scheduler's cron requests every job: wait until it has requested all of them.
    sent = VMS;
  } else {
    await pipeline(VMS, (i) => bus.send('scheduler', 'RequestBackup', { vmId: simulatedVmName(i, VMS), mode: 'auto' }, { idempotencyKey: `bench-${i}` })
      .then((r) => { sent++; return r; }, (e: unknown) => say(`request ${i}: ${(e as Error).message}`)),
    async () => { if (!killed && completedAt.size >= VMS * Number(values['kill-at'])) await kill(); });
    say(`${sent} requests accepted in ${((Date.now() - start) / 1000).toFixed(1)} s`);
  }
  let last = -1;
  let lastMovedAt = Date.now();
  while (completedAt.size < sent) {
    if (!killed && completedAt.size >= VMS * Number(values['kill-at'])) await kill();
    if (completedAt.size !== last) { say(`${completedAt.size}/${sent} ended (${requestedAt.size} requested), load ${loadavg()[0]!.toFixed(1)}`); last = completedAt.size; lastMovedAt = Date.now(); }
    if (Date.now() - lastMovedAt > 300_000) { say('no job ended for 5 minutes: stopping here'); break; }
    await new Promise((r) => setTimeout(r, 2000));
  }
  const wallMs = Date.now() - start;
  counter?.stop();
  // CPU seconds (user + system) of each process since it started: steadier than wall time on a
  // busy machine (the killed mover's are lost with it).
  const cpu = await cpuSnapshot();
  const ioAtEnd = await ioSnapshot();
  // Of the jobs alone, per job: read / write system calls of each process (the killed nats member from its restart).
  const syscallsPerJob: Record<string, string> = {};
  // And their bytes, KiB per job: read / written.
  const ioKiBPerJob: Record<string, string> = {};
  for (const [name, c] of Object.entries(ioAtEnd)) {
    const none = { reads: 0, writes: 0, readBytes: 0, writeBytes: 0 };
    const b = name === `nats-${killedMember}` && killed ? none : ioAtStart[name] ?? none;
    syscallsPerJob[name] = `${((c.reads - b.reads) / Math.max(1, sent)).toFixed(1)} / ${((c.writes - b.writes) / Math.max(1, sent)).toFixed(1)}`;
    ioKiBPerJob[name] = `${((c.readBytes - b.readBytes) / 1024 / Math.max(1, sent)).toFixed(0)} / ${((c.writeBytes - b.writeBytes) / 1024 / Math.max(1, sent)).toFixed(0)}`;
  }
  // Of the jobs alone, per job (ms), for each mover thread kind: user / system.
  const threadsAtEnd = await threadSnapshot();
  const gcAtEnd = await gcSnapshot();
  // Of the jobs alone, per process: mark-compacts / scavenges, and the main thread's GC pause ms per job.
  const gcOfJobs: Record<string, string> = {};
  for (const [name, c] of Object.entries(gcAtEnd)) {
    const b = gcAtStart[name] ?? { scavenge: 0, markCompact: 0, incremental: 0, weak: 0, ms: 0 };
    gcOfJobs[name] = `${c.markCompact - b.markCompact} / ${c.scavenge - b.scavenge}, ${((c.ms - b.ms) / Math.max(1, sent)).toFixed(2)} ms/job`;
  }
  const moverThreadsMsPerJob: Record<string, Record<string, string>> = {};
  for (const [name, byThread] of Object.entries(threadsAtEnd)) {
    moverThreadsMsPerJob[name] = Object.fromEntries(Object.entries(byThread).map(([kind, t]) => {
      const b = threadsAtStart[name]?.[kind] ?? { user: 0, system: 0 };
      const per = (x: number) => ((x * 1000) / Math.max(1, sent)).toFixed(1);
      return [kind, `${per(t.user - b.user)} / ${per(t.system - b.system)}`];
    }));
  }
  // Of the jobs alone, per job (ms): a process restarted since (the killed nats member) counts from its restart.
  const cpuMsPerJob: Record<string, number> = {};
  for (const [name, c] of Object.entries(cpu)) {
    const before = name === `nats-${killedMember}` && killed ? 0 : cpuAtStart[name] ?? 0;
    cpuMsPerJob[name] = +((c - before) * 1000 / Math.max(1, sent)).toFixed(1);
  }
  cpuMsPerJob['total'] = +Object.values(cpuMsPerJob).reduce((a, b) => a + b, 0).toFixed(1);
  await sub.stop();

  // Exactly once, from the log: per job one RestorePointCommitted and one JobCompleted.
  const perJob = new Map<string, { committed: number; completed: number; failed: number; started: number }>();
  const eventsOf = new Map<string, string[]>();
  const reasons = new Set<string>();
  // Per second of the run (by each event's own time), how many of each job event: a stall after
  // the kills shows as the step whose events stop (printed around the kill below).
  const TIMELINE = ['JobStarted', 'SnapshotTaken', 'TransferQueued', 'TransferStarted', 'RestorePointCommitted', 'SnapshotReleased', 'JobCompleted'] as const;
  const timeline = new Map<number, Record<string, number>>();
  for await (const r of log.readAll({ category: 'job' })) {
    if (r.position <= head) continue;
    if ((TIMELINE as readonly string[]).includes(r.event.type)) {
      const sec = Math.floor((Date.parse(r.event.time) - start) / 1000);
      const row = timeline.get(sec) ?? {};
      row[r.event.type] = (row[r.event.type] ?? 0) + 1;
      timeline.set(sec, row);
    }
    const j = perJob.get(r.event.correlationId) ?? { committed: 0, completed: 0, failed: 0, started: 0 };
    if (r.event.type === 'RestorePointCommitted') j.committed++;
    if (r.event.type === 'JobCompleted') j.completed++;
    if (r.event.type === 'JobFailed') { j.failed++; if (reasons.size < 5) reasons.add(JSON.stringify(r.event.data).slice(0, 300)); }
    if (r.event.type === 'TransferStarted') j.started++;
    perJob.set(r.event.correlationId, j);
    // Kept for the report of a job that broke exactly-once.
    const line = `${r.event.type} id=${r.event.id} stream=${r.event.streamId} rev=${r.revision} pos=${r.position} at=${r.event.time} by=${r.event.actor.id}`;
    eventsOf.set(r.event.correlationId, [...(eventsOf.get(r.event.correlationId) ?? []), line]);
  }
  for (const [id, j] of perJob) {
    if (j.completed > 1 || j.committed > 1) say(`job ${id} not exactly once:\n  ${eventsOf.get(id)!.join('\n  ')}`);
  }
  const jobs = [...perJob.values()];
  // The timeline around the kill, one line a second: its effect is read here, not guessed.
  const killSec = killedAt !== undefined ? Math.floor((killedAt - start) / 1000) : undefined;
  if (killSec !== undefined) {
    const lastSec = Math.max(...timeline.keys());
    const lines = [`sec  ${['started', 'snapshot', 'queued', 'transfer', 'committed', 'released', 'completed'].map((h) => h.padStart(10)).join(' ')}`];
    for (let sec = Math.max(0, killSec - 5); sec <= Math.min(lastSec, killSec + 75); sec++) {
      const row = timeline.get(sec) ?? {};
      lines.push(`${String(sec - killSec).padStart(4)} ${TIMELINE.map((t) => String(row[t] ?? 0).padStart(10)).join(' ')}`);
    }
    say(`job events per second around the kill (sec 0 = the kill, ${killSec} s after the start):\n  ${lines.join('\n  ')}`);
  }
  // JobCompleted per 10 s from the start (the whole run's rate).
  const per10: number[] = [];
  for (const [sec, row] of timeline) per10[Math.floor(sec / 10)] = (per10[Math.floor(sec / 10)] ?? 0) + (row['JobCompleted'] ?? 0);
  say(`JobCompleted per 10 s from the start: ${Array.from(per10, (n) => n ?? 0).join(' ')}`);
  // Jobs ended in the 60 s after the kill (at the run's rate, ~60 x jobs/s; a stall shows as fewer).
  let after60 = 0;
  if (killSec !== undefined) for (const [sec, row] of timeline) if (sec >= killSec && sec < killSec + 60) after60 += row['JobCompleted'] ?? 0;
  // The slowest job by its own events (due minute or request → JobCompleted), and its events: a
  // long tail is read from them (a redelivery, a step's backoff), not from the wall time, which
  // also holds how late this process saw the last event.
  const slowest = [...completedAt].sort((a, b) => b[1] - a[1])[0];
  if (slowest) say(`slowest job ${slowest[0]}: ended ${((slowest[1] - (dueAt ?? requestedAt.get(slowest[0]) ?? slowest[1])) / 1000).toFixed(1)} s after its ${dueAt ? 'due minute' : 'request'}:\n  ${(eventsOf.get(slowest[0]) ?? []).join('\n  ')}`);
  // What the run appended (JetStream appends), per job and by category.
  const byCategory: Record<string, number> = {};
  let appended = 0;
  for await (const r of log.readAll({ fromPosition: head })) {
    appended++;
    const c = r.event.streamId.split('-')[0]!;
    byCategory[c] = (byCategory[c] ?? 0) + 1;
  }
  const latencies = [...completedAt].map(([id, at]) => at - (dueAt ?? requestedAt.get(id) ?? at)).sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
  const result = {
    vms: VMS, movers: MOVERS, jobs: jobs.length, wallSeconds: +(wallMs / 1000).toFixed(1), jobsPerSecond: +(jobs.length / (wallMs / 1000)).toFixed(1),
    p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: latencies.at(-1) ?? 0,
    completedOnce: jobs.filter((j) => j.completed === 1 && j.committed === 1).length,
    failed: jobs.filter((j) => j.failed > 0).length,
    committedTwice: jobs.filter((j) => j.committed > 1).length, completedTwice: jobs.filter((j) => j.completed > 1).length,
    redelivered: jobs.filter((j) => j.started > 1).length,
    cpuSeconds: cpu, cpuMsPerJob, transfersPerMover: Number(values.transfers),
    appendsPerJob: +(appended / Math.max(1, jobs.length)).toFixed(2), appendsByCategory: byCategory,
    ...(values.policies ? { policies: VMS, requestedBySchedule: requestedAt.size } : {}), hosts: HOSTS, verifiedBeforeJobs, moverThreadsMsPerJob, gcOfJobs, syscallsPerJob, ioKiBPerJob,
    ...(killSec !== undefined ? { killedAtSecond: killSec, completedIn60sAfterKill: after60 } : {}),
    load: loadavg().map((x) => +x.toFixed(1)),
    ...(reasons.size ? { failureReasons: [...reasons] } : {}),
    ...(counter ? { natsMessagesPerJob: counter.perJob(jobs.length) } : {}),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  await log.close();
  await nc.close();
} finally {
  await cleanup();
}

/**
 * Messages on every subject but replies (`_INBOX.`), grouped: JetStream API calls by their
 * first four tokens (`$JS.API.STREAM.MSG`, `$JS.API.CONSUMER.CREATE`, ...), acks as `$JS.ACK`,
 * event publishes by category (`cairn.<site>.evt.<category>`), commands by their first four,
 * KV writes by bucket, progress together. A consumer's delivery is seen under the event's own
 * subject (its reply subject is the pull's inbox), so an event category's count is its appends
 * plus one per subscription that received it (this process's `job` subscription among them).
 */
function countSubjects(nc: import('@nats-io/transport-node').NatsConnection) {
  const counts = new Map<string, number>();
  const sub = nc.subscribe('>', {
    callback: (_e, m) => {
      const t = m.subject.split('.');
      if (t[0] === '_INBOX') return;
      // Subjects that carry an id (a job's progress, a KV key) are counted together: per key they round to 0.
      // A message get is told apart by what it asks for: a subject's last message (a head read, by
      // the category of the subject) or one by sequence.
      let get = '';
      if (t[0] === '$JS' && t[2] === 'STREAM' && t[3] === 'MSG' && t[4] === 'GET') {
        const req = new TextDecoder().decode(m.data);
        const category = /"last_by_subj":"[^"]*?\.evt\.([^."]+)/.exec(req)?.[1];
        get = category ? ` last_by_subj ${category}` : req.includes('last_by_subj') ? ' last_by_subj' : ' seq';
      }
      const key = t[0] === '$JS' && t[1] === 'ACK' ? '$JS.ACK' : t[0] === '$JS' ? t.slice(0, 4).join('.') + get : t[0] === '$KV' ? t.slice(0, 3).join('.')
        : t[2] === 'progress' ? t.slice(0, 3).join('.') : t.slice(0, 4).join('.');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    },
  });
  return {
    stop: () => sub.unsubscribe(),
    perJob: (jobs: number) => Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, +(n / Math.max(1, jobs)).toFixed(2)])),
  };
}
