// The libvirt adapter: VMs that libvirt owns, backed up through libvirt's own backup API in
// pull mode (never through the QEMU monitor libvirt holds). A view is one `backup-begin` that
// exports every chosen disk over NBD on a unix socket and creates a checkpoint at the same
// instant; an incremental reads the changes since the checkpoint of the chain's last good
// backup through the `qemu:dirty-bitmap:` context. Releasing ends the job (`domjobabort`,
// which also removes the scratch files) and keeps exactly one checkpoint per chain: on
// success the new one (older ones deleted), on failure the old one (the new one deleted, its
// changes merged back by libvirt). A shut-off domain's disks are served read-only by a
// qemu-storage-daemon, whose image locks keep the domain from starting meanwhile.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import type {
  HypervisorAdapter, OpenViewRequest, QuiesceResult, ReapReport, View, ViewDisk, VmInfo,
} from '../hypervisor.port.ts';
import { isViewId, newViewId } from '../qemu/naming.ts';
import { DiskBusyError, UnknownDiskError, UnknownVmError, type AdapterLogger } from '../qemu/qemu.adapter.ts';
import {
  isBrokenCheckpointError, parseCheckpointName, planLibvirtBackup, type ChainRecord, type LibvirtBackupPlan,
} from './checkpoint-plan.ts';
import {
  backupXml, checkpointXml, libvirtVmConfig, parseBackupXml, parseCheckpointXml, parseDomainXml,
  type BackupServer, type CheckpointInfo, type DomainSummary, type LibvirtVmConfig,
} from './domain-xml.ts';
import { Virsh, VirshError } from './virsh.ts';
import { DomainEventWatcher, type DomainEvent } from './domain-events.ts';
import { SshHost, shellQuote, sshTargetOf } from './ssh-host.ts';
import { importIntoPool, type PoolVolume } from './storage-pool.ts';
import { hostOf, isPortTakenError, nbdTlsFiles, transportOf, type NbdTlsFiles } from './nbd-tls.ts';

export interface LibvirtAdapterConfig {
  /**
   * qemu:///system, qemu+ssh:// (the NBD socket is forwarded over SSH) or qemu+tls:// (the NBD
   * export listens on the host's TCP port with TLS, see nbd-tls.ts).
   */
  readonly uri: string;
  /** libvirt auth.conf with the credentials (never on the command line). */
  readonly credentialsFile?: string;
  /**
   * NBD sockets, scratch files and offline daemons' pid files. QEMU (user libvirt-qemu on
   * Debian) must be able to create files here: the adapter gives the directory to that user.
   */
  readonly runDir: string;
  /** Where copy-before-write scratch files go (default runDir); removed after every view. */
  readonly scratchDir?: string;
  /**
   * qemu+ssh: the directory on the libvirt host for the NBD socket and the scratch files
   * (default /var/tmp/cairn-lvr-<instance hash>); runDir then holds the forwarded sockets.
   * qemu+tls: the existing directory on the host for the scratch files (default /var/tmp).
   */
  readonly remoteDir?: string;
  /** Chain records (last good checkpoint per domain and chain) and open views. */
  readonly stateDir: string;
  readonly defaultLeaseMs?: number;
  /** Owner for runDir/scratchDir as `uid:gid` (default: the owner of /var/lib/libvirt/qemu). */
  readonly qemuOwner?: string;
  /** Deadline of a guest-agent freeze (default 10 s). */
  readonly freezeTimeoutMs?: number;
  /** A freeze never lasts longer than this (default 60 s). */
  readonly maxFrozenMs?: number;
  readonly logger?: AdapterLogger;
  /**
   * qemu+tls only: the client certificate for the NBD exports (default: the URI's pkipath, else
   * libvirt's default client PKI), see nbd-tls.ts.
   */
  readonly nbdTlsDir?: string;
  /** qemu+tls only: TCP ports on the host the NBD export may listen on (default 10809–10899). */
  readonly nbdPorts?: readonly [number, number];
}

interface PendingView {
  readonly view: View;
  readonly domain: string;
  readonly chain: string;
  /** The checkpoint this view created (running domains only). */
  readonly checkpoint?: string;
  readonly domainUuid: string;
  readonly disks: Record<string, string>;
  readonly offline: boolean;
}

interface State {
  chains: Record<string, Record<string, ChainRecord>>;
  views: Record<string, PendingView>;
  /** Domains being frozen or frozen now (since when): thawed at the next start if we die first. */
  frozen?: Record<string, string>;
}

const silent: AdapterLogger = { info: () => undefined, warn: () => undefined };
const STATE_NAME: Record<string, string> = { running: 'running', paused: 'paused', 'shut off': 'stopped', shutoff: 'stopped', crashed: 'stopped', 'in shutdown': 'running', pmsuspended: 'paused', idle: 'running', blocked: 'running' };
const exportNameOf = (viewId: string, target: string) => `cairn-${viewId}-${target}`;
const viewOfName = (name: string) => /(?:^|[-.])(v[a-z0-9]{11})(?:[-.]|$)/.exec(name)?.[1];

