// A QEMU VM under QMP, also once its QEMU has ended. While the monitor answers, the QMP adapter
// does everything and the VM's image files (as its inventory names them) are remembered in a
// state file; when QEMU is gone (the monitor does not answer) and it ended cleanly (every image
// is qcow2 with its persistent bitmaps stored, none left `in-use` as a crash leaves them) the VM
// is reported `stopped` with those files, and a view of it is served offline by the offline
// adapter (a qemu-storage-daemon, the same persistent bitmap generations, the images locked so
// the VM cannot start meanwhile). A QEMU that crashed or was killed stays an error, as before.
// So a shut-off QEMU VM can still be backed up (the safety backup of an in-place restore), and
// an in-place restore knows which files it overwrites.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { HypervisorAdapter, OpenViewRequest, QuiesceResult, ReapReport, View, VmInfo } from '../hypervisor.port.ts';
import { QmpConnectionError, QmpTimeoutError } from '../qmp/qmp-errors.ts';
import type { AdapterLogger, QemuAdapter } from './qemu.adapter.ts';
import { QemuOfflineAdapter, type OfflineVmConfig } from './qemu-offline.adapter.ts';
import { imageInfo } from './qemu-img.ts';

export interface QemuStoppedFallbackConfig {
  /** Where the last inventory's VM (name, disk ids and files) is kept across restarts. */
  readonly stateFile: string;
  /** The offline adapter's sockets and pid files. */
  readonly runDir: string;
  readonly defaultLeaseMs?: number;
  readonly logger?: AdapterLogger;
}

const down = (e: unknown) => e instanceof QmpConnectionError || e instanceof QmpTimeoutError;

export class QemuStoppedFallbackAdapter implements HypervisorAdapter {
  readonly kind = 'qemu' as const;
  #last: OfflineVmConfig | undefined;
  #offline: QemuOfflineAdapter | undefined;

  private constructor(readonly online: QemuAdapter, readonly config: QemuStoppedFallbackConfig) {}

  static async create(online: QemuAdapter, config: QemuStoppedFallbackConfig): Promise<QemuStoppedFallbackAdapter> {
    const a = new QemuStoppedFallbackAdapter(online, config);
    const saved = await readFile(config.stateFile, 'utf8').then((t) => JSON.parse(t) as OfflineVmConfig, () => undefined);
    if (saved && typeof saved.name === 'string' && Array.isArray(saved.disks)) a.#remember(saved);
    return a;
  }

  get qmp(): QemuAdapter['qmp'] { return this.online.qmp; }

  /** The VM's image files as QEMU last named them, or undefined before any inventory. */
  get lastKnown(): OfflineVmConfig | undefined { return this.#last; }

  /** Whether QEMU's monitor answers now (false: the VM's QEMU has ended). */
  async answers(): Promise<boolean> {
    try { await this.online.qmp.execute('query-status', undefined, { timeoutMs: 10_000 }); return true; } catch (e) {
      if (down(e)) return false;
      throw e;
    }
  }

  #remember(vm: OfflineVmConfig): void {
    this.#last = vm;
    this.#offline = new QemuOfflineAdapter({ vms: [vm], runDir: this.config.runDir, ...(this.config.defaultLeaseMs ? { defaultLeaseMs: this.config.defaultLeaseMs } : {}), ...(this.config.logger ? { logger: this.config.logger } : {}) });
  }

  async #save(vm: OfflineVmConfig): Promise<void> {
    if (JSON.stringify(vm) === JSON.stringify(this.#last)) return;
    this.#remember(vm);
    await mkdir(dirname(this.config.stateFile), { recursive: true });
    await writeFile(`${this.config.stateFile}.tmp`, JSON.stringify(vm) + '\n');
    await rename(`${this.config.stateFile}.tmp`, this.config.stateFile);
  }

  /** Its QEMU ended cleanly: every image qcow2 with persistent bitmaps, none left in use. */
  async endedCleanly(): Promise<boolean> {
    if (!this.#last) return false;
    for (const d of this.#last.disks) {
      const info = await imageInfo(d.file).catch(() => undefined);
      if (info?.format !== 'qcow2' || info.bitmaps.length === 0 || info.bitmaps.some((b) => b.flags.includes('in-use'))) return false;
    }
    return true;
  }

  /** The offline adapter, when QEMU is gone and ended cleanly. */
  async #stopped(): Promise<QemuOfflineAdapter | undefined> {
    if (!this.#offline || (await this.answers()) || !(await this.endedCleanly())) return undefined;
    return this.#offline;
  }

  async inventory(): Promise<VmInfo[]> {
    try {
      const vms = await this.online.inventory();
      const vm = vms[0];
      if (vm && vm.disks.every((d) => d.file)) await this.#save({ name: vm.name, disks: vm.disks.map((d) => ({ id: d.id, file: d.file })) });
      return vms;
    } catch (e) {
      if (!down(e) || !this.#offline || !(await this.endedCleanly())) throw e;
      return this.#offline.inventory();
    }
  }

  async openView(req: OpenViewRequest): Promise<View> {
    const offline = await this.#stopped();
    return offline ? offline.openView(req) : this.online.openView(req);
  }

  async releaseView(viewId: string, outcome: { success: boolean }): Promise<void> {
    if (this.#offline?.openViews().some((v) => v.viewId === viewId)) return this.#offline.releaseView(viewId, outcome);
    return this.online.releaseView(viewId, outcome);
  }

  openViews(): View[] { return [...this.online.openViews(), ...(this.#offline?.openViews() ?? [])]; }

  adoptView(view: View): void {
    // A view of an earlier run: the offline adapter's socket names it as its own.
    if (view.nbd && 'socketPath' in view.nbd && this.#offline && view.nbd.socketPath.startsWith(this.config.runDir)) this.#offline.adoptView(view);
    else this.online.adoptView(view);
  }

  async reapOrphans(keep?: ReadonlySet<string>): Promise<ReapReport> {
    const none: ReapReport = { exports: [], jobs: [], nodes: [], files: [], bitmaps: [] };
    const offline = (await this.#offline?.reapOrphans(keep)) ?? none;
    const online = await this.online.reapOrphans(keep).catch((e: unknown) => {
      if (down(e)) return none; // QEMU is gone, and its leftovers with it
      throw e;
    });
    return {
      exports: [...online.exports, ...offline.exports], jobs: [...online.jobs, ...offline.jobs], nodes: [...online.nodes, ...offline.nodes],
      files: [...online.files, ...offline.files], bitmaps: [...online.bitmaps, ...offline.bitmaps],
    };
  }

  async quiesce(vm: string, opts?: { timeoutMs?: number; maxFrozenMs?: number }): Promise<QuiesceResult> {
    const offline = await this.#stopped();
    if (offline) return offline.quiesce();
    return this.online.quiesce(vm, opts);
  }

  async thaw(vm: string): Promise<void> {
    if (this.#offline && !(await this.answers())) return;
    return this.online.thaw(vm);
  }

  guestAgent(vm: string) { return this.online.guestAgent?.(vm); }

  async close(): Promise<void> {
    await this.#offline?.close();
    await this.online.close();
  }
}
