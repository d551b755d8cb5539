// Instant recovery on QEMU (stream `instant-<instantId>`): a restore point run as a new VM within
// seconds, straight from the repository. Each disk is served read-only over NBD by an exporter
// process of the session's own (detached from the data mover, so a mover restart does not touch
// the VM's I/O); QEMU keeps the guest's writes in a local qcow2 overlay per disk, the overlay's
// backing being the export. `finish` mirrors the disks to local images while the VM runs
// (instant-mirror.ts in @cairn/hypervisor) and closes the export; `discard` stops the VM and
// removes the exporter, overlays, sockets and the session's directory. Any data mover on the
// host can carry out a step: what it needs is in the stream and the session's directory.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Actor, CommandPayloadMap, CommandResultMap, EventDataMap, InstantStep, InstantView, KnownEvent, TraceContext } from '@cairn/contracts';
import { fold, handleCommand, type EventLog, type EventSubscription } from '@cairn/eventlog';
import { instantDecider, InstantCommandRejected, instantView, isInstantOver, type InstantCommand, type InstantState } from '@cairn/jobs';
import { mirrorAndPivot, newMac, QmpClient, qemuCommandLine, type LibvirtVmConfig, type QemuLaunchDisk, type QemuVmConfig } from '@cairn/hypervisor';
import { RestoreRefused, type DataMover, type MoverLogger } from './data-mover.service.ts';
import { supervisedExporter } from './exporter-supervisor.ts';

const run = promisify(execFile);
type Plan = EventDataMap['InstantRecoveryStarted'];

/**
 * How the data mover starts an exporter: the program, its arguments and environment (the
 * repository's key). `shared`: the socket is made connectable by any user (a libvirt session:
 * QEMU runs as libvirt's user; the socket's directory is what keeps others out).
 */
export type ExporterLauncher = (o: { readonly repository: string; readonly restorePointId: string; readonly disks: readonly string[]; readonly socket: string; readonly shared?: boolean }) =>
  { readonly command: string; readonly args: readonly string[]; readonly env: NodeJS.ProcessEnv } | undefined;

export interface InstantConfig {
  readonly site: string;
  readonly actor: Actor;
  readonly exporter?: ExporterLauncher;
  /** libvirt sessions: the snapshot coordinator's ManageInstantDomain (it holds the libvirt connection). */
  readonly libvirtDomain?: (instantId: string, act: CommandPayloadMap['ManageInstantDomain']['act']) => Promise<CommandResultMap['ManageInstantDomain']>;
  /** Live mirror progress, not logged (`cairn.<site>.progress.<instantId>`). */
  readonly publishProgress: (instantId: string, p: { bytesDone: number; bytesPlanned: number; disk: string; worker: string; at: string }) => void;
}

const files = (dir: string) => ({
  config: join(dir, 'vm.json'), script: join(dir, 'start.sh'), qmp: join(dir, 'qmp.sock'), serial: join(dir, 'serial.log'), pid: join(dir, 'qemu.pid'),
  exportSocket: join(dir, 'export.sock'), exporterLog: join(dir, 'export.log'), exporterServed: join(dir, 'export.served'), libvirtSocket: join(dir, 'export', 'export.sock'), progress: join(dir, 'mirror-progress.json'),
});

const exists = (path: string) => stat(path).then(() => true, () => false);

/** The pid when that process is alive and is this session's (its command line names the session's directory). */
async function sessionProcess(pid: number | undefined, dir: string): Promise<number | undefined> {
  if (!pid) return undefined;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmdline.includes(dir) ? pid : undefined;
}

/** A process of this process group still runs (zombies, which nobody may reap here, do not count). */
async function groupAlive(pgid: number): Promise<boolean> {
  for (const entry of await readdir('/proc').catch(() => [])) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}

