// QEMU adapter: one running QEMU (or qemu-storage-daemon) reached over one QMP monitor.
// A view is a fleecing overlay per disk filled by a `blockdev-backup sync=none` job
// (copy-before-write), opened in one transaction with the dirty-bitmap hand-over, and
// exported read-only over the instance's NBD server with the frozen bitmap as meta context.
// Every object carries the view id in its name (see naming.ts): release and crash recovery
// are one routine that finds a view's objects and removes them.
import { qemuMachineFacts, qemuVmConfig, type QemuMachineFacts } from './vm-config.ts';
import { readFile, readdir, unlink, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  DiskRef, HypervisorAdapter, NbdAddress, OpenViewRequest, QuiesceResult, ReapReport, View, ViewDisk, VmInfo,
} from '../hypervisor.port.ts';
import { NbdClient } from '@cairn/nbd';
import { QmpClient } from '../qmp/qmp-client.ts';
import { QmpError } from '../qmp/qmp-errors.ts';
import { FreezeGuard, GuestAgentClient } from './guest-agent.ts';
import {
  exportName, isViewId, newViewId, objectId, overlayFileName, parseObjectId, parseOverlayFileName, parseViewBitmapName,
} from './naming.ts';
import { planDisk, type BitmapState, type DiskPlan, type TransactionAction } from './view-plan.ts';

/** pino-compatible subset. */
export interface AdapterLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface QemuAdapterConfig {
  qmpSocket: string;
  /** Directory for fleecing overlays, owned by this adapter alone (one per QEMU instance). */
  overlayDir: string;
  /**
   * Where views are served. Cairn starts the instance's NBD server there; if the instance
   * already runs one, it is shared and must listen at this address.
   */
  nbd: NbdAddress;
  /**
   * TCP addresses only: QEMU's NBD server requires TLS and a client certificate signed by the
   * CA, from this directory as QEMU's `tls-creds-x509` reads it (`ca-cert.pem`, `server-cert.pem`,
   * `server-key.pem`; the site CA and a server certificate naming `nbd.host`). Views then say
   * `tls: { pki: 'site' }`: a data mover on another node connects with its site identity.
   */
  nbdServerTlsDir?: string;
  /** Host side of the `org.qemu.guest_agent.0` channel, for quiesce. */
  guestAgentSocket?: string;
  /** Deadline of the guest freeze (default 10 s) and longest a guest stays frozen (default 60 s). */
  freezeTimeoutMs?: number;
  maxFrozenMs?: number;
  /** VM name when QEMU has no `-name` (e.g. qemu-storage-daemon). */
  vmName?: string;
  /** Disks by id -> block node name, for instances without devices (qemu-storage-daemon). */
  disks?: Record<string, string>;
  defaultLeaseMs?: number;
  commandTimeoutMs?: number;
  logger?: AdapterLogger;
}

export class UnknownVmError extends Error { override readonly name = 'UnknownVmError'; }
export class UnknownDiskError extends Error { override readonly name = 'UnknownDiskError'; }
export class DiskBusyError extends Error { override readonly name = 'DiskBusyError'; }

interface NamedNode {
  'node-name': string;
  drv: string;
  file: string;
  image: { 'virtual-size': number; format?: string };
  'dirty-bitmaps'?: BitmapState[];
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: { 'node-name': string; drv: string; file: string; image: { 'virtual-size': number } };
}

interface ViewLeftovers {
  exports: string[];
  jobs: string[];
  /**
   * The overlays' `blockdev-create` jobs still listed: a caller that went away between starting
   * one and dismissing it leaves it concluded (or running) in QEMU.
   */
  createJobs: string[];
  nodes: string[];
  /** The overlays' file nodes: removed after the qcow2 nodes opened on them. */
  fileNodes: string[];
  files: string[];
  bitmaps: Array<{ node: string; name: string; kind: 'frozen' | 'fresh'; live: string; inconsistent: boolean }>;
}