export class LibvirtAdapter implements HypervisorAdapter {
  readonly kind = 'libvirt' as const;
  readonly virsh: Virsh;
  readonly #log: AdapterLogger;
  readonly #stateFile: string;
  #state: State = { chains: {}, views: {} };
  readonly #frozen = new Map<string, NodeJS.Timeout>();
  #watcher: DomainEventWatcher | undefined;
  /** Whether this host's QEMU can run KVM domains (`virsh capabilities`), asked once. */
  #kvm: Promise<boolean> | undefined;
  /**
   * Marks this adapter's checkpoints (in their description) and jobs (by the socket in runDir),
   * so the reaper never touches what another Cairn on the same libvirt made.
   */
  readonly #owner: string;
  /** The host behind a qemu+ssh URI (its NBD sockets are forwarded). */
  readonly #ssh: SshHost | undefined;
  /** qemu+tls: the NBD export on the host's TCP port, with TLS and these client files. */
  readonly #tls: { readonly host: string; readonly files: NbdTlsFiles } | undefined;
  /** Another remote transport (qemu+tcp…): no way to reach its NBD export safely. */
  readonly #farAway: boolean;

  private constructor(readonly config: LibvirtAdapterConfig) {
    this.virsh = new Virsh({ uri: config.uri, ...(config.credentialsFile ? { credentialsFile: config.credentialsFile } : {}) });
    this.#log = config.logger ?? silent;
    this.#stateFile = join(config.stateDir, 'libvirt-state.json');
    this.#owner = createHash('sha256').update(resolve(config.stateDir)).digest('hex').slice(0, 12);
    const target = sshTargetOf(config.uri);
    this.#ssh = target ? new SshHost(target) : undefined;
    this.#tls = transportOf(config.uri) === 'tls'
      ? { host: hostOf(config.uri), files: nbdTlsFiles(config.uri, { ...(config.nbdTlsDir ? { dir: config.nbdTlsDir } : {}), root: process.getuid?.() === 0, exists: existsSync }) }
      : undefined;
    this.#farAway = !target && !this.#tls && isRemoteUri(config.uri);
  }

