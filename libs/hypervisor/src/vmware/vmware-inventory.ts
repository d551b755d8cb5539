// What Cairn needs from a vSphere VM, read from PropertyCollector results without I/O: disks
// (datastore path, capacity, backing, change id), NICs, CPU and memory, power state, where it
// runs (datacenter, cluster, host) and its tags; and the names of Cairn's own snapshots.
import { field, list, text, xsiType, type Node } from './vsphere-xml.ts';

export interface VmwareDisk {
  /** Stable id within the VM: controller kind, bus and unit (`scsi0-0`). */
  readonly id: string;
  /** The device key (what QueryChangedDiskAreas and ReconfigVM_Task name the disk by). */
  readonly key: number;
  readonly label: string;
  /** `[datastore] dir/name.vmdk` as vSphere names it. */
  readonly fileName: string;
  readonly datastore: string;
  /** Path of the descriptor inside the datastore (`dir/name.vmdk`). */
  readonly path: string;
  readonly capacityBytes: number;
  /** Backing type, e.g. VirtualDiskFlatVer2BackingInfo. */
  readonly backing: string;
  readonly thinProvisioned: boolean;
  /** The disk sits on a delta (an earlier snapshot's child): its flat file is not the whole disk. */
  readonly hasParent: boolean;
  /** CBT change id at this point (snapshot configs carry it when change tracking is on). */
  readonly changeId?: string;
  readonly controllerKey: number;
  readonly unitNumber: number;
}

export interface VmwareNic { readonly label: string; readonly type: string; readonly mac?: string; readonly network?: string }

export interface VmwareVm {
  readonly moref: string;
  readonly name: string;
  readonly uuid?: string;
  readonly powerState: string;
  readonly numCpu: number;
  readonly memoryMB: number;
  readonly guestId?: string;
  readonly firmware?: string;
  readonly changeTracking: boolean;
  readonly disks: readonly VmwareDisk[];
  readonly nics: readonly VmwareNic[];
  readonly tags: readonly string[];
  readonly datacenter: string;
  readonly host?: string;
  readonly cluster?: string;
  /** Snapshots by name (the whole tree, flattened), with their managed object ids. */
  readonly snapshots: ReadonlyArray<{ readonly name: string; readonly moref: string; readonly description?: string }>;
}

/** `[LocalDS_0] dir/disk.vmdk` → datastore and path. */
export function parseDatastorePath(fileName: string): { datastore: string; path: string } {
  const m = /^\[([^\]]+)\]\s*(.*)$/.exec(fileName);
  if (!m) throw new Error(`not a datastore path: ${fileName}`);
  return { datastore: m[1]!, path: m[2]! };
}

/** The flat extent of a monolithic-flat disk: `dir/disk.vmdk` → `dir/disk-flat.vmdk`. */
export function flatPath(path: string): string {
  return path.replace(/\.vmdk$/i, '-flat.vmdk');
}

const CONTROLLERS: ReadonlyArray<[RegExp, string]> = [
  [/SCSI|LsiLogic|BusLogic/i, 'scsi'], [/IDE/i, 'ide'], [/AHCI|SATA/i, 'sata'], [/NVME/i, 'nvme'],
];

const num = (v: Node | Node[] | undefined): number => Number(text(v) ?? NaN);

