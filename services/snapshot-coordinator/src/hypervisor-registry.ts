// Hypervisors added at run time (`cairn hypervisor add`): connected at once, remembered in the
// data directory and connected again at the next start.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { QemuAdapter, QemuStoppedFallbackAdapter, type AdapterLogger, type HypervisorAdapter, type QemuStoppedFallbackConfig } from '@cairn/hypervisor';
import { Refusal } from '@cairn/contracts';
import { connectLibvirt, libvirtNbdSettingsProblem } from './libvirt-instance.ts';
import { connectVmware } from './vmware-instance.ts';

/** Where a QEMU hypervisor's VM is remembered, and served from when its QEMU has ended (QemuStoppedFallbackAdapter). */
export function qemuFallbackConfig(dataDir: string, name: string, leaseMs: number | undefined, logger: AdapterLogger): QemuStoppedFallbackConfig {
  return { stateFile: join(dataDir, 'qemu-vms', `${name}.json`), runDir: join(dataDir, 'offline', name), ...(leaseMs ? { defaultLeaseMs: leaseMs } : {}), logger };
}

const Name = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' });
const Added = Type.Array(Type.Union([
  Type.Object({
    name: Name,
    kind: Type.Optional(Type.Literal('qemu')),
    qmpSocket: Type.String({ minLength: 1 }),
    guestAgentSocket: Type.Optional(Type.String({ minLength: 1 })),
  }, { additionalProperties: false }),
  Type.Object({
    name: Name,
    kind: Type.Literal('libvirt'),
    uri: Type.String({ minLength: 1 }),
    credentialsFile: Type.Optional(Type.String({ minLength: 1 })),
    nbdTlsDir: Type.Optional(Type.String({ minLength: 1 })),
    nbdPorts: Type.Optional(Type.Tuple([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Integer({ minimum: 1, maximum: 65535 })])),
  }, { additionalProperties: false }),
  Type.Object({
    name: Name,
    kind: Type.Literal('vmware'),
    url: Type.String({ minLength: 1 }),
    credentialsFile: Type.String({ minLength: 1 }),
    caFile: Type.Optional(Type.String({ minLength: 1 })),
    thumbprint: Type.Optional(Type.String({ minLength: 1 })),
  }, { additionalProperties: false }),
]));
export type AddedHypervisor = Static<typeof Added>[number];

export class HypervisorRegistryError extends Refusal {
  constructor(override readonly code: 'conflict' | 'unavailable' | 'invalid_command', message: string) {
    super(code, message);
  }
}

export interface RegistrySettings {
  readonly dataDir: string;
  readonly leaseMs: number;
  readonly logger: AdapterLogger & { child(b: object): AdapterLogger };
  /** Where NBD sockets of added instances go (short paths: sockets are limited to 107 bytes). */
  readonly runDir: string;
}

export class HypervisorRegistry {
  private readonly file: string;

  constructor(
    private readonly adapters: Map<string, HypervisorAdapter>,
    private readonly settings: RegistrySettings,
    private readonly onAdded: () => Promise<void>,
  ) {
    this.file = join(settings.dataDir, 'hypervisors.json');
  }

  async load(): Promise<AddedHypervisor[]> {
    let raw: unknown;
    try { raw = JSON.parse(await readFile(this.file, 'utf8')); } catch { return []; }
    if (!Value.Check(Added, raw)) throw new Error(`${this.file} is not a list of hypervisors; fix or remove it`);
    return raw;
  }

  private async connect(h: AddedHypervisor): Promise<HypervisorAdapter> {
    if (h.kind === 'libvirt') {
      const { kind: _kind, ...instance } = h;
      return connectLibvirt(instance,
        { dataDir: this.settings.dataDir, leaseMs: this.settings.leaseMs, logger: this.settings.logger, onChange: () => { this.onAdded().catch((e: unknown) => this.settings.logger.warn({ err: String(e) }, 'inventory after a libvirt event failed')); } });
    }
    if (h.kind === 'vmware') {
      return connectVmware(h, { dataDir: this.settings.dataDir, runDir: this.settings.runDir, leaseMs: this.settings.leaseMs, logger: this.settings.logger, onChange: () => { this.onAdded().catch((e: unknown) => this.settings.logger.warn({ err: String(e) }, 'inventory after a vSphere update failed')); } });
    }
    await mkdir(this.settings.runDir, { recursive: true });
    const online = await QemuAdapter.connect({
      qmpSocket: h.qmpSocket,
      nbd: { socketPath: join(this.settings.runDir, `nbd-${h.name}.sock`) },
      overlayDir: join(this.settings.dataDir, 'overlays', h.name),
      defaultLeaseMs: this.settings.leaseMs,
      logger: this.settings.logger.child({ instance: h.name }),
      ...(h.guestAgentSocket ? { guestAgentSocket: h.guestAgentSocket } : {}),
    });
    return QemuStoppedFallbackAdapter.create(online, qemuFallbackConfig(this.settings.dataDir, h.name, this.settings.leaseMs, this.settings.logger.child({ instance: h.name })));
  }

  /** Connects what earlier runs added (a hypervisor that is down is skipped with a warning). */
  async restore(): Promise<void> {
    for (const h of await this.load()) {
      if (this.adapters.has(h.name)) continue;
      try {
        this.adapters.set(h.name, await this.connect(h));
      } catch (e) {
        this.settings.logger.warn({ instance: h.name, err: (e as Error).message }, 'an added hypervisor is unreachable');
      }
    }
  }

  async add(h: AddedHypervisor): Promise<{ name: string; vms: string[] }> {
    if (this.adapters.has(h.name)) throw new HypervisorRegistryError('conflict', `a hypervisor named ${h.name} is already connected`);
    const problem = h.kind === 'libvirt' ? libvirtNbdSettingsProblem(h) : undefined;
    if (problem) throw new HypervisorRegistryError('invalid_command', problem);
    let adapter: HypervisorAdapter;
    try {
      adapter = await this.connect(h);
    } catch (e) {
      const where = h.kind === 'libvirt' ? `libvirt at ${h.uri.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@')}` : h.kind === 'vmware' ? `vSphere at ${h.url}` : `QMP at ${h.qmpSocket}`;
      throw new HypervisorRegistryError('unavailable', `cannot connect to ${where}: ${(e as Error).message}`);
    }
    const vms = (await adapter.inventory()).map((v) => v.name);
    this.adapters.set(h.name, adapter);
    const all = [...(await this.load()).filter((x) => x.name !== h.name), h];
    await mkdir(dirname(this.file), { recursive: true });
    await writeFile(`${this.file}.tmp`, JSON.stringify(all, null, 2) + '\n');
    await rename(`${this.file}.tmp`, this.file);
    await this.onAdded();
    return { name: h.name, vms };
  }
}