/**
 * What holds for the QEMU at the other end of the QMP connection while it stays connected (a
 * restarted QEMU is a new connection): asked once, not on every view.
 */
interface ConnectionFacts {
  /** `query-name` (none on qemu-storage-daemon). */
  name?: string | undefined;
  nameAsked?: boolean;
  /** The NBD server is running (started by us or found running). */
  nbdServer?: boolean;
  machine?: Promise<QemuMachineFacts>;
  /** An empty qcow2 overlay as QEMU formatted it, by virtual size: the next one of that size is written from it. */
  readonly overlays: Map<number, Buffer>;
}

const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1');
/** Largest formatted overlay kept as a template (an empty 2 GiB qcow2 is 256 KiB). */
const MAX_OVERLAY_TEMPLATE = 4 << 20;

/** Waits for every one (none is left running behind a failure), then throws the first failure. */
async function allSettled(steps: ReadonlyArray<Promise<unknown>>): Promise<void> {
  for (const r of await Promise.allSettled(steps)) if (r.status === 'rejected') throw r.reason;
}

/** QOM id of the NBD server's TLS credentials object. */
const NBD_TLS_CREDS = 'cairn-nbd-tls';

const silent: AdapterLogger = { info: () => undefined, warn: () => undefined };

export class QemuAdapter implements HypervisorAdapter {
  readonly #views = new Map<string, View>();
  readonly #busyDisks = new Map<string, string>(); // disk id -> view id
  readonly #log: AdapterLogger;
  readonly #freeze: FreezeGuard | undefined;
  #nbdShared: boolean | undefined;
  #facts: ConnectionFacts = { overlays: new Map() };
  /** What each view opened here created: its success release removes exactly that, without a scan. */
  readonly #created = new Map<string, ViewLeftovers>();

