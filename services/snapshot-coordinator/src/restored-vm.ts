// DefineRestoredVm: the last step of a whole-VM restore onto a libvirt hypervisor. What is
// defined comes from the restore job's own stream (the plan its first start recorded: name,
// UUID, MACs, disks, networks, and the restore point's domain XML), never from the sender;
// only a job that is running with every disk written gets its domain. Idempotent: a domain of
// that name with the plan's UUID is the one an earlier attempt defined. For an in-place
// restore (PrepareInPlaceRestore before any disk is written, DefineRestoredVm after) the
// domain exists already: it must be shut off before and still after, and is started if asked.
// In place over a QEMU VM: shut off means its monitor does not answer; the images are those its
// last inventory named (QemuStoppedFallbackAdapter); it is not started by Cairn.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventStreamReader } from '@cairn/eventlog';
import { fold } from '@cairn/eventlog';
import { restoreDecider } from '@cairn/jobs';
import {
  DomainExistsError, DomainRunningError, DomainXmlError, QemuStoppedFallbackAdapter, StoragePoolError, UnknownVmError, VmwareAdapter, VsphereError,
  domainXmlForRestore, imageInfo, libvirtConfigFromVmware, moRef, type LibvirtAdapter, type HypervisorAdapter, type LibvirtVmConfig,
} from '@cairn/hypervisor';
import type { KnownEvent } from '@cairn/contracts';
import { SnapshotCommandError } from './snapshot-coordinator.service.ts';

export interface DefinedVm { host: string; domain: string; uuid: string; macs: string[]; started: boolean; vmware?: { moref: string; attached?: string[] } }

type Libvirt = HypervisorAdapter & Partial<Pick<LibvirtAdapter, 'defineRestored' | 'shutOffDisks' | 'finishInPlace' | 'importIntoPool'>>;

async function restoreState(restoreId: string, log: EventStreamReader) {
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(`restore-${restoreId}`)) events.push(r.event);
  const state = fold(restoreDecider, events);
  if (state.status === 'none') throw new SnapshotCommandError('not_found', `no restore ${restoreId}`);
  return state;
}

function libvirtOf(adapters: ReadonlyMap<string, HypervisorAdapter>, host: string): Libvirt & Required<Pick<Libvirt, 'defineRestored' | 'shutOffDisks' | 'finishInPlace' | 'importIntoPool'>> {
  const adapter = adapters.get(host) as Libvirt | undefined;
  if (adapter?.kind !== 'libvirt' || !adapter.defineRestored || !adapter.shutOffDisks || !adapter.finishInPlace || !adapter.importIntoPool) {
    throw new SnapshotCommandError('not_found', `${host} is not a libvirt hypervisor of this coordinator (add it with cairn hypervisor add libvirt)`);
  }
  return adapter as never;
}

function refusal(e: unknown): never {
  if (e instanceof DomainRunningError || e instanceof DomainExistsError) throw new SnapshotCommandError('conflict', e.message);
  if (e instanceof UnknownVmError) throw new SnapshotCommandError('not_found', e.message);
  if (e instanceof StoragePoolError) throw new SnapshotCommandError(e.code === 'invalid' ? 'invalid_command' : e.code, e.message);
  throw e;
}

/** A QEMU hypervisor whose VM is known from its image files once its QEMU has ended. */
function stoppedQemuOf(adapters: ReadonlyMap<string, HypervisorAdapter>, host: string): QemuStoppedFallbackAdapter | undefined {
  const a = adapters.get(host);
  return a instanceof QemuStoppedFallbackAdapter ? a : undefined;
}

/**
 * QEMU: shut off means its monitor does not answer (the process is gone); the image files are
 * those its last inventory named. The data mover checks that no process holds them before writing.
 */
