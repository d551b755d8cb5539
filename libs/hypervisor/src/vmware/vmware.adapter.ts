// The VMware vSphere adapter (vCenter or a single ESXi host) without VDDK: a VMware snapshot per
// view (quiesced through VMware Tools when asked), the snapshot's frozen base disks read by HTTP
// range requests from the datastore (`/folder/<dir>/<disk>-flat.vmdk`, the route virt-v2v and
// nbdkit's curl plugin take without VDDK) and served to the data mover over the adapter's own NBD
// socket, so the transfer path is the one every hypervisor uses. With changed-block tracking the
// changed areas since the chain's last change id (QueryChangedDiskAreas) are the export's dirty
// context. The snapshot is removed when the view is released, also after a failure, an expired
// lease or a crash: every Cairn snapshot is named `cairn-<viewId>` and reapOrphans removes those
// no open view owns.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { NbdServer, STATE_DIRTY, type BlockSource, type Extent } from '@cairn/nbd';
import type {
  HypervisorAdapter, OpenViewRequest, QuiesceResult, ReapReport, View, ViewDisk, VmInfo,
} from '../hypervisor.port.ts';
import type { AdapterLogger } from '../qemu/qemu.adapter.ts';
import { VsphereClient, VsphereError, type VsphereCredentials, type VsphereTls } from './vsphere-client.ts';
import { asMoRef, field, list, moRef, text, type MoRef, type Node } from './vsphere-xml.ts';
import { devicesOf, flatPath, vmFromProperties, vmState, VM_PROPERTIES, type VmwareDisk, type VmwareVm } from './vmware-inventory.ts';
import { changedAreasPlan, type ChangedArea } from './vmware-cbt.ts';
import { attachDisks, createVm, uploadDisk, type NewVmNic, type UploadedDisk } from './vmware-restore.ts';
import { parseDatastorePath } from './vmware-inventory.ts';
import type { Readable } from 'node:stream';

/** Where a restored VM's NICs go: `map` original network → network here; `none` keeps them disconnected; `keepMacs` keeps their MACs. */
export interface RestoreNetwork { readonly map?: Readonly<Record<string, string>>; readonly none?: boolean; readonly keepMacs?: boolean }

/** A disk image to restore into vSphere: raw bytes of `sizeBytes` (a whole number of 512-byte sectors). */
export interface RestoreDiskSource { readonly id: string; readonly sizeBytes: number; readonly data: Readable | Buffer }

export const SNAPSHOT_PREFIX = 'cairn-';

export interface VmwareAdapterConfig {
  /** SDK endpoint (https://vcenter/sdk). */
  readonly url: string;
  readonly credentials: VsphereCredentials;
  readonly tls: VsphereTls;
  /** Unix socket the adapter serves its views on (NBD). */
  readonly nbdSocket: string;
  /** Where the change id of each chain and disk is kept (JSON, written atomically). */
  readonly stateFile: string;
  readonly defaultLeaseMs?: number;
  readonly logger?: AdapterLogger;
  /** Switch change tracking on for a VM that has it off, at its first backup (default true). */
  readonly enableChangeTracking?: boolean;
  /**
   * QueryChangedDiskAreas: by default the vSphere call; a test may answer it from a recorded
   * vSphere response (the simulator does not implement it).
   */
  readonly queryChangedDiskAreas?: (vm: MoRef, snapshot: MoRef, deviceKey: number, startOffset: number, changeId: string) => Promise<Node | undefined>;
}

interface OpenView {
  readonly view: View;
  readonly vmMoref: string;
  readonly snapshot: string | undefined;
  /** Change ids at this view's point in time, committed to the chain when it is released with success. */
  readonly changeIds: Record<string, { changeId: string; capacityBytes: number }>;
  readonly chain: string | undefined;
  readonly exports: string[];
}

/**
 * What the adapter keeps of an open view on disk (`<state dir>/views/<viewId>.json`), so that a
 * restarted coordinator that adopts the view can serve its exports again: the changed areas the
 * view was opened with (its dirty contexts) and the change ids to commit at a successful release.
 */
interface SavedView {
  readonly viewId: string;
  readonly chain?: string;
  readonly changeIds: OpenView['changeIds'];
  readonly changed: Record<string, ChangedArea[]>;
}

interface ChainState { readonly [chainAndVm: string]: Record<string, { changeId: string; capacityBytes: number }> }