/** Disks and NICs from `config.hardware.device` (of a VM or of a snapshot). */
export function devicesOf(devices: Node | Node[] | undefined): { disks: VmwareDisk[]; nics: VmwareNic[] } {
  const all = list(field(devices, 'VirtualDevice'));
  const controllers = new Map<number, { kind: string; bus: number }>();
  for (const d of all) {
    const type = xsiType(d) ?? '';
    const kind = CONTROLLERS.find(([re]) => re.test(type))?.[1];
    const bus = text(field(d, 'busNumber'));
    if (kind && bus !== undefined && /Controller$/.test(type)) controllers.set(num(field(d, 'key')), { kind, bus: Number(bus) });
  }
  const disks: VmwareDisk[] = [];
  const nics: VmwareNic[] = [];
  for (const d of all) {
    const type = xsiType(d) ?? '';
    const label = text(field(d, 'deviceInfo', 'label')) ?? type;
    const backing = field(d, 'backing') as Node | undefined;
    if (type === 'VirtualDisk') {
      const fileName = text(field(backing, 'fileName')) ?? '';
      const { datastore, path } = parseDatastorePath(fileName);
      const controllerKey = num(field(d, 'controllerKey'));
      const unitNumber = num(field(d, 'unitNumber'));
      const c = controllers.get(controllerKey);
      const bytes = text(field(d, 'capacityInBytes'));
      const changeId = text(field(backing, 'changeId'));
      disks.push({
        id: c ? `${c.kind}${c.bus}-${unitNumber}` : `disk${num(field(d, 'key'))}`,
        key: num(field(d, 'key')), label, fileName, datastore, path,
        capacityBytes: bytes !== undefined && Number(bytes) > 0 ? Number(bytes) : num(field(d, 'capacityInKB')) * 1024,
        backing: xsiType(backing) ?? 'unknown',
        thinProvisioned: text(field(backing, 'thinProvisioned')) === 'true',
        hasParent: field(backing, 'parent') !== undefined,
        ...(changeId ? { changeId } : {}),
        controllerKey, unitNumber,
      });
    } else if (field(d, 'macAddress') !== undefined || /Ethernet|Vmxnet|E1000|Pcnet|Sriov/i.test(type)) {
      const network = text(field(backing, 'deviceName')) ?? text(field(backing, 'port', 'portgroupKey'));
      const mac = text(field(d, 'macAddress'));
      nics.push({ label, type, ...(mac ? { mac } : {}), ...(network ? { network } : {}) });
    }
  }
  return { disks, nics };
}

export const VM_PROPERTIES = [
  'name', 'config.uuid', 'config.hardware.numCPU', 'config.hardware.memoryMB', 'config.hardware.device',
  'config.guestId', 'config.firmware', 'config.changeTrackingEnabled', 'runtime.powerState', 'runtime.host',
  'snapshot', 'tag', 'config.template',
] as const;

function flattenSnapshots(nodes: Node[], out: Array<{ name: string; moref: string; description?: string }>): void {
  for (const n of nodes) {
    const name = text(field(n, 'name'));
    const moref = text(field(n, 'snapshot'));
    const description = text(field(n, 'description'));
    if (name && moref) out.push({ name, moref, ...(description ? { description } : {}) });
    flattenSnapshots(list(field(n, 'childSnapshotList')), out);
  }
}

/** A VM from its retrieved properties; `where` names its datacenter and, by host moref, host and cluster. */
export function vmFromProperties(moref: string, props: Record<string, Node | Node[]>, where: { datacenter: string; hosts: ReadonlyMap<string, { name: string; cluster?: string }> }): VmwareVm {
  const { disks, nics } = devicesOf(props['config.hardware.device']);
  const snapshots: Array<{ name: string; moref: string; description?: string }> = [];
  flattenSnapshots(list(field(props['snapshot'], 'rootSnapshotList')), snapshots);
  const hostRef = text(props['runtime.host']);
  const host = hostRef ? where.hosts.get(hostRef) : undefined;
  const tags = list(field(props['tag'], 'Tag')).map((t) => text(field(t, 'key'))).filter((t): t is string => Boolean(t));
  const uuid = text(props['config.uuid']);
  const guestId = text(props['config.guestId']);
  const firmware = text(props['config.firmware']);
  return {
    moref, name: text(props['name']) ?? moref,
    ...(uuid ? { uuid } : {}),
    powerState: text(props['runtime.powerState']) ?? 'unknown',
    numCpu: num(props['config.hardware.numCPU']) || 1,
    memoryMB: num(props['config.hardware.memoryMB']) || 0,
    ...(guestId ? { guestId } : {}), ...(firmware ? { firmware } : {}),
    changeTracking: text(props['config.changeTrackingEnabled']) === 'true',
    disks, nics, tags, datacenter: where.datacenter,
    ...(host ? { host: host.name, ...(host.cluster ? { cluster: host.cluster } : {}) } : {}),
    snapshots,
  };
}

/** vSphere power state → the port's VM state. */
export function vmState(powerState: string): 'running' | 'paused' | 'stopped' | string {
  return powerState === 'poweredOn' ? 'running' : powerState === 'suspended' ? 'paused' : powerState === 'poweredOff' ? 'stopped' : powerState;
}