async function qemuShutOff(q: QemuStoppedFallbackAdapter, vmName: string, host: string) {
  if (await q.answers()) {
    throw new SnapshotCommandError('conflict', `${vmName} is running (the QEMU monitor of ${host} answers at ${q.online.config.qmpSocket}): an in-place restore needs it shut off (QMP quit, or shut the guest down); nothing was changed`);
  }
  const last = q.lastKnown;
  if (!last || last.name !== vmName) throw new SnapshotCommandError('not_found', `${host} has not reported ${vmName} and its disks: an in-place restore needs to know which image files to overwrite; restore it as a new VM with --vm`);
  const disks = [];
  for (const d of last.disks) disks.push({ target: d.id, path: d.file, format: (await imageInfo(d.file).catch(() => undefined))?.format ?? 'missing' });
  return { domain: vmName, uuid: '', disks };
}

/** Before an in-place restore writes anything: the domain the request names is shut off; its disks. */
export async function prepareInPlaceRestore(restoreId: string, log: EventStreamReader, adapters: ReadonlyMap<string, HypervisorAdapter>) {
  const state = await restoreState(restoreId, log);
  const t = state.request!.target;
  if (t.kind !== 'vm' || !t.inPlace || !t.host) throw new SnapshotCommandError('invalid_command', `restore ${restoreId} is not an in-place restore`);
  if (state.status !== 'requested' && state.status !== 'running') throw new SnapshotCommandError('conflict', `restore ${restoreId} is ${state.status}`);
  const qemu = stoppedQemuOf(adapters, t.host);
  if (qemu) return qemuShutOff(qemu, t.vmName, t.host);
  try {
    const d = await libvirtOf(adapters, t.host).shutOffDisks(t.vmName);
    return { domain: t.vmName, uuid: d.uuid, disks: d.disks.map(({ target, path, format }) => ({ target, path, format })) };
  } catch (e) { return refusal(e); }
}