const silent: AdapterLogger = { info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as AdapterLogger;

export class VmwareAdapter implements HypervisorAdapter {
  readonly kind = 'vmware' as const;
  readonly #views = new Map<string, OpenView>();
  readonly #server = new NbdServer();
  readonly #log: AdapterLogger;
  #watch: { stop: boolean; collector?: MoRef; ready: Promise<void> } | undefined;

  private constructor(private readonly client: VsphereClient, private readonly config: VmwareAdapterConfig) {
    this.#log = config.logger ?? silent;
  }

  static async connect(config: VmwareAdapterConfig): Promise<VmwareAdapter> {
    const client = await VsphereClient.connect(config.url, config.credentials, config.tls);
    const adapter = new VmwareAdapter(client, config);
    await mkdir(dirname(config.nbdSocket), { recursive: true });
    // A coordinator that was killed leaves its socket file behind; this run serves the same path.
    await rm(config.nbdSocket, { force: true });
    await adapter.#server.listen({ path: config.nbdSocket });
    return adapter;
  }

  /** The session (for callers that need more of the API, and for tests). */
  get vsphere(): VsphereClient { return this.client; }

  /** Every VM of every datacenter, with disks, NICs, CPU, memory, power state, placement and tags. */
  async vms(): Promise<VmwareVm[]> {
    const root = this.client.service('rootFolder');
    const dcView = await this.client.containerView(root, ['Datacenter']);
    const hostView = await this.client.containerView(root, ['HostSystem']);
    try {
      const [dcs, hosts] = await Promise.all([
        this.client.retrieve([{ obj: dcView, type: 'Datacenter', paths: ['name'], viaView: true }]),
        this.client.retrieve([{ obj: hostView, type: 'HostSystem', paths: ['name', 'parent'], viaView: true }]),
      ]);
      const parents = [...new Set(hosts.map((h) => asMoRef(h.props['parent'])).filter((p): p is MoRef => p?.type === 'ClusterComputeResource').map((p) => p.value))];
      const clusterNames = new Map<string, string>();
      for (const c of parents) clusterNames.set(c, text((await this.client.properties(moRef('ClusterComputeResource', c), ['name']))['name']) ?? c);
      const hostMap = new Map(hosts.map((h) => {
        const parent = asMoRef(h.props['parent']);
        const cluster = parent?.type === 'ClusterComputeResource' ? clusterNames.get(parent.value) : undefined;
        return [h.obj.value, { name: text(h.props['name']) ?? h.obj.value, ...(cluster ? { cluster } : {}) }] as const;
      }));
      const out: VmwareVm[] = [];
      for (const dc of dcs) {
        const view = await this.client.containerView(dc.obj, ['VirtualMachine']);
        try {
          const vms = await this.client.retrieve([{ obj: view, type: 'VirtualMachine', paths: VM_PROPERTIES, viaView: true }]);
          for (const v of vms) {
            if (text(v.props['config.template']) === 'true') continue;
            out.push(vmFromProperties(v.obj.value, v.props, { datacenter: text(dc.props['name']) ?? dc.obj.value, hosts: hostMap }));
          }
        } finally { await this.client.destroyView(view); }
      }
      return out.sort((a, b) => a.name.localeCompare(b.name));
    } finally {
      await Promise.all([this.client.destroyView(dcView), this.client.destroyView(hostView)]);
    }
  }

  async inventory(): Promise<VmInfo[]> {
    return (await this.vms()).map((vm) => ({
      id: vm.name, name: vm.name, state: vmState(vm.powerState), ...(vm.tags.length > 0 ? { tags: [...vm.tags] } : {}),
      disks: vm.disks.map((d) => ({ id: d.id, nodeName: String(d.key), file: d.fileName, format: 'vmdk', sizeBytes: d.capacityBytes })),
    }));
  }

  async #vm(name: string): Promise<VmwareVm> {
    const vm = (await this.vms()).find((v) => v.name === name);
    if (!vm) throw new VsphereError(`no VM named ${name} on ${this.client.sdkUrl.host}`);
    return vm;
  }

  async openView(req: OpenViewRequest): Promise<View> {
    const viewId = `vmw-${req.jobId}`.replace(/[^A-Za-z0-9_.-]/g, '_');
    if (this.#views.has(viewId)) throw new VsphereError(`view ${viewId} is already open`);
    const vm = await this.#vm(req.vm);
    const vmRef = moRef('VirtualMachine', vm.moref);
    const chosen = req.disks ? vm.disks.filter((d) => req.disks!.includes(d.id)) : vm.disks;
    const missing = (req.disks ?? []).filter((id) => !vm.disks.some((d) => d.id === id));
    if (missing.length > 0) throw new VsphereError(`${vm.name} has no disk ${missing.join(', ')} (it has ${vm.disks.map((d) => d.id).join(', ')})`);
    const stacked = chosen.filter((d) => d.hasParent);
    if (stacked.length > 0) {
      throw new VsphereError(`${vm.name}: ${stacked.map((d) => d.fileName).join(', ')} sit on a snapshot delta; without VDDK only a flat base disk can be read. Delete or consolidate the VM's snapshots first`);
    }
    if (req.chain && !vm.changeTracking && this.config.enableChangeTracking !== false) {
      // Takes effect for the snapshot below (a powered-on VM needs a stun/unstun cycle, which the snapshot is).
      await this.client.runTask('ReconfigVM_Task', vmRef, { spec: { changeTrackingEnabled: true } });
      this.#log.info({ vm: vm.name }, 'change tracking switched on');
    }
    let quiesce = Boolean(req.quiesce) && vm.powerState === 'poweredOn';
    let notQuiesced = !req.quiesce ? 'the policy asks for a crash-consistent snapshot' : `${vm.name} is ${vm.powerState}: nothing to quiesce`;
    const started = Date.now();
    const snapshotArgs = { name: `${SNAPSHOT_PREFIX}${viewId}`, description: JSON.stringify({ cairn: true, viewId, jobId: req.jobId }), memory: false };
    let snapshotNode;
    try {
      snapshotNode = await this.client.runTask('CreateSnapshot_Task', vmRef, { ...snapshotArgs, quiesce });
    } catch (e) {
      if (!quiesce) throw e;
      // VMware Tools missing or failing: a crash-consistent snapshot, and the reason (the caller decides whether that will do).
      quiesce = false;
      notQuiesced = `VMware Tools did not quiesce ${vm.name}: ${(e as Error).message}`;
      this.#log.warn({ vm: vm.name, err: (e as Error).message }, 'quiesced snapshot failed; taking a crash-consistent one');
      snapshotNode = await this.client.runTask('CreateSnapshot_Task', vmRef, { ...snapshotArgs, quiesce: false });
    }
    const snapshot = asMoRef(snapshotNode);
    if (!snapshot) throw new VsphereError(`CreateSnapshot_Task on ${vm.name} returned no snapshot`);
    const exports: string[] = [];
    try {
      const frozen = devicesOf((await this.client.properties(snapshot, ['config.hardware.device']))['config.hardware.device']).disks;
      const chainKey = req.chain ? `${req.chain}/${vm.uuid ?? vm.moref}` : undefined;
      const previous = chainKey ? (await this.#readState())[chainKey] ?? {} : {};
      const disks: ViewDisk[] = [];
      const changeIds: OpenView['changeIds'] = {};
      const changedOf: SavedView['changed'] = {};
      for (const disk of chosen) {
        const base = frozen.find((f) => f.key === disk.key) ?? disk;
        const url = this.client.datastoreUrl(vm.datacenter, base.datastore, flatPath(base.path));
        const fileBytes = await this.client.fileSize(url);
        const exportName = `${viewId}-${disk.id}`;
        const plan = await this.#changedAreas(req, vmRef, snapshot, base, previous[disk.id]);
        if (base.changeId) changeIds[disk.id] = { changeId: base.changeId, capacityBytes: base.capacityBytes };
        if (plan.changed) changedOf[disk.id] = plan.changed;
        this.#serve(exportName, url, base.capacityBytes, fileBytes, `${vm.name} ${disk.id} at snapshot ${snapshot.value}`, plan.changed);
        exports.push(exportName);
        disks.push({
          disk: disk.id, exportName, sizeBytes: base.capacityBytes, mode: plan.mode, reason: plan.reason,
          ...(plan.changed ? { bitmapContext: `qemu:dirty-bitmap:${exportName}`, changedBytes: plan.changed.reduce((s, a) => s + a.length, 0) } : {}),
        });
      }
      const now = Date.now();
      const view: View = {
        viewId, vm: vm.name, jobId: req.jobId, nbd: { socketPath: this.config.nbdSocket }, disks,
        createdAt: new Date(now).toISOString(), expiresAt: new Date(now + (req.leaseMs ?? this.config.defaultLeaseMs ?? 3_600_000)).toISOString(),
        ...(req.quiesce !== undefined ? { quiesced: { frozen: quiesce, reason: quiesce ? 'VMware Tools quiesced the guest for the snapshot' : notQuiesced } } : {}),
        vmConfig: vmwareVmConfig(vm, frozen, changeIds),
      };
      await this.#saveView({ viewId, ...(chainKey ? { chain: chainKey } : {}), changeIds, changed: changedOf });
      this.#views.set(viewId, { view, vmMoref: vm.moref, snapshot: snapshot.value, changeIds, chain: chainKey, exports });
      this.#log.info({ viewId, vm: vm.name, snapshot: snapshot.value, ms: Date.now() - started, disks: disks.map((d) => `${d.disk}:${d.mode}`) }, 'vmware view opened');
      return view;
    } catch (e) {
      for (const x of exports) this.#server.removeExport(x);
      await rm(this.#viewFile(viewId), { force: true });
      await this.#removeSnapshot(snapshot.value).catch((err: Error) => this.#log.warn({ viewId, err: err.message }, 'removing the snapshot of a view that failed to open failed; reapOrphans retries'));
      throw e;
    }
  }

  async #changedAreas(req: OpenViewRequest, vm: MoRef, snapshot: MoRef, disk: VmwareDisk, previous: { changeId: string; capacityBytes: number } | undefined): Promise<{ mode: 'full' | 'incremental'; reason: string; changed?: ChangedArea[] }> {
    const query = this.config.queryChangedDiskAreas
      ?? (async (v: MoRef, s: MoRef, key: number, startOffset: number, changeId: string) => (await this.client.call('QueryChangedDiskAreas', v, { snapshot: s, deviceKey: key, startOffset, changeId }))[0]);
    return changedAreasPlan({
      mode: req.mode, chain: req.chain, disk, previous,
      query: (startOffset) => query(vm, snapshot, disk.key, startOffset, previous!.changeId),
    });
  }

  #serve(exportName: string, url: URL, capacityBytes: number, fileBytes: number, description: string, changed: readonly ChangedArea[] | undefined): void {
    this.#server.addExport(exportName, {
      source: this.#source(url, capacityBytes, fileBytes), description,
      ...(changed ? { dirty: { context: `qemu:dirty-bitmap:${exportName}`, status: async (offset: number, length: number) => dirtyExtents(changed, offset, length) } } : {}),
    });
  }

  #source(url: URL, size: number, fileBytes: number): BlockSource {
    const client = this.client;
    return {
      size,
      async read(offset, length) {
        // A thin flat file may end before the disk does: the rest reads as zeros.
        const inFile = Math.max(0, Math.min(length, fileBytes - offset));
        const data = inFile > 0 ? await client.readRange(url, offset, inFile) : Buffer.alloc(0);
        return inFile === length ? data : Buffer.concat([data, Buffer.alloc(length - inFile)]);
      },
      async blockStatus(offset, length) {
        // Everything up to the file's end is data; reading it to find zeros would read it twice.
        const end = offset + length;
        if (offset >= fileBytes) return [{ offset, length, flags: 3 }];
        return end <= fileBytes ? [{ offset, length, flags: 0 }] : [{ offset, length: fileBytes - offset, flags: 0 }];
      },
    };
  }

  /**
   * Restores disks into an existing VM: each is uploaded next to the VM's disks as
   * `cairn-restore-<tag>-<id>.vmdk` and attached as a new disk on the first disk's controller.
   */
  async restoreDisks(vmName: string, tag: string, disks: readonly RestoreDiskSource[]): Promise<UploadedDisk[]> {
    const vm = await this.#vm(vmName);
    const first = vm.disks[0];
    if (!first) throw new VsphereError(`${vm.name} has no disk to place the restored ones beside`);
    const dir = first.path.includes('/') ? first.path.slice(0, first.path.lastIndexOf('/')) : vm.name;
    const uploaded: UploadedDisk[] = [];
    for (const d of disks) {
      uploaded.push(await uploadDisk(this.client, { datacenter: vm.datacenter, datastore: first.datastore, dir, name: `cairn-restore-${tag}-${d.id}`, sizeBytes: d.sizeBytes, data: d.data }));
    }
    const taken = vm.disks.filter((d) => d.controllerKey === first.controllerKey).map((d) => d.unitNumber);
    await attachDisks(this.client, moRef('VirtualMachine', vm.moref), first.controllerKey, taken, uploaded);
    this.#log.info({ vm: vm.name, disks: uploaded.map((u) => u.fileName) }, 'disks restored into vSphere');
    return uploaded;
  }

  /**
   * Restores a whole VM into vSphere as a new VM `name` from a restore point's configuration
   * (vmwareVmConfig): its disks uploaded to `datastore` (default: where the original's first
   * disk was) in a folder of the new VM's name, then CreateVM_Task in `datacenter` (default the
   * original's) on the resource pool of `host` (default: the original's host, else the first).
   */
  async restoreVm(name: string, config: Readonly<Record<string, unknown>>, disks: readonly RestoreDiskSource[], where: { datacenter?: string; datastore?: string; host?: string } = {}, network: RestoreNetwork = {}): Promise<{ moref: string; disks: UploadedDisk[]; nics: NewVmNic[] }> {
    if (config['kind'] !== 'vmware') throw new VsphereError(`the restore point holds no VMware configuration (kind ${String(config['kind'])})`);
    if (!/^[A-Za-z0-9_.-]{1,80}$/.test(name)) throw new VsphereError(`${JSON.stringify(name)} is not a usable VM name here`);
    if ((await this.vms()).some((v) => v.name === name)) throw new VsphereError(`a VM named ${name} exists already`);
    const c = config as { vcpus?: number; memoryBytes?: number; firmware?: string; guestId?: string; placement?: { datacenter?: string; host?: string }; hostPaths?: Array<{ path: string }>; disks?: Array<{ id: string }>; nics?: Array<{ id: string; model?: string; mac?: string; source?: string }> };
    const datacenterName = where.datacenter ?? c.placement?.datacenter;
    const datastore = where.datastore ?? (c.hostPaths?.[0] ? parseDatastorePath(c.hostPaths[0].path).datastore : undefined);
    if (!datastore) throw new VsphereError('name the datastore to restore to (the restore point records none)');
    const root = this.client.service('rootFolder');
    const dcView = await this.client.containerView(root, ['Datacenter']);
    const hostView = await this.client.containerView(root, ['HostSystem']);
    let dc: { obj: MoRef; props: Record<string, Node | Node[]> } | undefined;
    let host: { obj: MoRef; props: Record<string, Node | Node[]> } | undefined;
    try {
      const dcs = await this.client.retrieve([{ obj: dcView, type: 'Datacenter', paths: ['name', 'vmFolder'], viaView: true }]);
      dc = dcs.find((d) => text(d.props['name']) === datacenterName) ?? (where.datacenter ? undefined : dcs[0]);
      const hosts = await this.client.retrieve([{ obj: hostView, type: 'HostSystem', paths: ['name', 'parent'], viaView: true }]);
      host = hosts.find((h) => text(h.props['name']) === (where.host ?? c.placement?.host)) ?? (where.host ? undefined : hosts[0]);
    } finally {
      await Promise.all([this.client.destroyView(dcView), this.client.destroyView(hostView)]);
    }
    if (!dc) throw new VsphereError(`no datacenter ${datacenterName ?? ''} on ${this.client.sdkUrl.host}`);
    if (!host) throw new VsphereError(`no host ${where.host ?? ''} on ${this.client.sdkUrl.host}`);
    const computeResource = asMoRef(host.props['parent'])!;
    const pool = asMoRef((await this.client.properties(computeResource, ['resourcePool']))['resourcePool']);
    const vmFolder = asMoRef(dc.props['vmFolder']);
    if (!pool || !vmFolder) throw new VsphereError(`cannot find the VM folder and resource pool for ${name}`);
    const dcName = text(dc.props['name'])!;
    // Every NIC's network is checked before anything is uploaded.
    const nics = await this.#restoredNics(dc.obj, c.nics ?? [], network);
    const order = (c.disks ?? []).map((d) => d.id);
    const sorted = [...disks].sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
    const uploaded: UploadedDisk[] = [];
    for (const d of sorted) uploaded.push(await uploadDisk(this.client, { datacenter: dcName, datastore, dir: name, name: `${name}-${d.id}`, sizeBytes: d.sizeBytes, data: d.data }));
    const vm = await createVm(this.client, { vmFolder, pool, host: host.obj }, {
      name, vcpus: c.vcpus ?? 1, memoryBytes: c.memoryBytes ?? 1 << 30, datastore, disks: uploaded, nics,
      ...(c.guestId ? { guestId: c.guestId } : {}), ...(c.firmware ? { firmware: c.firmware } : {}),
    });
    this.#log.info({ vm: name, moref: vm.value, disks: uploaded.map((u) => u.fileName), nics: nics.map((n) => `${n.label}:${n.network.name}`) }, 'VM restored into vSphere');
    return { moref: vm.value, disks: uploaded, nics };
  }

  /**
   * The restored VM's NICs: each on the network the map names for its original one, else the
   * original (by name, or by key for a distributed port group), found among the datacenter's
   * networks; one not found is refused naming those there are. With `none`, every NIC is kept but
   * not connected at power-on (on the first network when its own is not here).
   */
  async #restoredNics(datacenter: MoRef, nics: ReadonlyArray<{ id: string; model?: string; mac?: string; source?: string }>, o: RestoreNetwork): Promise<NewVmNic[]> {
    if (nics.length === 0) return [];
    const view = await this.client.containerView(datacenter, ['Network']);
    let networks: Array<{ obj: MoRef; props: Record<string, Node | Node[]> }>;
    try { networks = await this.client.retrieve([{ obj: view, type: 'Network', paths: ['name'], viaView: true }]); } finally { await this.client.destroyView(view); }
    const found = new Map<string, NewVmNic['network']>();
    const resolve = async (wanted: string): Promise<NewVmNic['network'] | undefined> => {
      if (found.has(wanted)) return found.get(wanted);
      const n = networks.find((x) => text(x.props['name']) === wanted) ?? networks.find((x) => x.obj.type === 'DistributedVirtualPortgroup' && x.obj.value === wanted);
      if (!n) return undefined;
      const name = text(n.props['name']) ?? n.obj.value;
      let net: NewVmNic['network'] = { name, moref: n.obj };
      if (n.obj.type === 'DistributedVirtualPortgroup') {
        const pg = await this.client.properties(n.obj, ['key', 'config.distributedVirtualSwitch']);
        const dvs = asMoRef(pg['config.distributedVirtualSwitch']);
        const switchUuid = dvs ? text((await this.client.properties(dvs, ['uuid']))['uuid']) : undefined;
        if (!switchUuid) throw new VsphereError(`cannot read the distributed switch of port group ${name}`);
        net = { ...net, dvs: { switchUuid, portgroupKey: text(pg['key']) ?? n.obj.value } };
      }
      found.set(wanted, net);
      return net;
    };
    const out: NewVmNic[] = [];
    const missing: string[] = [];
    for (const [i, nic] of nics.entries()) {
      const source = nic.source ?? '';
      const wanted = o.map?.[source] ?? source;
      let net = wanted ? await resolve(wanted) : undefined;
      if (!net && o.none && networks[0]) net = await resolve(text(networks[0].props['name']) ?? networks[0].obj.value);
      if (!net) { missing.push(`${nic.id} (${wanted || 'no network'})`); continue; }
      out.push({ label: `Network adapter ${i + 1}`, model: nic.model ?? 'VirtualVmxnet3', network: net, connected: !o.none, ...(o.keepMacs && nic.mac ? { mac: nic.mac } : {}) });
    }
    if (missing.length > 0) {
      throw new VsphereError(`no network for ${missing.join(', ')} here (networks: ${networks.map((n) => text(n.props['name']) ?? n.obj.value).join(', ') || 'none'}): map it with a network map (src=dst) or restore with no network`);
    }
    return out;
  }

  async releaseView(viewId: string, outcome: { success: boolean }): Promise<void> {
    const open = this.#views.get(viewId);
    if (!open) return;
    for (const x of open.exports) this.#server.removeExport(x);
    if (open.snapshot) await this.#removeSnapshot(open.snapshot);
    if (outcome.success && open.chain) {
      const state = await this.#readState();
      await this.#writeState({ ...state, [open.chain]: open.changeIds });
    }
    await rm(this.#viewFile(viewId), { force: true });
    this.#views.delete(viewId);
    this.#log.info({ viewId, vm: open.view.vm, success: outcome.success }, 'vmware view released');
  }

  async #removeSnapshot(snapshot: string): Promise<void> {
    try {
      await this.client.runTask('RemoveSnapshot_Task', moRef('VirtualMachineSnapshot', snapshot), { removeChildren: false, consolidate: true });
    } catch (e) {
      if ((e as VsphereError).faultType === 'ManagedObjectNotFound' || /ManagedObjectNotFound|has already been deleted|not found/i.test((e as Error).message)) return;
      throw e;
    }
  }

  openViews(): View[] { return [...this.#views.values()].map((v) => v.view); }

  adoptView(view: View): void {
    if (this.#views.has(view.viewId)) return;
    // Its exports died with the earlier run: reapOrphans (which the coordinator runs right after
    // adopting) finds the snapshot by name and serves them again on this run's socket.
    this.#views.set(view.viewId, { view, vmMoref: '', snapshot: undefined, changeIds: {}, chain: undefined, exports: [] });
  }

  /**
   * Serves an adopted view again: its disks read from the snapshot's frozen base disks as before,
   * under the same export names (the view's socket path is this run's), the incremental ones with
   * the changed areas the view was opened with. Without them (no saved view file) an incremental
   * disk cannot be served as it was: the view is left unserved, its snapshot known so that the
   * release removes it, and the mover's read fails naming the export.
   */
  async #serveAdopted(open: OpenView, vm: VmwareVm, snapshot: string): Promise<void> {
    const viewId = open.view.viewId;
    const saved = await this.#readView(viewId);
    const adopted: OpenView = { ...open, vmMoref: vm.moref, snapshot, changeIds: saved?.changeIds ?? {}, chain: saved?.chain, exports: [] };
    this.#views.set(viewId, adopted);
    const frozen = devicesOf((await this.client.properties(moRef('VirtualMachineSnapshot', snapshot), ['config.hardware.device']))['config.hardware.device']).disks;
    for (const d of open.view.disks) {
      const base = frozen.find((f) => f.id === d.disk);
      if (!base) throw new VsphereError(`snapshot ${snapshot} of ${vm.name} has no disk ${d.disk}`);
      const changed = saved?.changed[d.disk];
      if (d.bitmapContext && !changed) throw new VsphereError(`the changed areas of ${d.disk} in view ${viewId} were not kept; the view cannot be served again`);
      const url = this.client.datastoreUrl(vm.datacenter, base.datastore, flatPath(base.path));
      this.#serve(d.exportName, url, base.capacityBytes, await this.client.fileSize(url), `${vm.name} ${d.disk} at snapshot ${snapshot} (adopted)`, d.bitmapContext ? changed : undefined);
      adopted.exports.push(d.exportName);
    }
    this.#log.info({ viewId, vm: vm.name, snapshot, exports: adopted.exports }, 'adopted vmware view served again');
  }

  async reapOrphans(keep?: ReadonlySet<string>): Promise<ReapReport> {
    const keepIds = keep ?? new Set(this.#views.keys());
    const removed: string[] = [];
    for (const vm of await this.vms()) {
      for (const s of vm.snapshots) {
        if (!s.name.startsWith(SNAPSHOT_PREFIX)) continue;
        const viewId = s.name.slice(SNAPSHOT_PREFIX.length);
        if (keepIds.has(viewId)) {
          const open = this.#views.get(viewId);
          if (open && !open.snapshot) {
            await this.#serveAdopted(open, vm, s.moref).catch((e: Error) => this.#log.warn({ viewId, vm: vm.name, err: e.message }, 'an adopted view could not be served again; its snapshot goes at its release'));
          }
          continue;
        }
        await this.#removeSnapshot(s.moref);
        await rm(this.#viewFile(viewId), { force: true });
        this.#views.delete(viewId);
        removed.push(`${vm.name}/${s.name}`);
        this.#log.warn({ vm: vm.name, snapshot: s.name }, 'orphaned cairn snapshot removed');
      }
    }
    // Adopted views whose snapshot is gone or was just removed are finished.
    for (const [id, v] of this.#views) if (!v.snapshot && !keepIds.has(id)) this.#views.delete(id);
    return { exports: [], jobs: [], nodes: removed, files: [], bitmaps: [] };
  }

  async quiesce(vm: string): Promise<QuiesceResult> {
    // VMware quiesces inside CreateSnapshot_Task (quiesce: true) through VMware Tools; there is no separate freeze.
    const v = await this.#vm(vm);
    return { frozen: false, reason: `${v.name}: VMware quiesces only while taking a snapshot (openView with quiesce)` };
  }

  async thaw(): Promise<void> { /* nothing is frozen outside a snapshot */ }

  /**
   * Follows inventory changes (PropertyCollector WaitForUpdatesEx on a collector of its own): `onChange`
   * is called when a VM appears, goes, is renamed, changes power state or its devices. Resolves
   * once the first (complete) update set has come, from which on every change is reported.
   */
  watch(onChange: () => void): Promise<void> {
    if (this.#watch) return this.#watch.ready;
    let ready!: () => void;
    const w: { stop: boolean; collector?: MoRef; ready: Promise<void> } = { stop: false, ready: new Promise<void>((r) => { ready = r; }) };
    this.#watch = w;
    const loop = async (): Promise<void> => {
      const [pcNode] = await this.client.call('CreatePropertyCollector', this.client.service('propertyCollector'));
      const pc = asMoRef(pcNode)!;
      w.collector = pc;
      const view = await this.client.containerView(this.client.service('rootFolder'), ['VirtualMachine']);
      await this.client.call('CreateFilter', pc, {
        spec: {
          propSet: [{ type: 'VirtualMachine', pathSet: ['name', 'runtime.powerState', 'config.hardware.device'] }],
          objectSet: [{ obj: view, skip: true, selectSet: [{ $type: 'TraversalSpec', name: 'view', type: 'ContainerView', path: 'view', skip: false }] }],
        },
        partialUpdates: false,
      });
      let version = '';
      let first = true;
      while (!w.stop) {
        const [set] = await this.client.call('WaitForUpdatesEx', pc, { version, options: { maxWaitSeconds: 20 } });
        if (w.stop) break;
        if (!set) continue;
        version = text(field(set, 'version')) ?? version;
        if (!first && list(field(set, 'filterSet')).length > 0) onChange();
        if (first) ready();
        first = false;
      }
    };
    const run = (): void => {
      loop().catch((e: Error) => {
        if (w.stop) return;
        this.#log.warn({ err: e.message }, 'vSphere inventory watch failed; starting again in 5 s');
        setTimeout(run, 5000).unref();
      });
    };
    run();
    return w.ready;
  }

  async close(): Promise<void> {
    if (this.#watch) {
      this.#watch.stop = true;
      if (this.#watch.collector) await this.client.call('DestroyPropertyCollector', this.#watch.collector).catch(() => undefined);
    }
    await this.#server.close();
    await this.client.close();
  }

  #viewFile(viewId: string): string { return join(dirname(this.config.stateFile), 'views', `${viewId}.json`); }

  async #saveView(saved: SavedView): Promise<void> {
    const file = this.#viewFile(saved.viewId);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(`${file}.tmp`, JSON.stringify(saved) + '\n');
    await rename(`${file}.tmp`, file);
  }

  async #readView(viewId: string): Promise<SavedView | undefined> {
    try { return JSON.parse(await readFile(this.#viewFile(viewId), 'utf8')) as SavedView; } catch { return undefined; }
  }

  async #readState(): Promise<ChainState> {
    try { return JSON.parse(await readFile(this.config.stateFile, 'utf8')) as ChainState; } catch { return {}; }
  }

  async #writeState(state: ChainState): Promise<void> {
    await mkdir(dirname(this.config.stateFile), { recursive: true });
    await writeFile(`${this.config.stateFile}.tmp`, JSON.stringify(state, null, 2) + '\n');
    await rename(`${this.config.stateFile}.tmp`, this.config.stateFile);
  }
}

/** The dirty context's extents for [offset, offset+length): changed areas dirty, the rest clean. */
export function dirtyExtents(changed: readonly ChangedArea[], offset: number, length: number): Extent[] {
  const end = offset + length;
  const out: Extent[] = [];
  let pos = offset;
  for (const a of changed) {
    const aEnd = a.start + a.length;
    if (aEnd <= pos || a.start >= end) continue;
    if (a.start > pos) out.push({ offset: pos, length: a.start - pos, flags: 0 });
    const s = Math.max(pos, a.start);
    const e = Math.min(end, aEnd);
    out.push({ offset: s, length: e - s, flags: STATE_DIRTY });
    pos = e;
  }
  if (pos < end) out.push({ offset: pos, length: end - pos, flags: 0 });
  return out;
}

/**
 * The VM configuration a VMware restore point carries (and a libvirt domain is translated from):
 * the portable part (vCPUs, memory, firmware, disks by id and size, NICs) in the shape the other
 * adapters use, with vSphere's own names beside it and the datastore paths apart as host-specific.
 */
export function vmwareVmConfig(vm: VmwareVm, frozen: readonly VmwareDisk[], changeIds: Record<string, { changeId: string }>): Record<string, unknown> {
  const disks = vm.disks.map((d) => ({ disk: d, at: frozen.find((x) => x.key === d.key) ?? d }));
  return {
    kind: 'vmware',
    name: vm.name, ...(vm.uuid ? { uuid: vm.uuid } : {}),
    vcpus: vm.numCpu, memoryBytes: vm.memoryMB * 1024 * 1024, firmware: vm.firmware === 'efi' ? 'efi' : 'bios', ...(vm.guestId ? { guestId: vm.guestId } : {}),
    placement: { datacenter: vm.datacenter, ...(vm.host ? { host: vm.host } : {}), ...(vm.cluster ? { cluster: vm.cluster } : {}) },
    disks: disks.map(({ disk: d, at: f }) => ({
      id: d.id, format: 'vmdk', sizeBytes: f.capacityBytes, key: d.key, label: d.label, backing: f.backing, thinProvisioned: f.thinProvisioned,
      controllerKey: d.controllerKey, unitNumber: d.unitNumber, ...(changeIds[d.id] ? { changeId: changeIds[d.id]!.changeId } : {}),
    })),
    nics: vm.nics.map((n) => ({ id: n.label, model: n.type, ...(n.mac ? { mac: n.mac } : {}), ...(n.network ? { source: n.network } : {}) })),
    tags: vm.tags,
    hostPaths: disks.map(({ disk: d, at: f }) => ({ where: `disk ${d.id}`, path: f.fileName })),
    secrets: [],
  };
}
