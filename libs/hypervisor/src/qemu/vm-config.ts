// The configuration of a VM running under plain QEMU, read through QMP for its restore
// points: machine type, vCPUs, memory, disks and NICs. Every query is best effort (a
// qemu-storage-daemon has no machine): what QEMU cannot say is left out, never guessed.
import type { DiskRef } from '../hypervisor.port.ts';

interface Qmp { execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> }

export interface QemuVmConfig {
  readonly kind: 'qemu';
  readonly name: string;
  readonly machine?: string;
  readonly vcpus?: number;
  readonly memoryBytes?: number;
  readonly disks: ReadonlyArray<{ id: string; format: string; sizeBytes: number; file: string }>;
  readonly nics: ReadonlyArray<{ id: string; mac?: string; model?: string }>;
  readonly uuid?: string;
  /** The accelerator it ran with (`kvm` or `tcg`), so a restored copy runs the same way. */
  readonly accel?: 'kvm' | 'tcg';
  /** Direct kernel boot (`-kernel`, `-initrd`, `-append`), when the VM was started that way. */
  readonly kernel?: string;
  readonly initrd?: string;
  readonly append?: string;
  /** Host-specific parts kept apart from the portable ones (image paths). */
  readonly hostPaths: ReadonlyArray<{ where: string; path: string }>;
}

/**
 * What a QEMU process cannot change while it runs: machine type, initial memory, UUID,
 * accelerator and direct kernel boot. Asked once per QMP connection (a restarted QEMU is a new
 * connection); vCPUs and NICs can be hot-plugged and are asked with every configuration.
 */
export interface QemuMachineFacts {
  readonly machine?: string;
  readonly memoryBytes?: number;
  readonly uuid?: string;
  readonly accel?: 'kvm' | 'tcg';
  readonly kernel?: string;
  readonly initrd?: string;
  readonly append?: string;
}

const soft = <T>(p: Promise<T>) => p.catch(() => undefined);

export async function qemuMachineFacts(qmp: Qmp): Promise<QemuMachineFacts> {
  const [machine, memory, uuid, kernel, initrd, append, kvm] = await Promise.all([
    soft(qmp.execute<string>('qom-get', { path: '/machine', property: 'type' })),
    soft(qmp.execute<{ 'base-memory'?: number }>('query-memory-size-summary')),
    soft(qmp.execute<{ UUID: string }>('query-uuid')),
    soft(qmp.execute<string>('qom-get', { path: '/machine', property: 'kernel' })),
    soft(qmp.execute<string>('qom-get', { path: '/machine', property: 'initrd' })),
    soft(qmp.execute<string>('qom-get', { path: '/machine', property: 'append' })),
    soft(qmp.execute<{ enabled: boolean }>('query-kvm')),
  ]);
  return {
    ...(machine ? { machine: machine.replace(/-machine$/, '') } : {}),
    ...(memory?.['base-memory'] ? { memoryBytes: memory['base-memory'] } : {}),
    ...(uuid && !/^0{8}-0{4}/.test(uuid.UUID) ? { uuid: uuid.UUID } : {}),
    ...(kvm ? { accel: kvm.enabled ? 'kvm' as const : 'tcg' as const } : {}),
    ...(kernel ? { kernel } : {}), ...(initrd ? { initrd } : {}), ...(append ? { append } : {}),
  };
}

/** `facts`: the machine's facts as asked earlier on this connection (else asked now). */
export async function qemuVmConfig(qmp: Qmp, name: string, disks: readonly DiskRef[], facts?: Promise<QemuMachineFacts>): Promise<QemuVmConfig> {
  const [machine, cpus, filters] = await Promise.all([
    facts ?? qemuMachineFacts(qmp),
    soft(qmp.execute<unknown[]>('query-cpus-fast')),
    soft(qmp.execute<Array<{ name: string; 'main-mac'?: string }>>('query-rx-filter')),
  ]);
  // The device model of each NIC, for a restore that recreates it (`virtio-net-pci`, `e1000`...).
  const models = new Map<string, string>();
  for (const f of filters ?? []) {
    const type = await soft(qmp.execute<string>('qom-get', { path: `/machine/peripheral/${f.name}`, property: 'type' }));
    if (type) models.set(f.name, type);
  }
  return {
    kind: 'qemu', name,
    ...(machine.machine ? { machine: machine.machine } : {}),
    ...(cpus ? { vcpus: cpus.length } : {}),
    ...(machine.memoryBytes ? { memoryBytes: machine.memoryBytes } : {}),
    disks: disks.map((d) => ({ id: d.id, format: d.format, sizeBytes: d.sizeBytes, file: d.file })),
    nics: (filters ?? []).map((f) => ({ id: f.name, ...(f['main-mac'] ? { mac: f['main-mac'] } : {}), ...(models.get(f.name) ? { model: models.get(f.name)! } : {}) })),
    ...(machine.uuid ? { uuid: machine.uuid } : {}),
    ...(machine.accel ? { accel: machine.accel } : {}),
    ...(machine.kernel ? { kernel: machine.kernel } : {}), ...(machine.initrd ? { initrd: machine.initrd } : {}), ...(machine.append ? { append: machine.append } : {}),
    hostPaths: disks.filter((d) => d.file).map((d) => ({ where: `disk ${d.id}`, path: d.file })),
  };
}