  /** Checks the connection (`virsh uri`) and loads the adapter's records. */
  static async connect(config: LibvirtAdapterConfig): Promise<LibvirtAdapter> {
    const a = new LibvirtAdapter(config);
    await a.virsh.run(['uri'], 30_000);
    await a.#loadState();
    // Views an earlier run left open on a remote host: their forwards come back.
    if (a.#ssh) {
      for (const viewId of Object.keys(a.#state.views)) {
        await a.#forward(viewId).catch((e: unknown) => a.#log.warn({ viewId, err: String(e) }, 'cannot forward the NBD socket of an open view again'));
      }
    }
    // A run that died between freeze and thaw left the guest frozen: thaw it now.
    for (const vm of Object.keys(a.#state.frozen ?? {})) {
      a.#log.warn({ vm }, 'thawing a guest an earlier run froze');
      await a.thaw(vm);
    }
    return a;
  }

  /**
   * Where the scratch files go, on the libvirt host: qemu+ssh the adapter's directory there,
   * qemu+tls `remoteDir` or /var/tmp (which every host has and QEMU's user may write to; libvirt
   * creates the files and removes them when the job ends), else scratchDir or runDir here.
   */
  get scratchDir(): string {
    if (this.#ssh) return this.#remoteDir;
    if (this.#tls) return this.config.remoteDir ?? '/var/tmp';
    return this.config.scratchDir ?? this.config.runDir;
  }

  /** The directory on the libvirt host that holds the NBD socket QEMU listens on. */
  get #hostDir(): string { return this.#ssh ? this.#remoteDir : this.config.runDir; }

  get #remoteDir(): string { return this.config.remoteDir ?? `/var/tmp/cairn-lvr-${this.#owner}`; }

  // ---- inventory ---------------------------------------------------------------------------

  async inventory(): Promise<VmInfo[]> {
    const names = (await this.virsh.run(['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter(Boolean);
    const stats = parseDomstats(await this.virsh.run(['domstats', '--raw', '--state', '--block']).catch(() => ''));
    const out: VmInfo[] = [];
    for (const name of names) {
      let summary: DomainSummary;
      try { summary = parseDomainXml(await this.virsh.run(['dumpxml', name])); } catch (e) {
        if (e instanceof VirshError && /failed to get domain|not found/i.test(e.message)) continue; // undefined meanwhile
        throw e;
      }
      const s = stats.get(name) ?? {};
      const state = await this.#state0(name, s['state.state']);
      const capacity = new Map<string, number>();
      for (let i = 0; i < Number(s['block.count'] ?? 0); i++) capacity.set(s[`block.${i}.name`] ?? '', Number(s[`block.${i}.capacity`] ?? NaN));
      const disks = [];
      for (const d of summary.disks) {
        let size = capacity.get(d.target);
        if (size === undefined || !Number.isFinite(size) || size === 0) size = await this.#capacity(name, d.target);
        disks.push({ id: d.target, nodeName: d.target, file: d.source ?? '', format: d.format, sizeBytes: size });
      }
      out.push({ id: name, name, state, disks });
    }
    return out;
  }

  /** The domain's configuration for a restore point (inactive XML; secrets and host paths apart). */
  async vmConfig(vm: string): Promise<LibvirtVmConfig> {
    return libvirtVmConfig(await this.virsh.run(['dumpxml', '--inactive', vm]));
  }

  /**
   * The disks of a domain an in-place restore will overwrite; refused unless it is shut off
   * (`DomainRunningError`: QEMU would hold the images).
   */
  async shutOffDisks(name: string): Promise<{ uuid: string; disks: Array<{ target: string; path: string; format: string; type: string }> }> {
    let summary: DomainSummary;
    try { summary = parseDomainXml(await this.virsh.run(['dumpxml', '--inactive', name])); } catch (e) {
      if (e instanceof VirshError && /failed to get domain|not found/i.test(e.message)) throw new UnknownVmError(`libvirt at ${this.config.uri} has no domain ${name}`);
      throw e;
    }
    const state = (await this.virsh.run(['domstate', name])).trim();
    if (state !== 'shut off' && state !== 'crashed') throw new DomainRunningError(`domain ${name} is ${state}: an in-place restore needs it shut off (virsh shutdown ${name}); nothing was changed`);
    return { uuid: summary.uuid, disks: summary.disks.map((d) => ({ target: d.target, path: d.source ?? '', format: d.format, type: d.type })) };
  }

  /** After an in-place restore: still shut off (else the restore raced a start), started when asked. */
  async finishInPlace(name: string, start: boolean): Promise<{ uuid: string; macs: string[]; started: boolean }> {
    let state = (await this.virsh.run(['domstate', name])).trim();
    if (state !== 'shut off' && state !== 'crashed') throw new DomainRunningError(`domain ${name} was started (${state}) while its disks were being restored: shut it down and restore again`);
    if (start) {
      await this.virsh.run(['start', name], 120_000);
      state = (await this.virsh.run(['domstate', name])).trim();
    }
    const summary = parseDomainXml(await this.virsh.run(['dumpxml', '--inactive', name]));
    return { uuid: summary.uuid, macs: summary.nics.map((n) => n.mac ?? ''), started: state === 'running' };
  }

  #hasKvm(): Promise<boolean> {
    this.#kvm ??= this.virsh.run(['capabilities'], 30_000).then((caps) => /<domain\s+type=['"]kvm['"]/.test(caps), () => true);
    return this.#kvm;
  }

  /**
   * Defines a restored domain from its XML (`virsh define`) and starts it when asked. Again
   * for the same restore (a domain of that name with the plan's UUID) it defines nothing and
   * only starts what is not running; a domain of that name with another UUID is a conflict.
   */
  async defineRestored(xml: string, o: { name: string; uuid: string; start: boolean }): Promise<{ uuid: string; macs: string[]; started: boolean }> {
    let existing: DomainSummary | undefined;
    try { existing = parseDomainXml(await this.virsh.run(['dumpxml', '--inactive', o.name])); } catch (e) {
      if (!(e instanceof VirshError) || !/failed to get domain|not found/i.test(e.message)) throw e;
    }
    if (existing && existing.uuid.toLowerCase() !== o.uuid.toLowerCase()) {
      throw new DomainExistsError(`a domain named ${o.name} already exists on ${this.config.uri} (uuid ${existing.uuid}); choose another --vm name`);
    }
    if (!existing) {
      await mkdir(this.config.runDir, { recursive: true });
      const file = join(this.config.runDir, `cairn-define-${o.uuid}.xml`);
      // A domain made for KVM (a VMware VM's translation, a domain backed up on a KVM host)
      // restored onto a host without KVM runs under QEMU's emulation instead of being refused.
      if (/^\s*(<\?xml[^>]*>\s*)?<domain\s[^>]*type=['"]kvm['"]/.test(xml) && !await this.#hasKvm()) {
        xml = xml.replace(/(<domain\s[^>]*type=)['"]kvm['"]/, "$1'qemu'");
        this.#log.warn({ domain: o.name }, 'this host has no KVM: the restored domain is defined with type qemu (emulation)');
      }
      await writeFile(file, xml, { mode: 0o600 });
      try { await this.virsh.run(['define', file]); } finally { await rm(file, { force: true }); }
      this.#log.info({ domain: o.name, uuid: o.uuid }, 'restored domain defined');
    }
    let state = (await this.virsh.run(['domstate', o.name])).trim();
    if (o.start && (state === 'shut off' || state === 'crashed')) {
      await this.virsh.run(['start', o.name], 120_000);
      state = (await this.virsh.run(['domstate', o.name])).trim();
    }
    const summary = parseDomainXml(await this.virsh.run(['dumpxml', '--inactive', o.name]));
    return { uuid: summary.uuid, macs: summary.nics.map((n) => n.mac ?? ''), started: state === 'running' };
  }

  /** A whole-VM restore's files made volumes of a storage pool (storage-pool.ts); their paths by file. */
  importIntoPool(pool: string, volumes: readonly PoolVolume[]): Promise<Map<string, string>> {
    return importIntoPool(this.virsh, pool, volumes);
  }

  /**
   * Instant recovery: lets QEMU (libvirt's user) reach a session's files: through `dir` (0711),
   * and into `socketDir` (the export's socket; 0710, group QEMU's) and no one else. Local
   * connections only: the socket is on this host.
   */
  async openToQemu(dir: string, socketDir: string): Promise<void> {
    if (this.#ssh || this.#farAway) throw new Error(`instant recovery serves its disks on this host: ${this.config.uri} is another host's libvirt`);
    const owner = await this.#qemuOwner();
    await chmod(dir, 0o711);
    if (owner) await chown(socketDir, process.getuid?.() ?? 0, owner.gid);
    await chmod(socketDir, owner ? 0o710 : 0o711);
  }

  /** True for a libvirt of another host (qemu+ssh, qemu+tls). */
  get remote(): boolean { return this.#ssh !== undefined || this.#farAway; }

  /**
   * Calls `onChange` when libvirt reports a domain event (defined, undefined, started,
   * stopped, device added or removed), from one `virsh event --loop --all`.
   */
  watch(onChange: (e: DomainEvent) => void): void {
    this.#watcher ??= new DomainEventWatcher(this.virsh, this.#log);
    this.#watcher.on('event', onChange);
    this.#watcher.start();
  }

  async #state0(name: string, code: string | undefined): Promise<string> {
    const byCode: Record<string, string> = { '1': 'running', '2': 'running', '3': 'paused', '4': 'running', '5': 'stopped', '6': 'stopped', '7': 'paused' };
    if (code && byCode[code]) return byCode[code]!;
    const s = (await this.virsh.run(['domstate', name])).trim();
    return STATE_NAME[s] ?? s;
  }

  async #capacity(domain: string, target: string): Promise<number> {
    const out = await this.virsh.run(['domblkinfo', domain, target]).catch(() => '');
    const m = /Capacity:\s+(\d+)/.exec(out);
    return m ? Number(m[1]) : 0;
  }

  // ---- views -------------------------------------------------------------------------------

  openViews(): View[] { return Object.values(this.#state.views).map((p) => p.view); }

  adoptView(view: View): void {
    if (!this.#state.views[view.viewId]) this.#log.warn({ viewId: view.viewId }, 'adopting a view this adapter has no record of: it is released as far as libvirt shows it');
  }

  async openView(req: OpenViewRequest): Promise<View> {
    const chain = req.chain ?? 'default';
    let xml: string;
    try { xml = await this.virsh.run(['dumpxml', req.vm]); } catch (e) {
      throw new UnknownVmError(`libvirt has no domain ${JSON.stringify(req.vm)}: ${(e as Error).message}`);
    }
    const summary = parseDomainXml(xml);
    const chosen = req.disks ? req.disks.map((id) => {
      const d = summary.disks.find((x) => x.target === id);
      if (!d) throw new UnknownDiskError(`domain ${req.vm} has no disk ${JSON.stringify(id)} (it has ${summary.disks.map((x) => x.target).join(', ')})`);
      return d;
    }) : summary.disks;
    if (chosen.length === 0) throw new UnknownDiskError(`domain ${req.vm} has no disks to back up`);
    for (const p of Object.values(this.#state.views)) {
      if (p.domain === req.vm) throw new DiskBusyError(`domain ${req.vm} is already in view ${p.view.viewId} (libvirt runs one backup job per domain)`);
    }
    if (this.#farAway) {
      throw new Error(`${this.config.uri}: backups over this transport are not offered (the NBD export would cross the network unencrypted); use qemu+tls:// (TLS on the export too) or qemu+ssh://`);
    }
    const state = (await this.virsh.run(['domstate', req.vm])).trim();
    await this.#prepareDirs();
    const viewId = newViewId();
    const leaseMs = req.leaseMs ?? this.config.defaultLeaseMs ?? 3_600_000;
    const sizes = new Map(await Promise.all(chosen.map(async (d) => [d.target, await this.#capacity(req.vm, d.target)] as const)));
    if (state === 'shut off' || state === 'crashed') return this.#openOffline(req, summary, chosen, viewId, leaseMs, sizes);
    if (state !== 'running' && state !== 'paused') throw new Error(`domain ${req.vm} is ${state}: only running, paused or shut-off domains can be backed up`);

    const record = this.#state.chains[req.vm]?.[chain];
    const checkpoints = new Map([...await this.#cairnCheckpoints(req.vm)].map(([n, c]) => [n, c.disks]));
    const planInput = { chain, viewId, requested: req.mode, domainUuid: summary.uuid, disks: chosen, record, checkpoints };
    let plan = planLibvirtBackup(planInput);
    const socketPath = join(this.#hostDir, `cairn-${viewId}.sock`);
    let server: BackupServer;
    const vmConfig = await this.vmConfig(req.vm);
    const quiesced = req.quiesce ? await this.quiesce(req.vm) : undefined;
    try {
      try {
        server = await this.#beginOn(req.vm, viewId, socketPath, plan, summary);
      } catch (e) {
        const msg = (e as Error).message;
        if (!record || !isBrokenCheckpointError(msg)) throw e;
        // The recorded checkpoint's bitmap is broken (QEMU stopped uncleanly): drop it and go full.
        this.#log.warn({ vm: req.vm, checkpoint: record.checkpoint, err: msg }, 'checkpoint broken: full backup');
        await this.#deleteCheckpoint(req.vm, record.checkpoint);
        delete this.#state.chains[req.vm]![chain];
        await this.#saveState();
        plan = planLibvirtBackup({ ...planInput, broken: libvirtReason(msg) });
        server = await this.#beginOn(req.vm, viewId, socketPath, plan, summary);
      }
    } finally {
      if (quiesced?.frozen) await this.thaw(req.vm);
    }
    const disks: ViewDisk[] = plan.disks.map((d) => ({
      disk: d.target, exportName: exportNameOf(viewId, d.target), sizeBytes: sizes.get(d.target) ?? 0, mode: d.mode, reason: d.reason,
      ...(d.mode === 'incremental' ? { bitmapContext: `qemu:dirty-bitmap:${exportNameOf(viewId, d.target)}` } : {}),
    }));
    const now = Date.now();
    const view: View = {
      viewId, vm: req.vm, jobId: req.jobId, disks,
      nbd: 'host' in server ? { host: server.host, port: server.port, tls: this.#tls!.files } : { socketPath: this.#ssh ? this.#forwardedSocket(viewId) : socketPath },
      createdAt: new Date(now).toISOString(), expiresAt: new Date(now + leaseMs).toISOString(),
      ...(quiesced ? { quiesced } : {}), vmConfig: { ...vmConfig },
    };
    this.#state.views[viewId] = {
      view, domain: req.vm, chain, checkpoint: plan.checkpoint, domainUuid: summary.uuid, offline: false,
      disks: Object.fromEntries(chosen.map((d) => [d.target, d.source ?? ''])),
    };
    await this.#saveState();
    if (this.#ssh) {
      try { await this.#forward(viewId); } catch (e) {
        await this.releaseView(viewId, { success: false });
        throw e;
      }
    }
    this.#log.info({ viewId, vm: req.vm, checkpoint: plan.checkpoint, disks: disks.map((d) => ({ disk: d.disk, mode: d.mode, reason: d.reason })) }, 'libvirt backup started');
    return view;
  }

  /**
   * Begins the backup job: on the unix socket, or (qemu+tls) on a TCP port of the host with
   * TLS, trying the next port of the range while the one asked for is taken.
   */
  async #beginOn(domain: string, viewId: string, socketPath: string, plan: LibvirtBackupPlan, summary: DomainSummary): Promise<BackupServer> {
    if (!this.#tls) {
      await this.#begin(domain, viewId, { socketPath }, plan, summary);
      return { socketPath };
    }
    const [lo, hi] = this.config.nbdPorts ?? [10809, 10899];
    const count = hi - lo + 1;
    const first = Math.floor(Math.random() * count);
    for (let i = 0; ; i++) {
      const server = { host: this.#tls.host, port: lo + ((first + i) % count), tls: true };
      try {
        await this.#begin(domain, viewId, server, plan, summary);
        return server;
      } catch (e) {
        if (i + 1 >= Math.min(count, 20) || !isPortTakenError((e as Error).message)) throw e;
        this.#log.info({ vm: domain, port: server.port }, 'NBD port taken on the host: trying another');
      }
    }
  }

  async #begin(domain: string, viewId: string, server: BackupServer, plan: LibvirtBackupPlan, summary: DomainSummary): Promise<void> {
    const dir = this.config.runDir;
    const chosen = new Set(plan.disks.map((d) => d.target));
    const bx = backupXml({
      server,
      disks: plan.disks.map((d) => ({
        target: d.target, exportName: exportNameOf(viewId, d.target), scratchFile: join(this.scratchDir, `cairn-${viewId}-${d.target}.qcow2`),
        ...(d.since ? { incremental: d.since, exportBitmap: exportNameOf(viewId, d.target) } : {}),
      })),
      excluded: summary.disks.map((d) => d.target).filter((t) => !chosen.has(t)),
    });
    const cx = checkpointXml({
      name: plan.checkpoint, description: `Cairn ${this.#owner} view ${viewId}`,
      bitmapDisks: plan.disks.filter((d) => d.bitmap).map((d) => d.target),
      noBitmapDisks: summary.disks.map((d) => d.target).filter((t) => !plan.disks.some((d) => d.bitmap && d.target === t)),
    });
    const bf = join(dir, `cairn-${viewId}.backup.xml`);
    const cf = join(dir, `cairn-${viewId}.checkpoint.xml`);
    await writeFile(bf, bx);
    await writeFile(cf, cx);
    try {
      await this.virsh.run(['backup-begin', domain, bf, cf]);
    } finally {
      await rm(bf, { force: true });
      await rm(cf, { force: true });
    }
  }

  async releaseView(viewId: string, outcome: { success: boolean }): Promise<void> {
    if (!isViewId(viewId)) throw new Error(`not a view id: ${JSON.stringify(viewId)}`);
    const p = this.#state.views[viewId];
    if (!p) { await this.#removeFiles(viewId); return; }
    if (p.offline || this.#ssh) await this.#stopDaemon(viewId);
    if (!p.offline) {
      await this.#abortJob(p.domain, viewId);
      const checkpoints = await this.#cairnCheckpoints(p.domain).catch(() => new Map<string, CheckpointInfo>());
      if (outcome.success && p.checkpoint && checkpoints.has(p.checkpoint)) {
        const chains = (this.#state.chains[p.domain] ??= {});
        chains[p.chain] = { checkpoint: p.checkpoint, domainUuid: p.domainUuid, disks: p.disks };
        await this.#saveState();
        // Older checkpoints of this chain are of no more use (their changes are in the new restore point).
        for (const name of checkpoints.keys()) {
          const c = parseCheckpointName(name);
          if (c?.chain === p.chain && name !== p.checkpoint) await this.#deleteCheckpoint(p.domain, name);
        }
      } else if (p.checkpoint && checkpoints.has(p.checkpoint)) {
        // libvirt merges the deleted checkpoint's changes into its parent: nothing is lost.
        await this.#deleteCheckpoint(p.domain, p.checkpoint);
      }
    }
    await this.#removeFiles(viewId);
    delete this.#state.views[viewId];
    await this.#saveState();
    this.#log.info({ viewId, vm: p.domain, success: outcome.success }, 'libvirt view released');
  }

  async reapOrphans(keep: ReadonlySet<string> = new Set(Object.keys(this.#state.views))): Promise<ReapReport> {
    const report: ReapReport = { exports: [], jobs: [], nodes: [], files: [], bitmaps: [] };
    for (const viewId of Object.keys(this.#state.views)) {
      if (keep.has(viewId)) continue;
      report.jobs.push(viewId);
      await this.releaseView(viewId, { success: false });
    }
    const names = (await this.virsh.run(['list', '--all', '--name'])).split('\n').map((s) => s.trim()).filter(Boolean);
    for (const domain of names) {
      // A backup job left by a run that died before it recorded its view.
      const job = await this.#backupJob(domain);
      if (job?.viewId && job.mine && !keep.has(job.viewId)) {
        await this.#abortJob(domain, job.viewId);
        report.exports.push(...job.exports);
      }
      const recorded = new Set(Object.values(this.#state.chains[domain] ?? {}).map((r) => r.checkpoint));
      for (const [name, cp] of await this.#cairnCheckpoints(domain).catch(() => new Map<string, CheckpointInfo>())) {
        const c = parseCheckpointName(name);
        if (c && cp.description.startsWith(`Cairn ${this.#owner} `) && !keep.has(c.viewId) && !recorded.has(name)) {
          await this.#deleteCheckpoint(domain, name);
          report.bitmaps.push(`${domain}:${name}`);
        }
      }
    }
    for (const f of await readdir(this.config.runDir).catch(() => [] as string[])) {
      const id = viewOfName(f);
      if (f.startsWith('cairn-') && id && !keep.has(id)) {
        if (f.endsWith('.pid')) await this.#stopDaemon(id);
        await rm(join(this.config.runDir, f), { force: true });
        report.files.push(join(this.config.runDir, f));
      }
    }
    if (this.#ssh) {
      const listed = await this.#ssh.sh(`ls -1 ${shellQuote(this.#remoteDir)} 2>/dev/null || true`).catch(() => '');
      const stale = listed.split('\n').map((f) => f.trim()).filter((f) => { const id = viewOfName(f); return f.startsWith('cairn-') && id && !keep.has(id); });
      if (stale.length > 0) {
        await this.#ssh.run(['rm', '-f', '--', ...stale.map((f) => join(this.#remoteDir, f))]);
        report.files.push(...stale.map((f) => `${this.#ssh!.target.host}:${join(this.#remoteDir, f)}`));
      }
    } else if (!this.#tls && this.scratchDir !== this.config.runDir) {
      for (const f of await readdir(this.scratchDir).catch(() => [] as string[])) {
        const id = viewOfName(f);
        if (f.startsWith('cairn-') && id && !keep.has(id)) { await rm(join(this.scratchDir, f), { force: true }); report.files.push(join(this.scratchDir, f)); }
      }
    }
    return report;
  }

  // ---- quiesce -----------------------------------------------------------------------------

  /** Freezes the guest's file systems through libvirt's guest-agent call, bounded by a deadline. */
  async quiesce(vm: string, opts: { timeoutMs?: number; maxFrozenMs?: number } = {}): Promise<QuiesceResult> {
    const timeoutMs = opts.timeoutMs ?? this.config.freezeTimeoutMs ?? 10_000;
    (this.#state.frozen ??= {})[vm] = new Date().toISOString();
    await this.#saveState();
    try {
      await this.virsh.run(['domfsfreeze', vm], timeoutMs);
    } catch (e) {
      // A late freeze may still land: thaw anyway (a thaw of an unfrozen guest is harmless).
      await this.thaw(vm);
      return { frozen: false, reason: `guest agent did not freeze the file systems: ${libvirtReason((e as Error).message)}` };
    }
    const maxFrozenMs = opts.maxFrozenMs ?? this.config.maxFrozenMs ?? 60_000;
    clearTimeout(this.#frozen.get(vm));
    this.#frozen.set(vm, setTimeout(() => {
      this.#log.warn({ vm, maxFrozenMs }, 'guest frozen too long: thawing');
      void this.thaw(vm);
    }, maxFrozenMs).unref());
    return { frozen: true, reason: 'file systems frozen by the QEMU guest agent (through libvirt)' };
  }

  async thaw(vm: string): Promise<void> {
    clearTimeout(this.#frozen.get(vm));
    this.#frozen.delete(vm);
    for (let attempt = 0; ; attempt++) {
      try { await this.virsh.run(['domfsthaw', vm], 10_000); break; } catch (e) {
        // Nothing to thaw where there is no agent or no domain any more.
        if (/not configured|not connected|not running|failed to get domain|not found/i.test((e as Error).message)) break;
        if (attempt >= 1) { this.#log.warn({ vm, err: (e as Error).message }, 'thaw failed'); return; }
      }
    }
    if (this.#state.frozen?.[vm]) {
      delete this.#state.frozen[vm];
      await this.#saveState();
    }
  }

  async close(): Promise<void> {
    await this.#watcher?.stop();
    for (const t of this.#frozen.values()) clearTimeout(t);
  }

  // ---- shut-off domains --------------------------------------------------------------------

  async #openOffline(req: OpenViewRequest, summary: DomainSummary, chosen: DomainSummary['disks'], viewId: string, leaseMs: number, sizes: Map<string, number>): Promise<View> {
    if (this.#ssh || this.#tls) throw new Error(`domain ${req.vm} is shut off on the remote host ${this.#ssh?.target.host ?? this.#tls!.host}: its images can only be read on the host itself (start it, or run a coordinator there)`);
    const socketPath = join(this.config.runDir, `cairn-${viewId}.sock`);
    const pidFile = join(this.config.runDir, `cairn-${viewId}.pid`);
    const args = ['--pidfile', pidFile];
    chosen.forEach((d, i) => {
      if (!d.source || d.type === 'network') throw new Error(`disk ${d.target} of shut-off domain ${req.vm} is not a local image`);
      args.push('--blockdev', `driver=${d.format},node-name=d${i},read-only=on,file.driver=${d.type === 'block' ? 'host_device' : 'file'},file.filename=${d.source.replaceAll(',', ',,')}`);
    });
    args.push('--nbd-server', `addr.type=unix,addr.path=${socketPath.replaceAll(',', ',,')}`);
    chosen.forEach((d, i) => args.push('--export', `type=nbd,id=e${i},node-name=d${i},name=${exportNameOf(viewId, d.target)},writable=off`));
    const child = spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`qemu-storage-daemon for shut-off domain ${req.vm} exited: ${stderr.trim()}`);
      if (await stat(socketPath).then(() => true, () => false) && await stat(pidFile).then(() => true, () => false)) break;
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`qemu-storage-daemon did not come up: ${stderr.trim()}`); }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.stderr.destroy();
    child.unref();
    const now = Date.now();
    const view: View = {
      viewId, vm: req.vm, jobId: req.jobId, nbd: { socketPath },
      disks: chosen.map((d) => ({
        disk: d.target, exportName: exportNameOf(viewId, d.target), sizeBytes: sizes.get(d.target) ?? 0, mode: 'full' as const,
        reason: 'domain is shut off: disks read directly (read-only, the domain cannot start meanwhile); libvirt makes no checkpoint offline, so full',
      })),
      createdAt: new Date(now).toISOString(), expiresAt: new Date(now + leaseMs).toISOString(),
      quiesced: { frozen: false, reason: 'domain is shut off: its disks are at rest' },
      vmConfig: { ...await this.vmConfig(req.vm) },
    };
    this.#state.views[viewId] = {
      view, domain: req.vm, chain: req.chain ?? 'default', domainUuid: summary.uuid, offline: true,
      disks: Object.fromEntries(chosen.map((d) => [d.target, d.source ?? ''])),
    };
    await this.#saveState();
    this.#log.info({ viewId, vm: req.vm }, 'shut-off domain served read-only');
    return view;
  }

  async #stopDaemon(viewId: string): Promise<void> {
    const pidFile = join(this.config.runDir, `cairn-${viewId}.pid`);
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (!pid) return;
    // Only a daemon of this view (the pid may have been reused).
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes(viewId)) return;
    try { process.kill(pid, 'SIGTERM'); } catch { return; }
    for (let i = 0; i < 200; i++) {
      try { process.kill(pid, 0); } catch { return; }
      await new Promise((r) => setTimeout(r, 50));
    }
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }

  // ---- libvirt helpers ---------------------------------------------------------------------

  /** Cairn's checkpoints on a domain, by name. */
  async #cairnCheckpoints(domain: string): Promise<Map<string, CheckpointInfo>> {
    const names = (await this.virsh.run(['checkpoint-list', domain, '--name'])).split('\n').map((s) => s.trim()).filter((n) => parseCheckpointName(n));
    const out = new Map<string, CheckpointInfo>();
    for (const n of names) out.set(n, parseCheckpointXml(await this.virsh.run(['checkpoint-dumpxml', domain, n, '--no-domain'])));
    return out;
  }

  async #deleteCheckpoint(domain: string, name: string): Promise<void> {
    try {
      await this.virsh.run(['checkpoint-delete', domain, name]);
    } catch (e) {
      // The bitmap is gone or broken (or the domain changed under it): forget the metadata only.
      this.#log.warn({ domain, checkpoint: name, err: (e as Error).message }, 'checkpoint delete failed: removing its metadata only');
      await this.virsh.run(['checkpoint-delete', domain, name, '--metadata']).catch((err: unknown) => {
        if (!/not found|no domain checkpoint/i.test(String(err))) throw err;
      });
    }
  }

  /** The domain's running backup job, if it is one of Cairn's. */
  async #backupJob(domain: string): Promise<{ viewId: string | undefined; exports: string[]; mine: boolean } | undefined> {
    let xml: string;
    try { xml = await this.virsh.run(['backup-dumpxml', domain]); } catch { return undefined; }
    const b = parseBackupXml(xml);
    const exports = b.disks.map((d) => d.exportName ?? d.target);
    const viewId = exports.map(viewOfName).find((v) => v) ?? (b.socket ? viewOfName(b.socket.split('/').pop()!) : undefined);
    // qemu+tls: a job on this adapter's host and port range, its exports named after a view.
    const [lo, hi] = this.config.nbdPorts ?? [10809, 10899];
    const mine = b.tcp
      ? !!this.#tls && b.tcp.tls && b.tcp.host === this.#tls.host && b.tcp.port >= lo && b.tcp.port <= hi && exports.every((e) => e.startsWith('cairn-v'))
      : !!b.socket && b.socket.startsWith(`${resolve(this.#hostDir)}/`);
    return { viewId, exports, mine };
  }

  /** Ends the view's pull-mode backup job (libvirt then removes the scratch files). */
  async #abortJob(domain: string, viewId: string): Promise<void> {
    const job = await this.#backupJob(domain);
    if (!job || job.viewId !== viewId) return;
    await this.virsh.run(['domjobabort', domain]).catch((e: unknown) => {
      if (!/no job is active|not running/i.test(String(e))) throw e;
    });
    for (let i = 0; i < 200; i++) {
      if (!await this.#backupJob(domain)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`backup job of ${domain} (view ${viewId}) did not end after domjobabort`);
  }

  async #removeFiles(viewId: string): Promise<void> {
    // qemu+ssh and qemu+tls: the scratch files are on the host (libvirt removes them with the job).
    for (const dir of new Set(this.#ssh || this.#tls ? [this.config.runDir] : [this.config.runDir, this.scratchDir])) {
      for (const f of await readdir(dir).catch(() => [] as string[])) {
        if (f.startsWith(`cairn-${viewId}`)) await rm(join(dir, f), { force: true });
      }
    }
    if (this.#ssh) await this.#ssh.sh(`rm -f ${shellQuote(this.#remoteDir)}/cairn-${viewId}*`);
  }

  #forwardedSocket(viewId: string): string { return join(this.config.runDir, `cairn-${viewId}.fwd.sock`); }

  /** qemu+ssh: the view's NBD socket on the host, forwarded to runDir (pid file `cairn-<viewId>.pid`). */
  async #forward(viewId: string): Promise<void> {
    const pidFile = join(this.config.runDir, `cairn-${viewId}.pid`);
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (pid && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(viewId)) return;
    const local = this.#forwardedSocket(viewId);
    await rm(local, { force: true });
    const child = await this.#ssh!.forward(local, join(this.#remoteDir, `cairn-${viewId}.sock`));
    await writeFile(pidFile, `${String(child.pid)}\n`);
  }

  async #prepareDirs(): Promise<void> {
    if (this.#ssh) {
      await mkdir(this.config.runDir, { recursive: true, mode: 0o700 });
      // On the host: a directory QEMU's user may create the socket and scratch files in.
      const d = shellQuote(this.#remoteDir);
      await this.#ssh.sh(`mkdir -p -m 0770 ${d} && { o=$(stat -c %u:%g /var/lib/libvirt/qemu 2>/dev/null) && chown "$o" ${d} || true; }`);
      return;
    }
    const owner = await this.#qemuOwner();
    for (const dir of new Set(this.#tls ? [this.config.runDir] : [this.config.runDir, this.scratchDir])) {
      await mkdir(dir, { recursive: true, mode: 0o770 });
      if (owner) await chown(dir, owner.uid, owner.gid).catch((e: unknown) => this.#log.warn({ dir, err: String(e) }, 'cannot hand the directory to QEMU\'s user'));
    }
  }

  async #qemuOwner(): Promise<{ uid: number; gid: number } | undefined> {
    if (this.config.qemuOwner) {
      const [uid, gid] = this.config.qemuOwner.split(':').map(Number);
      return { uid: uid!, gid: gid ?? uid! };
    }
    const s = await stat('/var/lib/libvirt/qemu').catch(() => undefined);
    return s ? { uid: s.uid, gid: s.gid } : undefined;
  }

  async #loadState(): Promise<void> {
    let raw: string;
    try { raw = await readFile(this.#stateFile, 'utf8'); } catch { return; }
    const s = JSON.parse(raw) as State;
    if (!s || typeof s !== 'object' || typeof s.chains !== 'object' || typeof s.views !== 'object') throw new Error(`${this.#stateFile} is damaged; fix or remove it (the next backups are then full)`);
    this.#state = s;
  }

  async #saveState(): Promise<void> {
    await mkdir(this.config.stateDir, { recursive: true });
    await writeFile(`${this.#stateFile}.tmp`, JSON.stringify(this.#state, null, 2));
    await rename(`${this.#stateFile}.tmp`, this.#stateFile);
  }
}

/** The domain is running where it must be shut off. */
export class DomainRunningError extends Error { override readonly name = 'DomainRunningError'; }

/** A domain of the name asked for exists and is not the one this restore defined. */
export class DomainExistsError extends Error { override readonly name = 'DomainExistsError'; }

/** A URI naming a host (qemu+tls://host/system), as opposed to a local one (qemu:///system). */
function isRemoteUri(uri: string): boolean {
  try { return new URL(uri).hostname !== ''; } catch { return false; }
}

/** libvirt's own words from a virsh error, without the command line. */
function libvirtReason(message: string): string {
  return message.replace(/^virsh [^:]*: /, '');
}

function parseDomstats(out: string): Map<string, Record<string, string>> {
  const map = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of out.split('\n')) {
    const d = /^Domain: '(.*)'$/.exec(line.trim());
    if (d) { cur = {}; map.set(d[1]!, cur); continue; }
    const kv = /^\s*([^=]+)=(.*)$/.exec(line);
    if (kv && cur) cur[kv[1]!.trim()] = kv[2]!;
  }
  return map;
}