  private constructor(readonly config: QemuAdapterConfig, readonly qmp: QmpClient) {
    this.#log = config.logger ?? silent;
    qmp.on('disconnected', () => { this.#facts = { overlays: new Map() }; });
    this.#freeze = config.guestAgentSocket
      ? new FreezeGuard(new GuestAgentClient(config.guestAgentSocket), (e) => this.#log.warn({ err: String(e) }, 'guest thaw failed'))
      : undefined;
  }

  static async connect(config: QemuAdapterConfig): Promise<QemuAdapter> {
    if (config.nbdServerTlsDir !== undefined && 'socketPath' in config.nbd) {
      throw new Error(`NBD TLS (${config.nbdServerTlsDir}) applies to a TCP address, not the unix socket ${config.nbd.socketPath}`);
    }
    await mkdir(config.overlayDir, { recursive: true });
    const qmp = await QmpClient.connect(config.qmpSocket, { reconnect: { delayMs: 200, maxDelayMs: 2_000 }, commandTimeoutMs: config.commandTimeoutMs ?? 30_000 });
    return new QemuAdapter(config, qmp);
  }

  /** Whether views are served by an NBD server Cairn did not start (known after the first view). */
  get sharesNbdServer(): boolean | undefined { return this.#nbdShared; }

  async inventory(): Promise<VmInfo[]> {
    const [status, { vm }] = await Promise.all([
      this.qmp.execute<{ status: string }>('query-status').catch(() => ({ status: 'running' })),
      this.#vmAndNodes(),
    ]);
    const state = status.status === 'running' ? 'running' : status.status === 'shutdown' ? 'stopped' : 'paused';
    return [{ ...vm, state }];
  }

  openViews(): View[] { return [...this.#views.values()]; }

  /** Takes over a view opened by an earlier run (from persisted state) so it can be released later. */
  adoptView(view: View): void {
    this.#views.set(view.viewId, view);
    for (const d of view.disks) this.#busyDisks.set(d.disk, view.viewId);
  }

  async openView(req: OpenViewRequest): Promise<View> {
    const chain = req.chain ?? 'default';
    // The block nodes asked with the VM serve the plan below too (its dirty bitmaps): nothing
    // changes them before the transaction, and a view no longer asks for them twice.
    const facts = this.#facts;
    const { vm, nodes } = await this.#vmAndNodes();
    if (req.vm !== vm.id) throw new UnknownVmError(`VM ${JSON.stringify(req.vm)} is not on this QEMU (it runs ${JSON.stringify(vm.id)})`);
    const disks = this.#selectDisks(vm, req.disks);
    for (const d of disks) {
      const holder = this.#busyDisks.get(d.id);
      if (holder) throw new DiskBusyError(`disk ${d.id} of ${vm.id} is in view ${holder}`);
    }
    const viewId = newViewId();
    for (const d of disks) this.#busyDisks.set(d.id, viewId);
    const log = { viewId, vm: vm.id, jobId: req.jobId };
    try {
      await this.#ensureNbdServer();
      const plans = disks.map((d) => planDisk({
        node: d.nodeName, format: d.format, requested: req.mode, chain, viewId,
        bitmaps: nodes.find((n) => n['node-name'] === d.nodeName)?.['dirty-bitmaps'] ?? [],
      }));
      for (const plan of plans) for (const c of plan.pre) await this.qmp.execute(c.command, c.args);
      const actions: TransactionAction[] = [];
      const created: ViewLeftovers = { exports: [], jobs: [], createJobs: [], nodes: [], fileNodes: [], files: [], bitmaps: [] };
      const added: Array<Promise<unknown>> = [];
      for (const [i, d] of disks.entries()) {
        const node = objectId('node', viewId, i);
        const overlay = await this.#createOverlay(facts, viewId, i, d.sizeBytes);
        const add = this.qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': node, file: overlay.file, backing: d.nodeName });
        add.catch(() => undefined); // awaited below
        added.push(add);
        actions.push(...plans[i]!.actions,
          { type: 'blockdev-backup', data: { 'job-id': objectId('job', viewId, i), device: d.nodeName, target: node, sync: 'none' } });
        created.exports.push(objectId('export', viewId, i));
        created.jobs.push(objectId('job', viewId, i));
        created.nodes.push(node);
        if (typeof overlay.file === 'string') created.fileNodes.push(overlay.file);
        created.files.push(overlay.filename);
        for (const a of plans[i]!.actions) {
          const name = a.type === 'block-dirty-bitmap-add' ? parseViewBitmapName(String(a.data['name'])) : undefined;
          if (name) created.bitmaps.push({ node: d.nodeName, name: String(a.data['name']), kind: name.kind, live: name.live, inconsistent: false });
        }
      }
      // The overlays' blockdev-add go with the transaction (QMP runs them in order; a failed add
      // fails the transaction after it, and its error comes first), unless the guest is frozen
      // in between: then the freeze waits for them.
      if (req.quiesce) await Promise.all(added);
      const quiesced = req.quiesce ? await this.quiesce(vm.id) : undefined;
      try {
        await Promise.all([...added, this.qmp.execute('transaction', { actions })]);
      } finally {
        if (quiesced?.frozen) await this.thaw(vm.id).catch((e: unknown) => this.#log.warn({ ...log, err: String(e) }, 'thaw failed'));
      }
      // The frozen bitmaps' counts, the exports and the VM's configuration depend on nothing but
      // the transaction: sent together (QMP runs them in order), one round trip instead of several.
      const [after, exported, vmConfig] = await Promise.all([
        this.#namedNodes(),
        Promise.all(disks.map((d, i) => this.#export(viewId, i, d, plans[i]!))),
        qemuVmConfig(this.qmp, vm.name, disks, facts.machine ??= qemuMachineFacts(this.qmp)),
      ]);
      const viewDisks: ViewDisk[] = disks.map((d, i) => {
        const plan = plans[i]!;
        const changed = plan.exportBitmap ? after.find((n) => n['node-name'] === d.nodeName)?.['dirty-bitmaps']?.find((b) => b.name === plan.exportBitmap)?.count : undefined;
        return { ...exported[i]!, ...(changed !== undefined ? { changedBytes: changed } : {}) };
      });
      const now = Date.now();
      const view: View = {
        viewId, vm: vm.id, jobId: req.jobId, nbd: this.#viewAddress(), disks: viewDisks, vmConfig: { ...vmConfig },
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + (req.leaseMs ?? this.config.defaultLeaseMs ?? 3_600_000)).toISOString(),
        ...(quiesced ? { quiesced } : {}),
      };
      this.#views.set(viewId, view);
      this.#created.set(viewId, created);
      this.#log.info({ ...log, disks: viewDisks.map((d) => ({ disk: d.disk, mode: d.mode, reason: d.reason })) }, 'view opened');
      return view;
    } catch (e) {
      this.#log.warn({ ...log, err: String(e) }, 'open view failed: removing what it created');
      await this.#removeView(viewId, false).catch((err: unknown) => this.#log.warn({ ...log, err: String(err) }, 'cleanup after failed open'));
      for (const d of disks) if (this.#busyDisks.get(d.id) === viewId) this.#busyDisks.delete(d.id);
      throw e;
    }
  }

  async releaseView(viewId: string, outcome: { success: boolean }): Promise<void> {
    if (!isViewId(viewId)) throw new Error(`not a view id: ${JSON.stringify(viewId)}`);
    const created = this.#created.get(viewId);
    if (outcome.success && created) {
      // Exactly what the view created (each step takes "already gone" for done); anything
      // unexpected falls back to the scan crash recovery uses.
      await this.#removeLeftovers(created, true).catch(async (e: unknown) => {
        this.#log.warn({ viewId, err: String(e) }, 'release of the view\'s own objects failed: removing what a scan finds');
        await this.#removeView(viewId, true);
      });
    } else {
      await this.#removeView(viewId, outcome.success);
    }
    this.#created.delete(viewId);
    this.#views.delete(viewId);
    for (const [disk, holder] of this.#busyDisks) if (holder === viewId) this.#busyDisks.delete(disk);
    this.#log.info({ viewId, success: outcome.success }, 'view released');
  }

  async reapOrphans(keep: ReadonlySet<string> = new Set(this.#views.keys())): Promise<ReapReport> {
    const report: ReapReport = { exports: [], jobs: [], nodes: [], files: [], bitmaps: [] };
    const found = await this.#scan();
    for (const [viewId, left] of found) {
      if (keep.has(viewId)) continue;
      this.#log.warn({ viewId, ...left }, 'reaping leftovers of a view nobody holds');
      await this.#removeLeftovers(left, false);
      report.exports.push(...left.exports);
      report.jobs.push(...left.jobs, ...left.createJobs);
      report.nodes.push(...left.nodes);
      report.files.push(...left.files);
      report.bitmaps.push(...left.bitmaps.map((b) => b.name));
      this.#views.delete(viewId);
      this.#created.delete(viewId);
      for (const [disk, holder] of this.#busyDisks) if (holder === viewId) this.#busyDisks.delete(disk);
    }
    return report;
  }

  async quiesce(_vm: string, opts: { timeoutMs?: number; maxFrozenMs?: number } = {}): Promise<QuiesceResult> {
    if (!this.#freeze) return { frozen: false, reason: 'no guest agent channel configured: crash-consistent' };
    return this.#freeze.freeze({ timeoutMs: opts.timeoutMs ?? this.config.freezeTimeoutMs ?? 10_000, maxFrozenMs: opts.maxFrozenMs ?? this.config.maxFrozenMs ?? 60_000 });
  }

  async thaw(_vm: string): Promise<void> {
    await this.#freeze?.thaw();
  }

  /** The one VM's agent (this adapter drives one QEMU process). */
  guestAgent(_vm: string): GuestAgentClient | undefined {
    return this.config.guestAgentSocket ? new GuestAgentClient(this.config.guestAgentSocket, { timeoutMs: 60_000 }) : undefined;
  }

  async close(): Promise<void> {
    await this.qmp.close();
  }

  /** The VM without its run state (which only the inventory asks), and every block node. */
  async #vmAndNodes(): Promise<{ vm: Omit<VmInfo, 'state'>; nodes: NamedNode[] }> {
    const [name, blocks, nodes] = await Promise.all([
      this.#name(),
      this.qmp.execute<BlockInfo[]>('query-block').catch(() => [] as BlockInfo[]),
      this.#namedNodes(),
    ]);
    const id = name ?? this.config.vmName;
    if (!id) throw new UnknownVmError(`QEMU at ${this.config.qmpSocket} has no -name; set vmName in the config`);
    const byNode = new Map(nodes.map((n) => [n['node-name'], n]));
    const disks: DiskRef[] = [];
    if (this.config.disks) {
      for (const [diskId, nodeName] of Object.entries(this.config.disks)) {
        const n = byNode.get(nodeName);
        if (!n) throw new UnknownDiskError(`configured disk ${diskId}: no block node ${nodeName}`);
        disks.push({ id: diskId, nodeName, file: n.file, format: n.drv, sizeBytes: n.image['virtual-size'] });
      }
    } else {
      for (const b of blocks) {
        if (!b.inserted) continue;
        const diskId = /^\/machine\/peripheral\/([^/]+)/.exec(b.qdev ?? '')?.[1] ?? (b.device || b.inserted['node-name']);
        disks.push({ id: diskId, nodeName: b.inserted['node-name'], file: b.inserted.file, format: b.inserted.drv, sizeBytes: b.inserted.image['virtual-size'] });
      }
    }
    return { vm: { id, name: id, disks }, nodes };
  }

  /** QEMU's `-name`, asked once per connection; qemu-storage-daemon has no query-name (and no VM): the config names it. */
  async #name(): Promise<string | undefined> {
    const facts = this.#facts;
    if (facts.nameAsked) return facts.name;
    const info = await this.qmp.execute<{ name?: string }>('query-name').catch((e: unknown) => {
      if (e instanceof QmpError && e.errorClass === 'CommandNotFound') return {} as { name?: string };
      throw e;
    });
    facts.name = info.name;
    facts.nameAsked = true;
    return info.name;
  }

  #selectDisks(vm: Pick<VmInfo, 'id' | 'disks'>, wanted?: readonly string[]): DiskRef[] {
    if (!wanted) {
      if (vm.disks.length === 0) throw new UnknownDiskError(`VM ${vm.id} has no disks`);
      return [...vm.disks];
    }
    return wanted.map((id) => {
      const d = vm.disks.find((x) => x.id === id);
      if (!d) throw new UnknownDiskError(`VM ${vm.id} has no disk ${JSON.stringify(id)} (it has ${vm.disks.map((x) => x.id).join(', ')})`);
      return d;
    });
  }

  async #namedNodes(): Promise<NamedNode[]> {
    return this.qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
  }

  /** Where a view is read: with server TLS, a reader presents its site identity (`pki: 'site'`). */
  #viewAddress(): NbdAddress {
    const a = this.config.nbd;
    if ('socketPath' in a || this.config.nbdServerTlsDir === undefined) return a;
    return { host: a.host, port: a.port, tls: { pki: 'site' } };
  }

  async #ensureNbdServer(): Promise<void> {
    const facts = this.#facts;
    if (facts.nbdServer) return;
    const a = this.config.nbd;
    const addr = 'socketPath' in a
      ? { type: 'unix', data: { path: a.socketPath } }
      : { type: 'inet', data: { host: a.host, port: String(a.port) } };
    const tlsDir = this.config.nbdServerTlsDir;
    if (tlsDir !== undefined) {
      // Client certificates required (verify-peer): only holders of a site identity read views.
      try {
        await this.qmp.execute('object-add', { 'qom-type': 'tls-creds-x509', id: NBD_TLS_CREDS, dir: tlsDir, endpoint: 'server', 'verify-peer': true });
      } catch (e) {
        if (!(e instanceof QmpError && /already exists|duplicate/i.test(e.desc))) {
          throw new Error(`QEMU refused the NBD TLS credentials in ${tlsDir} (ca-cert.pem, server-cert.pem, server-key.pem): ${(e as Error).message}`, { cause: e });
        }
      }
    }
    try {
      await this.qmp.execute('nbd-server-start', { addr, ...(tlsDir !== undefined ? { 'tls-creds': NBD_TLS_CREDS } : {}) });
      this.#nbdShared = false;
    } catch (e) {
      if (!(e instanceof QmpError && /already running/i.test(e.desc))) throw e;
      // Another user of this QEMU (or our earlier run) started it: share it, but never serve
      // views without TLS when TLS is configured.
      if (tlsDir !== undefined && this.#nbdShared === undefined && !('socketPath' in a)) await this.#requireTls(a.host, a.port);
      this.#nbdShared ??= true;
    }
    facts.nbdServer = true;
  }

  /** A plain NBD client must be refused before any option (NBD_REP_ERR_TLS_REQD), else the server serves without TLS. */
  async #requireTls(host: string, port: number): Promise<void> {
    let plain: NbdClient | undefined;
    try {
      plain = await NbdClient.connect({ host, port }, { exportName: 'cairn-tls-probe' });
    } catch (e) {
      if (/requires TLS/i.test((e as Error).message)) return;
      throw new Error(`the NBD server already running at ${host}:${String(port)} in this QEMU does not require TLS (${(e as Error).message}); with nbdServerTlsDir set Cairn serves no view there: stop it (nbd-server-stop) or give the instance another address`, { cause: e });
    }
    await plain.close().catch(() => undefined);
    throw new Error(`the NBD server already running at ${host}:${String(port)} in this QEMU serves without TLS; with nbdServerTlsDir set Cairn serves no view there: stop it (nbd-server-stop) or give the instance another address`);
  }

  /**
   * The empty qcow2 overlay of disk `index`, formatted by QEMU itself (a `blockdev-create` job on
   * a `file` node) rather than by a spawned `qemu-img create`: starting a process from a large
   * Node process under load took 0.3-1.7 s of the snapshot (docs/benchmarks.md). The first
   * overlay of a size on a connection is formatted so and its bytes kept; the next ones of that
   * size are written from them (four QMP commands and a job fewer per view). Returns what the
   * qcow2 node is opened on: the file node's name (removed after the qcow2 node), or an inline
   * `file` (removed with it).
   */
  async #createOverlay(facts: ConnectionFacts, viewId: string, index: number, sizeBytes: number): Promise<{ file: string | Record<string, unknown>; filename: string }> {
    const filename = join(this.config.overlayDir, overlayFileName(viewId, index));
    const template = facts.overlays.get(sizeBytes);
    if (template) {
      await writeFile(filename, template, { flag: 'wx' });
      return { file: { driver: 'file', filename }, filename };
    }
    await writeFile(filename, '', { flag: 'wx' });
    const fileNode = objectId('file', viewId, index);
    await this.qmp.execute('blockdev-add', { driver: 'file', 'node-name': fileNode, filename });
    const job = objectId('create', viewId, index);
    const concluded = this.qmp.waitForEvent('JOB_STATUS_CHANGE', (d) => d['id'] === job && d['status'] === 'concluded');
    try {
      await this.qmp.execute('blockdev-create', { 'job-id': job, options: { driver: 'qcow2', file: fileNode, size: sizeBytes, 'cluster-size': 65536 } });
      await concluded;
      const jobs = await this.qmp.execute<Array<{ id: string; error?: string }>>('query-jobs');
      const error = jobs.find((j) => j.id === job)?.error;
      await this.qmp.execute('job-dismiss', { id: job });
      if (error !== undefined) throw new Error(`formatting the overlay ${filename} failed: ${error}`);
    } catch (e) {
      concluded.catch(() => undefined);
      throw e;
    }
    // Read before any node opens it as qcow2: the image exactly as formatted.
    const formatted = await readFile(filename);
    if (formatted.length <= MAX_OVERLAY_TEMPLATE && formatted.subarray(0, 4).equals(QCOW2_MAGIC)) facts.overlays.set(sizeBytes, formatted);
    return { file: fileNode, filename };
  }

  async #export(viewId: string, index: number, disk: DiskRef, plan: DiskPlan): Promise<ViewDisk> {
    const name = exportName(viewId, disk.id);
    const add = () => this.qmp.execute('block-export-add', {
      type: 'nbd', id: objectId('export', viewId, index), 'node-name': objectId('node', viewId, index), name, writable: false,
      ...(plan.exportBitmap ? { bitmaps: [plan.exportBitmap] } : {}),
    });
    try {
      await add();
    } catch (e) {
      // Someone stopped the NBD server since this connection saw it running: start it again.
      if (!(e instanceof QmpError && /NBD server not running/i.test(e.desc))) throw e;
      this.#facts.nbdServer = false;
      await this.#ensureNbdServer();
      await add();
    }
    return {
      disk: disk.id, exportName: name, sizeBytes: disk.sizeBytes, mode: plan.mode, reason: plan.reason,
      ...(plan.mode === 'incremental' && plan.exportBitmap ? { bitmapContext: `qemu:dirty-bitmap:${plan.exportBitmap}` } : {}),
    };
  }

  /** Everything tagged with a view id, grouped by view. */
  async #scan(): Promise<Map<string, ViewLeftovers>> {
    const out = new Map<string, ViewLeftovers>();
    const get = (viewId: string) => {
      let v = out.get(viewId);
      if (!v) { v = { exports: [], jobs: [], createJobs: [], nodes: [], fileNodes: [], files: [], bitmaps: [] }; out.set(viewId, v); }
      return v;
    };
    const [exports, jobs, createJobs, nodes, files] = await Promise.all([
      this.qmp.execute<Array<{ id: string }>>('query-block-exports'),
      this.qmp.execute<Array<{ device: string }>>('query-block-jobs'),
      this.qmp.execute<Array<{ id: string }>>('query-jobs'),
      this.#namedNodes(),
      readdir(this.config.overlayDir).catch(() => [] as string[]),
    ]);
    for (const e of exports) { const p = parseObjectId('export', e.id); if (p) get(p.viewId).exports.push(e.id); }
    for (const j of jobs) { const p = parseObjectId('job', j.device); if (p) get(p.viewId).jobs.push(j.device); }
    for (const j of createJobs) { const p = parseObjectId('create', j.id); if (p) get(p.viewId).createJobs.push(j.id); }
    for (const n of nodes) {
      const p = parseObjectId('node', n['node-name']);
      if (p) get(p.viewId).nodes.push(n['node-name']);
      const f = parseObjectId('file', n['node-name']);
      if (f) get(f.viewId).fileNodes.push(n['node-name']);
      for (const b of n['dirty-bitmaps'] ?? []) {
        const vb = parseViewBitmapName(b.name);
        if (vb) get(vb.viewId).bitmaps.push({ node: n['node-name'], name: b.name, kind: vb.kind, live: vb.live, inconsistent: b.inconsistent === true });
      }
    }
    for (const f of files) { const p = parseOverlayFileName(f); if (p) get(p.viewId).files.push(join(this.config.overlayDir, f)); }
    return out;
  }

  async #removeView(viewId: string, success: boolean): Promise<void> {
    const left = (await this.#scan()).get(viewId);
    if (left) await this.#removeLeftovers(left, success);
  }

  /**
   * Tear-down order matters: the export holds the overlay and the frozen bitmap, the job holds
   * the overlay; only then can the overlay node and file go, and the view's bitmaps on the
   * disk's node: on success the frozen changes are dropped (the generation advances), on
   * failure they are merged back.
   */
  async #removeLeftovers(left: ViewLeftovers, success: boolean): Promise<void> {
    // Exports and jobs do not hold each other: their removals are sent together.
    await allSettled([...left.exports.map((id) => this.#deleteExport(id)), ...left.jobs.map((id) => this.#cancelJob(id))]);
    for (const id of left.createJobs) await this.#dismissCreateJob(id);
    // The overlays and the bitmaps (on the disks' own nodes) are apart: removed side by side.
    await allSettled([this.#removeOverlays(left), this.#removeBitmaps(left, success)]);
  }

  async #deleteExport(id: string): Promise<void> {
    const gone = this.qmp.waitForEvent('BLOCK_EXPORT_DELETED', (d) => d['id'] === id, 10_000);
    try {
      await this.qmp.execute('block-export-del', { id, mode: 'hard' });
      await gone;
    } catch (e) {
      gone.catch(() => undefined);
      if (!(e instanceof QmpError)) throw e; // already gone: fine
    }
  }

  async #cancelJob(id: string): Promise<void> {
    const ended = this.qmp.waitForEvent(['BLOCK_JOB_CANCELLED', 'BLOCK_JOB_COMPLETED'], (d) => d['device'] === id, 10_000);
    try {
      await this.qmp.execute('block-job-cancel', { device: id, force: true });
      await ended;
    } catch (e) {
      ended.catch(() => undefined);
      if (!(e instanceof QmpError)) throw e;
    }
  }

  async #removeOverlays(left: ViewLeftovers): Promise<void> {
    for (const node of left.nodes) await this.#blockdevDel(node);
    for (const node of left.fileNodes) await this.#blockdevDel(node);
    for (const file of left.files) await unlink(file).catch(() => undefined);
  }

  async #removeBitmaps(left: ViewLeftovers, success: boolean): Promise<void> {
    for (const b of left.bitmaps) {
      const remove = { type: 'block-dirty-bitmap-remove', data: { node: b.node, name: b.name } };
      if (success || b.inconsistent) {
        await this.qmp.execute('transaction', { actions: [remove] });
      } else if (b.kind === 'frozen') {
        const live = await this.#bitmap(b.node, b.live);
        const actions = live && !live.inconsistent
          ? [{ type: 'block-dirty-bitmap-merge', data: { node: b.node, target: b.live, bitmaps: [b.name] } }, remove]
          : [remove]; // no usable live bitmap: the next backup is full anyway
        await this.qmp.execute('transaction', { actions });
      } else {
        // The failed view created the live bitmap: drop it so the next backup is full again.
        const live = await this.#bitmap(b.node, b.live);
        await this.qmp.execute('transaction', { actions: live ? [remove, { type: 'block-dirty-bitmap-remove', data: { node: b.node, name: b.live } }] : [remove] });
      }
    }
  }

  async #bitmap(node: string, name: string): Promise<BitmapState | undefined> {
    const nodes = await this.#namedNodes();
    return nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps']?.find((b) => b.name === name);
  }

  /**
   * Dismisses an overlay's `blockdev-create` job a gone caller left. Such a job cannot be
   * cancelled, and formatting an empty qcow2 takes milliseconds: one still running is waited for.
   */
  async #dismissCreateJob(id: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const jobs = await this.qmp.execute<Array<{ id: string; status: string }>>('query-jobs');
      const status = jobs.find((j) => j.id === id)?.status;
      if (status === undefined) return;
      if (status === 'concluded' || attempt >= 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      await this.qmp.execute('job-dismiss', { id });
    } catch (e) {
      if (!(e instanceof QmpError)) throw e; // dismissed meanwhile, or still running after 10 s: the error says which
      this.#log.warn({ job: id, error: e.desc }, 'could not dismiss a leftover overlay-format job');
    }
  }

  async #blockdevDel(node: string): Promise<void> {
    // Right after a job ends QEMU may still hold the node for a moment.
    for (let attempt = 0; ; attempt++) {
      try {
        await this.qmp.execute('blockdev-del', { 'node-name': node });
        return;
      } catch (e) {
        if (!(e instanceof QmpError)) throw e;
        if (/cannot find|not found/i.test(e.desc)) return;
        if (attempt >= 20) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}