/** Stops the exporter's process group (its supervisor and the exporter itself). */
async function stopExporterGroup(pgid: number, graceMs = 10_000): Promise<void> {
  try { process.kill(-pgid, 'SIGTERM'); } catch { return; }
  const until = Date.now() + graceMs;
  while (await groupAlive(pgid)) {
    if (Date.now() > until) { try { process.kill(-pgid, 'SIGKILL'); } catch { /* gone */ } }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stopProcess(pid: number, dir: string, graceMs = 10_000): Promise<void> {
  try { process.kill(pid, 'SIGTERM'); } catch { return; }
  const until = Date.now() + graceMs;
  while (await sessionProcess(pid, dir)) {
    if (Date.now() > until) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves once something accepts connections on the unix socket. */
async function waitForSocket(path: string, timeoutMs: number, alive: () => boolean, what: () => Promise<string>): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(path);
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`the exporter ended before serving: ${await what()}`);
    if (Date.now() > until) throw new Error(`the exporter did not serve ${path} within ${timeoutMs / 1000} s: ${await what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export class InstantRecoveries {
  /** Every session, folded from the log (a live subscription): what `list` answers from. */
  private readonly sessions = new Map<string, InstantState>();
  private subscription: EventSubscription | undefined;
  private readonly mirrors = new Set<Promise<void>>();

  constructor(
    private readonly config: InstantConfig,
    private readonly log: EventLog,
    private readonly mover: DataMover,
    private readonly logger: MoverLogger,
  ) {}

  /** Follows the log's `instant` streams so `list` knows every session. */
  follow(): void {
    const sub = this.log.subscribe({ from: 'start', category: 'instant', fewStreams: true, onInvalid: () => undefined });
    this.subscription = sub;
    void (async () => {
      for await (const r of sub) {
        const id = r.event.streamId.slice('instant-'.length);
        this.sessions.set(id, instantDecider.evolve(this.sessions.get(id) ?? instantDecider.initialState(), r.event));
      }
    })().catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'instant recovery sessions no longer followed'));
  }

  async close(): Promise<void> {
    await this.subscription?.stop();
  }

  private async decide(instantId: string, command: InstantCommand, actor: Actor, causationId: string | null, trace?: TraceContext) {
    try {
      return await handleCommand(this.log, `instant-${instantId}`, instantDecider, command, {
        meta: { site: this.config.site, actor, correlationId: instantId, causationId, ...(trace ? { trace } : {}) },
      });
    } catch (e) {
      if (e instanceof InstantCommandRejected) throw new RestoreRefused('conflict', e.message);
      throw e;
    }
  }

  private async state(instantId: string): Promise<InstantState> {
    const events: KnownEvent[] = [];
    for await (const r of this.log.readStream(`instant-${instantId}`)) events.push(r.event);
    return fold(instantDecider, events);
  }

  private async known(instantId: string): Promise<InstantState & { plan: Plan }> {
    const st = await this.state(instantId);
    if (!st.plan) throw new RestoreRefused('not_found', `no instant recovery ${instantId}`);
    return st as InstantState & { plan: Plan };
  }

  /** Starts a session: plan, overlays, exporter, VM (with `start`). Answers once it serves. */
  async start(cmd: CommandPayloadMap['StartInstant'], actor: Actor, ownTarget: boolean, causationId: string, trace?: TraceContext): Promise<{ instantId: string; view: InstantView }> {
    const begun = Date.now();
    const instantId = cmd.instantId ?? randomUUID();
    const before = await this.state(instantId);
    if (before.plan) {
      if (before.plan.restorePointId !== cmd.restorePointId || before.plan.vmName !== cmd.vmName) throw new RestoreRefused('conflict', `instant recovery ${instantId} exists for another request`);
      return { instantId, view: await this.live(before) }; // a retried command
    }
    const repository = cmd.repository ?? 'default';
    if (!this.config.exporter) throw new RestoreRefused('invalid_command', 'this data mover cannot serve instant recovery (it was started without an exporter: run it with `cairn run data-mover` or `cairn up`)');
    const { source, manifest } = await this.mover.restoreSource(cmd.restorePointId, repository);
    if (source !== 'local') throw new RestoreRefused('invalid_command', `restore point ${cmd.restorePointId} is a replica of another site: restore it with --vm (instant recovery serves this site's repository only)`);
    const config = (manifest.vm.config as { hypervisor?: QemuVmConfig | LibvirtVmConfig } | undefined)?.hypervisor;
    if (cmd.host) {
      if (config?.kind !== 'libvirt') throw new RestoreRefused('invalid_command', `restore point ${cmd.restorePointId} holds no libvirt domain XML (${config?.kind ? `its VM ran under ${config.kind}: recover it without --host` : 'made before configurations were recorded'})`);
      if (!this.config.libvirtDomain) throw new RestoreRefused('invalid_command', 'this data mover cannot reach the snapshot coordinator to define a libvirt domain');
    } else if (config?.kind !== 'qemu') {
      throw new RestoreRefused('invalid_command', config?.kind === 'libvirt'
        ? `restore point ${cmd.restorePointId} is of a libvirt domain: name the libvirt hypervisor to run it on with --host`
        : `restore point ${cmd.restorePointId} holds no QEMU configuration of its VM (made before configurations were recorded, or by another hypervisor); restore its disks with --to`);
    }
    const dir = await this.mover.checkRestoreTarget(join(cmd.storage ?? this.mover.defaultVmStorage(), cmd.vmName), ownTarget);
    if (await exists(dir)) throw new RestoreRefused('conflict', `${dir} exists: a VM named ${cmd.vmName} was restored there before; choose another --vm name`);
    const plan: Plan = {
      instantId, restorePointId: cmd.restorePointId, repository, vmName: cmd.vmName, dir, worker: this.mover.worker,
      uuid: randomUUID(),
      macs: config.kind === 'qemu' ? Object.fromEntries(config.nics.map((n) => [n.id, newMac()])) : Object.fromEntries(config.summary.nics.map((_, i) => [`nic${i}`, newMac()])),
      start: cmd.start,
      disks: manifest.disks.map((d, i) => ({ disk: d.name, sizeBytes: d.sizeBytes, exportName: d.name, overlay: join(dir, `${d.name}.overlay.qcow2`), node: `instant${i}` })),
      config: config as unknown as Plan['config'],
      ...(cmd.host ? { libvirt: { host: cmd.host, exportSocket: files(dir).libvirtSocket, serialLog: files(dir).serial } } : {}),
    };
    const started = await this.decide(instantId, { kind: 'start', plan }, actor, causationId, trace);
    let cause = started.events.at(-1)?.id ?? null;
    const f = files(dir);
    let exporterPid: number | undefined;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      if (plan.libvirt) return await this.startLibvirt(plan, f, begun, cause, (pid) => { exporterPid = pid; });
      for (const d of plan.disks) await run('qemu-img', ['create', '-q', '-f', 'qcow2', d.overlay, String(d.sizeBytes)]);
      exporterPid = await this.startExporter(plan, f);
      await this.writeStartFiles(plan, plan.disks.map((d) => ({ name: d.disk, file: d.overlay, format: 'qcow2' as const, node: d.node, nbd: { socket: f.exportSocket, exportName: d.exportName } })));
      let pid: number | undefined;
      if (cmd.start) {
        await run('/bin/sh', [f.script], { timeout: 120_000 }).catch((e: Error & { stderr?: string }) => {
          throw new Error(`the VM did not start: ${(e.stderr ?? e.message).trim().slice(0, 2000)}`);
        });
        pid = await sessionProcess(Number((await readFile(f.pid, 'utf8')).trim()), dir);
        if (!pid) throw new Error('the VM started and ended at once; see its console');
      }
      const serving = { exporterPid, exportSocket: f.exportSocket, started: pid !== undefined, ...(pid ? { pid } : {}), qmpSocket: f.qmp, serialLog: f.serial, startScript: f.script, durationMs: Date.now() - begun };
      const served = await this.decide(instantId, { kind: 'serve', serving }, this.config.actor, cause);
      cause = served.events.at(-1)?.id ?? cause;
      this.logger.info({ instantId, restorePointId: cmd.restorePointId, dir, exporterPid, pid, durationMs: serving.durationMs }, 'instant recovery serving');
      return { instantId, view: await this.live(served.state) };
    } catch (e) {
      const reason = (e as Error).message;
      this.logger.warn({ instantId, err: reason }, 'instant recovery did not start; cleaning up');
      const removed = await this.cleanUp(plan, exporterPid).catch(() => []);
      await this.decide(instantId, { kind: 'fail', step: 'serve', reason: `${reason} (removed: ${removed.join(', ') || 'nothing'})`, vmRunning: false }, this.config.actor, cause).catch(() => undefined);
      throw new RestoreRefused('invalid_command', `instant recovery ${instantId} did not start: ${reason}`);
    }
  }

  /**
   * libvirt: the export's socket in a directory of its own (the coordinator lets QEMU's group in),
   * overlays that name their NBD backing, then the domain defined (and started) by the coordinator.
   */
  private async startLibvirt(plan: Plan, f: ReturnType<typeof files>, begun: number, cause: string | null, exporter: (pid: number) => void): Promise<{ instantId: string; view: InstantView }> {
    const lv = plan.libvirt!;
    await mkdir(join(plan.dir, 'export'), { mode: 0o700 });
    for (const d of plan.disks) {
      const backing = `nbd+unix:///${d.exportName}?socket=${lv.exportSocket}`;
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', 'raw', d.overlay, String(d.sizeBytes)]);
    }
    const exporterPid = await this.startExporter(plan, { ...f, exportSocket: lv.exportSocket }, true);
    exporter(exporterPid);
    const defined = await this.config.libvirtDomain!(plan.instantId, 'define');
    const serving = {
      exporterPid, exportSocket: lv.exportSocket, started: defined.running, serialLog: lv.serialLog, durationMs: Date.now() - begun,
      libvirt: { host: defined.host, domain: defined.domain, uuid: defined.uuid ?? plan.uuid, macs: defined.macs ?? [] },
    };
    const served = await this.decide(plan.instantId, { kind: 'serve', serving }, this.config.actor, cause);
    this.logger.info({ instantId: plan.instantId, restorePointId: plan.restorePointId, host: lv.host, domain: defined.domain, exporterPid, durationMs: serving.durationMs }, 'instant recovery serving (libvirt)');
    return { instantId: plan.instantId, view: await this.live(served.state) };
  }

  private async startExporter(plan: Plan, f: ReturnType<typeof files>, shared = false): Promise<number> {
    const { exportSocket: socket, exporterLog: logFile } = f;
    const launch = this.config.exporter?.({ repository: plan.repository, restorePointId: plan.restorePointId, disks: plan.disks.map((d) => d.disk), socket, ...(shared ? { shared } : {}) });
    if (!launch) throw new Error(`no exporter for repository ${plan.repository}`);
    const log = await open(logFile, 'a', 0o600);
    try {
      // Its own process group: a data mover that dies or restarts leaves it serving; a supervisor
      // (exporter-supervisor.ts) restarts it when it dies once it has served.
      const supervised = supervisedExporter(f.exporterServed, launch.command, launch.args);
      const child = spawn(supervised.command, supervised.args, { detached: true, stdio: ['ignore', log.fd, log.fd], env: launch.env });
      const pid = child.pid;
      if (!pid) throw new Error(`cannot start the exporter ${launch.command}`);
      let ended = false;
      child.once('exit', () => { ended = true; });
      child.unref();
      try {
        await waitForSocket(socket, 120_000, () => !ended, async () => (await readFile(logFile, 'utf8').catch(() => '')).trim().slice(-2000));
        await writeFile(f.exporterServed, `${new Date().toISOString()}\n`, { mode: 0o600 });
      } catch (e) {
        await stopExporterGroup(pid); // nothing left serving, nor retrying
        throw e;
      }
      return pid;
    } finally {
      await log.close();
    }
  }

  /** vm.json and start.sh of the session's VM (its disks: the overlays, or the local images after a finish). */
  private async writeStartFiles(plan: Plan, disks: QemuLaunchDisk[]): Promise<void> {
    const f = files(plan.dir);
    const argv = qemuCommandLine(plan.config as unknown as QemuVmConfig, { name: plan.vmName, uuid: plan.uuid, macs: plan.macs, qmpSocket: f.qmp, serialLog: f.serial, pidFile: f.pid, disks });
    const quote = (a: string) => (/^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
    await writeFile(f.config, JSON.stringify({ name: plan.vmName, uuid: plan.uuid, macs: plan.macs, instantId: plan.instantId, config: plan.config, disks }, null, 2) + '\n', { mode: 0o600 });
    await writeFile(f.script, `#!/bin/sh\n# Starts the VM ${plan.vmName} (Cairn instant recovery ${plan.instantId}; network devices are not connected to any network).\nexec ${argv.map(quote).join(' ')}\n`, { mode: 0o700 });
  }

  /** Stops the VM and the exporter and removes the session's directory; returns what went. */
  private async cleanUp(plan: Plan, exporterPid: number | undefined): Promise<string[]> {
    const f = files(plan.dir);
    const removed: string[] = [];
    let domainError: Error | undefined;
    if (plan.libvirt) {
      // The domain first (it holds the overlays and the export's connection); the rest goes whatever happened to it.
      await this.config.libvirtDomain!(plan.instantId, 'remove').then((r) => { removed.push(...r.removed ?? []); }, (e: unknown) => { domainError = e as Error; });
    }
    const vmPid = await sessionProcess(Number((await readFile(f.pid, 'utf8').catch(() => '')).trim()), plan.dir);
    if (vmPid) {
      // SIGTERM: QEMU quits at once (the guest's writes were the overlay's, which goes too).
      await stopProcess(vmPid, plan.dir, 5_000);
      removed.push(`VM process ${vmPid}`);
    }
    const exporter = await sessionProcess(exporterPid, plan.dir);
    if (exporter) { await stopExporterGroup(exporter); removed.push(`exporter process ${exporter}`); }
    for (const d of plan.disks) if (await exists(d.overlay)) removed.push(d.overlay);
    for (const s of [f.exportSocket, f.libvirtSocket, f.qmp]) if (await exists(s)) removed.push(s);
    if (await exists(plan.dir)) {
      await rm(plan.dir, { recursive: true, force: true });
      removed.push(plan.dir);
    }
    if (domainError) throw new Error(`the libvirt domain ${plan.vmName} was not removed (${domainError.message}); removed: ${removed.join(', ') || 'nothing'}`);
    return removed;
  }

  /** Stops the VM and removes everything the session made. */
  async discard(instantId: string, actor: Actor, causationId: string, trace?: TraceContext): Promise<{ view: InstantView }> {
    const st = await this.known(instantId);
    if (st.status === 'discarded') return { view: await this.live(st) };
    // Refused while mirroring or once finished (the decider says why) before anything is touched.
    instantDecider.decide({ kind: 'discard', removed: [] }, st);
    const removed = await this.cleanUp(st.plan, st.serving?.exporterPid);
    const r = await this.decide(instantId, { kind: 'discard', removed }, actor, causationId, trace);
    this.logger.info({ instantId, removed }, 'instant recovery discarded');
    return { view: await this.live(r.state) };
  }

  /** Starts the mirror to local storage (answers at once); the pivot and the export's end follow. */
  async finish(cmd: CommandPayloadMap['FinishInstant'], actor: Actor, ownTarget: boolean, causationId: string, trace?: TraceContext): Promise<{ view: InstantView }> {
    const st = await this.known(cmd.instantId);
    if (st.status === 'finished') return { view: await this.live(st) };
    const plan = st.plan;
    if (!st.serving?.started) throw new RestoreRefused('conflict', `instant recovery ${cmd.instantId} has no running VM to mirror (${st.status}); start it with ${plan.libvirt ? `virsh start ${plan.vmName}` : files(plan.dir).script} first`);
    if (!(await this.vmRunning(st))) throw new RestoreRefused('conflict', `the VM of instant recovery ${cmd.instantId} is not running (pid ${st.serving.pid ?? '?'}): nothing to mirror; discard it`);
    const format = cmd.format ?? 'raw';
    const storage = cmd.storage ? await this.mover.checkRestoreTarget(cmd.storage, ownTarget) : plan.dir;
    const disks = plan.disks.map((d) => ({ disk: d.disk, path: join(storage, `${d.disk}.${format}`), format }));
    if (st.status !== 'mirroring') {
      for (const d of disks) if (await exists(d.path)) throw new RestoreRefused('conflict', `${d.path} exists; choose another --storage`);
    }
    const begun = Date.now();
    const r = await this.decide(cmd.instantId, { kind: 'mirror', worker: this.mover.worker, disks }, actor, causationId, trace);
    await mkdir(storage, { recursive: true, mode: 0o700 });
    const cause = r.events.at(-1)?.id ?? null;
    const job = (plan.libvirt ? this.mirrorLibvirt(plan, st.serving.exporterPid, disks, begun, cause) : this.mirror(plan, st.serving.exporterPid, disks, begun, cause))
      .catch(async (e: unknown) => {
        const reason = (e as Error).message;
        this.logger.warn({ instantId: plan.instantId, err: reason }, 'instant recovery mirror failed');
        const vmRunning = await this.vmRunning(st).catch(() => false);
        await this.fail(plan.instantId, 'mirror', reason, vmRunning, cause);
      });
    this.mirrors.add(job);
    void job.finally(() => this.mirrors.delete(job));
    return { view: await this.live(r.state) };
  }

  /** libvirt: the coordinator's block copy, followed until every disk is ready, then the pivot. */
  private async mirrorLibvirt(plan: Plan, exporterPid: number, disks: ReadonlyArray<{ disk: string; path: string; format: 'raw' | 'qcow2' }>, begun: number, cause: string | null): Promise<void> {
    const f = files(plan.dir);
    const total = plan.disks.reduce((n, d) => n + d.sizeBytes, 0);
    for (;;) {
      const r = await this.config.libvirtDomain!(plan.instantId, 'mirror');
      const copies = r.disks ?? [];
      const done = copies.reduce((n, d) => n + Math.min(d.bytesDone, d.bytesTotal), 0);
      const ready = copies.length === plan.disks.length && copies.every((d) => d.ready);
      this.config.publishProgress(plan.instantId, { disk: copies.find((d) => !d.ready)?.disk ?? plan.disks.at(-1)!.disk, bytesDone: done, bytesPlanned: total, worker: this.mover.worker, at: new Date().toISOString() });
      await writeFile(f.progress, JSON.stringify({ bytesDone: done, bytesTotal: total, ready })).catch(() => undefined);
      if (ready) break;
      await new Promise((res) => setTimeout(res, 500));
    }
    await this.config.libvirtDomain!(plan.instantId, 'pivot');
    await this.afterPivot(plan, exporterPid, disks, begun, cause);
  }

  private async mirror(plan: Plan, exporterPid: number, disks: ReadonlyArray<{ disk: string; path: string; format: 'raw' | 'qcow2' }>, begun: number, cause: string | null): Promise<void> {
    const f = files(plan.dir);
    const total = plan.disks.reduce((n, d) => n + d.sizeBytes, 0);
    let lastPublish = 0;
    const qmp = await QmpClient.connect(f.qmp);
    try {
      let before = 0;
      for (const d of plan.disks) {
        const target = disks.find((x) => x.disk === d.disk)!;
        await mirrorAndPivot(qmp, [{ node: d.node, target: target.path, format: target.format, sizeBytes: d.sizeBytes }], {
          onProgress: (p) => {
            const now = Date.now();
            if (now - lastPublish < 250 && !p.ready) return;
            lastPublish = now;
            const done = before + Math.min(p.bytesDone, d.sizeBytes);
            this.config.publishProgress(plan.instantId, { disk: d.disk, bytesDone: done, bytesPlanned: total, worker: this.mover.worker, at: new Date(now).toISOString() });
            void writeFile(f.progress, JSON.stringify({ bytesDone: done, bytesTotal: total, ready: p.ready && d === plan.disks.at(-1) })).catch(() => undefined);
          },
        });
        before += d.sizeBytes;
      }
    } finally {
      await qmp.close().catch(() => undefined);
    }
    await this.afterPivot(plan, exporterPid, disks, begun, cause);
  }

  /** The VM runs from the local images: the export, the overlays and their files go; InstantFinished. */
  private async afterPivot(plan: Plan, exporterPid: number, disks: ReadonlyArray<{ disk: string; path: string; format: 'raw' | 'qcow2' }>, begun: number, cause: string | null): Promise<void> {
    const f = files(plan.dir);
    const exporter = await sessionProcess(exporterPid, plan.dir);
    if (exporter) await stopExporterGroup(exporter);
    for (const p of [...plan.disks.map((d) => d.overlay), f.exportSocket, f.exporterLog, f.exporterServed, f.progress]) await rm(p, { force: true });
    if (plan.libvirt) await rm(join(plan.dir, 'export'), { recursive: true, force: true });
    else {
      await this.writeStartFiles(plan, plan.disks.map((d) => {
        const t = disks.find((x) => x.disk === d.disk)!;
        return { name: d.disk, file: t.path, format: t.format };
      }));
    }
    const sizes = await Promise.all(disks.map(async (d) => ({ ...d, sizeBytes: plan.disks.find((x) => x.disk === d.disk)!.sizeBytes })));
    await this.decide(plan.instantId, { kind: 'finish', disks: sizes, durationMs: Date.now() - begun }, this.config.actor, cause);
    this.logger.info({ instantId: plan.instantId, disks: disks.map((d) => d.path), durationMs: Date.now() - begun }, 'instant recovery finished: the VM runs from local disks');
  }

  /** The session's VM runs: its QEMU process, or (libvirt) the domain as the coordinator sees it. */
  private async vmRunning(st: InstantState): Promise<boolean> {
    if (!st.plan) return false;
    if (st.plan.libvirt) return st.serving?.libvirt !== undefined && !isInstantOver(st) && (await this.config.libvirtDomain!(st.plan.instantId, 'status')).running;
    return (await sessionProcess(st.serving?.pid, st.plan.dir)) !== undefined;
  }

  private async fail(instantId: string, step: InstantStep, reason: string, vmRunning: boolean, cause: string | null): Promise<void> {
    await this.decide(instantId, { kind: 'fail', step, reason, vmRunning }, this.config.actor, cause)
      .catch((e: unknown) => this.logger.warn({ instantId, err: (e as Error).message }, 'InstantFailed not recorded'));
  }

  /** The view with what only this host knows: processes alive, overlay bytes, mirror progress. */
  private async live(st: InstantState): Promise<InstantView> {
    const view = instantView(st);
    if (!view || !st.plan) throw new RestoreRefused('not_found', 'no such instant recovery');
    const running = st.plan.libvirt && st.status === 'finished'
      ? await this.config.libvirtDomain!(st.plan.instantId, 'status').then((r) => r.running, () => false)
      : await this.vmRunning(st).catch(() => false);
    let overlayBytes = 0;
    for (const d of st.plan.disks) overlayBytes += await stat(d.overlay).then((s) => s.blocks * 512, () => 0);
    const mirror = st.status === 'mirroring'
      ? await readFile(files(st.plan.dir).progress, 'utf8').then((t) => JSON.parse(t) as InstantView['mirror'], () => ({ bytesDone: 0, bytesTotal: st.plan!.disks.reduce((n, d) => n + d.sizeBytes, 0), ready: false }))
      : undefined;
    const libvirt = st.serving?.libvirt ? { libvirt: { host: st.serving.libvirt.host, domain: st.serving.libvirt.domain } } : {};
    return { ...view, ...libvirt, running, overlayBytes, ...(mirror ? { mirror } : {}) };
  }

  /** The sessions this mover knows from the log: the live ones, or all. */
  async list(all: boolean): Promise<{ items: InstantView[] }> {
    const items: InstantView[] = [];
    for (const st of this.sessions.values()) {
      if (!all && (isInstantOver(st) || st.status === 'failed')) continue;
      items.push(await this.live(st).catch(() => instantView(st)!));
    }
    return { items: items.sort((a, b) => (a.startedAt ?? '').localeCompare(b.startedAt ?? '')) };
  }

  /** One session, read from its stream. */
  async get(instantId: string): Promise<{ view: InstantView }> {
    return { view: await this.live(await this.known(instantId)) };
  }
}