export async function defineRestoredVm(restoreId: string, log: EventStreamReader, adapters: ReadonlyMap<string, HypervisorAdapter>): Promise<DefinedVm> {
  const state = await restoreState(restoreId, log);
  const vm = state.plan?.vm;
  if (vm?.qemuInPlace) {
    // The images were written over: still shut off (else the restore raced a start). Cairn does not start it (it keeps no command line of it).
    if (state.status !== 'running' && state.status !== 'completed') throw new SnapshotCommandError('conflict', `restore ${restoreId} is ${state.status}`);
    const qemu = stoppedQemuOf(adapters, vm.qemuInPlace.host);
    if (!qemu) throw new SnapshotCommandError('not_found', `${vm.qemuInPlace.host} is not a QEMU hypervisor of this coordinator`);
    if (await qemu.answers()) throw new SnapshotCommandError('conflict', `${vm.name} was started while its disks were being restored: shut it down and restore again`);
    return { host: vm.qemuInPlace.host, domain: vm.name, uuid: vm.uuid, macs: [], started: false };
  }
  if (!vm?.libvirt) throw new SnapshotCommandError('invalid_command', `restore ${restoreId} makes no libvirt domain`);
  if (state.status !== 'running' && state.status !== 'completed') throw new SnapshotCommandError('conflict', `restore ${restoreId} is ${state.status}`);
  const missing = state.plan!.disks.filter((d) => !state.written.has(d.disk)).map((d) => d.disk);
  if (missing.length > 0) throw new SnapshotCommandError('conflict', `restore ${restoreId} has not written ${missing.join(', ')} yet`);
  const target = adapters.get(vm.libvirt.host);
  if (vm.libvirt.attach) {
    if (!(target instanceof VmwareAdapter)) throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: ${vm.libvirt.host} is not a VMware hypervisor of this coordinator; disks are attached to vSphere VMs only`);
    return attachInVsphere(restoreId, target, vm.libvirt.host, state.plan!.disks, vm);
  }
  if (target instanceof VmwareAdapter && !vm.libvirt.inPlace) return intoVsphere(restoreId, target, vm.libvirt.host, state.plan!.disks, vm);
  const adapter = libvirtOf(adapters, vm.libvirt.host);
  if (vm.libvirt.inPlace) {
    try {
      return { host: vm.libvirt.host, domain: vm.name, ...await adapter.finishInPlace(vm.name, vm.start) };
    } catch (e) { return refusal(e); }
  }
  // A VMware VM's configuration (plans keep it since the restore into vSphere) becomes a libvirt domain here.
  const raw = vm.config as unknown as { kind: string };
  const config = (raw.kind === 'vmware' ? libvirtConfigFromVmware(raw as Record<string, unknown>) : raw) as unknown as LibvirtVmConfig;
  if (config.kind !== 'libvirt' || typeof config.domainXml !== 'string') throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: the restore point keeps no libvirt domain XML`);
  const macs = config.summary.nics.map((_, i) => vm.macs[`nic${i}`] ?? '');
  // --storage <pool>: the written files become the pool's volumes, the domain defined on them.
  let files = new Map(state.plan!.disks.map((d) => [d.path, d.path]));
  if (vm.libvirt.pool) {
    try {
      files = await adapter.importIntoPool(vm.libvirt.pool, state.plan!.disks.map((d) => ({
        name: `${vm.name}-${d.disk}.${d.format}`, file: d.path, format: d.format, capacityBytes: d.sizeBytes,
      })));
    } catch (e) { return refusal(e); }
  }
  let xml: string;
  try {
    xml = domainXmlForRestore(config, {
      name: vm.name, uuid: vm.uuid, macs,
      // A VMware VM's disks (scsi0-0…) became the targets its translation chose (vda…).
      disks: Object.fromEntries(state.plan!.disks.map((d) => [(config as { targets?: Record<string, string> }).targets?.[d.disk] ?? d.disk, { file: files.get(d.path) ?? d.path, format: d.format }])),
      networkMap: vm.libvirt.networkMap, noNetwork: vm.libvirt.noNetwork,
      serialLog: join(vm.dir, 'serial.log'),
    });
  } catch (e) {
    if (e instanceof DomainXmlError) throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: ${e.message}`);
    throw e;
  }
  try {
    const defined = await adapter.defineRestored(xml, { name: vm.name, uuid: vm.uuid, start: vm.start });
    return { host: vm.libvirt.host, domain: vm.name, ...defined };
  } catch (e) { return refusal(e); }
}

type PlannedVm = NonNullable<NonNullable<Awaited<ReturnType<typeof restoreState>>['plan']>['vm']>;
type PlannedDisks = NonNullable<Awaited<ReturnType<typeof restoreState>>['plan']>['disks'];

/**
 * Into vSphere: the raw disks the data mover wrote are uploaded to the datastore as flat VMDKs
 * and a VM is created from the restore point's VMware configuration (CreateVM_Task), powered on
 * when asked. A VM of that name whose disks are this restore's uploads is the one an earlier
 * attempt made; any other VM of that name is a conflict.
 */
async function intoVsphere(restoreId: string, adapter: VmwareAdapter, host: string, disks: PlannedDisks, vm: PlannedVm): Promise<DefinedVm> {
  const config = vm.config as unknown as Record<string, unknown>;
  if (config['kind'] !== 'vmware') throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: ${host} is a VMware hypervisor, and the restore point is of a ${String(config['kind'])} VM (restore it onto libvirt or as a QEMU VM)`);
  if (vm.libvirt?.pool) {
    throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: --storage <pool> is a libvirt storage pool; a vSphere VM gets its disks on the restore point's datastore`);
  }
  const notRaw = disks.filter((d) => d.format !== 'raw').map((d) => d.disk);
  if (notRaw.length > 0) throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: a vSphere restore uploads raw disks (flat VMDKs); ${notRaw.join(', ')} were written as qcow2 (restore with --format raw)`);
  const existing = (await adapter.vms()).find((v) => v.name === vm.name);
  let moref: string;
  if (existing) {
    const ours = existing.disks.length === disks.length && existing.disks.every((d) => d.fileName.includes(` ${vm.name}/${vm.name}-`));
    if (!ours) throw new SnapshotCommandError('conflict', `a VM named ${vm.name} exists already on ${host}; choose another --vm name`);
    moref = existing.moref;
  } else {
    const sources = [];
    for (const d of disks) sources.push({ id: d.disk, sizeBytes: (await stat(d.path)).size, data: createReadStream(d.path) });
    try {
      // NICs on the original networks or the mapped ones; disconnected with --no-network; MACs kept with --keep-identity.
      moref = (await adapter.restoreVm(vm.name, config, sources, {}, {
        map: vm.libvirt?.networkMap ?? {}, none: vm.libvirt?.noNetwork ?? false, keepMacs: Boolean(config['uuid']) && vm.uuid === config['uuid'],
      })).moref;
    } catch (e) {
      for (const s of sources) s.data.destroy();
      if (e instanceof VsphereError && /exists already/.test(e.message)) throw new SnapshotCommandError('conflict', e.message);
      if (e instanceof VsphereError && /not a usable|name the datastore|no datacenter|no host|whole 512-byte|no network for/.test(e.message)) throw new SnapshotCommandError('invalid_command', e.message);
      throw e;
    }
  }
  let started = existing?.powerState === 'poweredOn';
  if (vm.start && !started) {
    await adapter.vsphere.runTask('PowerOnVM_Task', moRef('VirtualMachine', moref));
    started = true;
  }
  return { host, domain: vm.name, uuid: vm.uuid, macs: [], started, vmware: { moref } };
}

/**
 * Into an existing vSphere VM: each raw disk the data mover wrote is uploaded beside the VM's own
 * disks as `cairn-restore-<restoreId>-<disk>` and attached as a new disk (nothing of the VM is
 * overwritten; it may run). A VM that already has this restore's disks got them from an earlier
 * attempt (a redelivered job): nothing is uploaded again.
 */
async function attachInVsphere(restoreId: string, adapter: VmwareAdapter, host: string, disks: PlannedDisks, vm: PlannedVm): Promise<DefinedVm> {
  const notRaw = disks.filter((d) => d.format !== 'raw').map((d) => d.disk);
  if (notRaw.length > 0) throw new SnapshotCommandError('invalid_command', `restore ${restoreId}: disks attached in vSphere are uploaded raw; ${notRaw.join(', ')} were written as qcow2`);
  const existing = (await adapter.vms()).find((v) => v.name === vm.name);
  if (!existing) throw new SnapshotCommandError('not_found', `no VM named ${vm.name} on ${host} to attach the restored disks to`);
  // The file names say which restore made them (the datastore takes [A-Za-z0-9_.-] names of up to 80 characters).
  const tag = restoreId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40);
  const ours = existing.disks.filter((d) => d.fileName.includes(`/cairn-restore-${tag}-`)).map((d) => d.fileName);
  let attached = ours;
  if (ours.length < disks.length) {
    const done = new Set(disks.filter((d) => ours.some((f) => f.endsWith(`/cairn-restore-${tag}-${d.disk}.vmdk`))).map((d) => d.disk));
    const sources = [];
    for (const d of disks.filter((x) => !done.has(x.disk))) sources.push({ id: d.disk, sizeBytes: (await stat(d.path)).size, data: createReadStream(d.path) });
    try {
      const uploaded = await adapter.restoreDisks(vm.name, tag, sources);
      attached = [...ours, ...uploaded.map((u) => u.fileName)];
    } catch (e) {
      for (const s of sources) s.data.destroy();
      if (e instanceof VsphereError && /no VM named|has no disk|whole 512-byte/.test(e.message)) throw new SnapshotCommandError('invalid_command', e.message);
      throw e;
    }
  }
  return { host, domain: vm.name, uuid: existing.uuid ?? '', macs: [], started: existing.powerState === 'poweredOn', vmware: { moref: existing.moref, attached } };
}
