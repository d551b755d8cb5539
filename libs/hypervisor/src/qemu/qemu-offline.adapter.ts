// Powered-off QEMU VMs: their qcow2 files are changed with `qemu-img bitmap` (the same bitmap
// generations as for running VMs) and served read-only, persistent bitmap included, by a
// qemu-storage-daemon per view: one NBD socket for all of the VM's disks, like a running VM's
// view. Nothing writes to an offline disk, so no fleecing is needed. The daemon keeps the
// images locked, so the VM cannot be started under a view. Its pid file carries the view id:
// after a crash of the caller, the reaper finds and stops it.
import { spawn } from 'node:child_process';
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  DiskRef, HypervisorAdapter, OpenViewRequest, QuiesceResult, ReapReport, View, ViewDisk, VmInfo,
} from '../hypervisor.port.ts';
import type { AdapterLogger } from './qemu.adapter.ts';
import { DiskBusyError, UnknownDiskError, UnknownVmError } from './qemu.adapter.ts';
import { exportName, isViewId, newViewId, parseViewBitmapName, PREFIX } from './naming.ts';
import { bitmapOps, imageInfo, type ImageBitmap } from './qemu-img.ts';
import { planDisk, type BitmapState, type DiskPlan } from './view-plan.ts';

export interface OfflineVmConfig {
  name: string;
  disks: Array<{ id: string; file: string }>;
}

export interface QemuOfflineAdapterConfig {
  vms: OfflineVmConfig[];
  /** Directory for the per-view NBD sockets and pid files, owned by this adapter alone. */
  runDir: string;
  defaultLeaseMs?: number;
  logger?: AdapterLogger;
}

const silent: AdapterLogger = { info: () => undefined, warn: () => undefined };
const pidFile = (dir: string, viewId: string) => join(dir, `${PREFIX}-${viewId}.pid`);
const socketFile = (dir: string, viewId: string) => join(dir, `${PREFIX}-${viewId}.nbd.sock`);

function asBitmapState(b: ImageBitmap): BitmapState {
  // qemu-img flags: `auto` = enabled (recording), `in-use` = not stored cleanly (inconsistent).
  return { name: b.name, granularity: b.granularity, recording: b.flags.includes('auto'), persistent: true, busy: false, count: 0, inconsistent: b.flags.includes('in-use') };
}

export class QemuOfflineAdapter implements HypervisorAdapter {
  readonly #views = new Map<string, View>();
  readonly #busy = new Map<string, string>(); // image file -> view id
  readonly #log: AdapterLogger;

  constructor(readonly config: QemuOfflineAdapterConfig) {
    this.#log = config.logger ?? silent;
  }

  async inventory(): Promise<VmInfo[]> {
    return Promise.all(this.config.vms.map(async (vm) => ({
      id: vm.name, name: vm.name, state: 'stopped',
      disks: await Promise.all(vm.disks.map(async (d): Promise<DiskRef> => {
        const info = await imageInfo(d.file);
        return { id: d.id, nodeName: d.id, file: d.file, format: info.format, sizeBytes: info.virtualSize };
      })),
    })));
  }

  openViews(): View[] { return [...this.#views.values()]; }

  adoptView(view: View, files: readonly string[] = []): void {
    this.#views.set(view.viewId, view);
    for (const f of files) this.#busy.set(f, view.viewId);
  }

  async openView(req: OpenViewRequest): Promise<View> {
    const vm = this.config.vms.find((v) => v.name === req.vm);
    if (!vm) throw new UnknownVmError(`no powered-off VM ${JSON.stringify(req.vm)} configured`);
    const disks = req.disks ? req.disks.map((id) => {
      const d = vm.disks.find((x) => x.id === id);
      if (!d) throw new UnknownDiskError(`VM ${vm.name} has no disk ${JSON.stringify(id)}`);
      return d;
    }) : vm.disks;
    for (const d of disks) {
      const holder = this.#busy.get(d.file);
      if (holder) throw new DiskBusyError(`disk ${d.id} of ${vm.name} is in view ${holder}`);
    }
    await mkdir(this.config.runDir, { recursive: true });
    const viewId = newViewId();
    for (const d of disks) this.#busy.set(d.file, viewId);
    try {
      const prepared: Array<{ disk: { id: string; file: string }; plan: DiskPlan; sizeBytes: number; format: string }> = [];
      for (const d of disks) {
        const info = await imageInfo(d.file);
        const plan = planDisk({ node: d.file, format: info.format, requested: req.mode, chain: req.chain ?? 'default', viewId, bitmaps: info.bitmaps.map(asBitmapState) });
        await this.#applyPlan(d.file, plan);
        prepared.push({ disk: d, plan, sizeBytes: info.virtualSize, format: info.format });
      }
      const socketPath = socketFile(this.config.runDir, viewId);
      const viewDisks: ViewDisk[] = prepared.map(({ disk, plan, sizeBytes }) => ({
        disk: disk.id, exportName: exportName(viewId, disk.id), sizeBytes, mode: plan.mode, reason: plan.reason,
        ...(plan.exportBitmap ? { bitmapContext: `qemu:dirty-bitmap:${plan.exportBitmap}` } : {}),
      }));
      await this.#serve(viewId, socketPath, prepared.map((p, i) => ({ file: p.disk.file, format: p.format, exportName: viewDisks[i]!.exportName, bitmap: p.plan.exportBitmap })));
      const now = Date.now();
      const view: View = {
        viewId, vm: vm.name, jobId: req.jobId, nbd: { socketPath }, disks: viewDisks,
        createdAt: new Date(now).toISOString(),
        expiresAt: new Date(now + (req.leaseMs ?? this.config.defaultLeaseMs ?? 3_600_000)).toISOString(),
        quiesced: { frozen: false, reason: 'VM is powered off: its disks are at rest' },
      };
      this.#views.set(viewId, view);
      this.#log.info({ viewId, vm: vm.name, disks: viewDisks.map((d) => ({ disk: d.disk, mode: d.mode, reason: d.reason })) }, 'offline view opened');
      return view;
    } catch (e) {
      await this.#remove(viewId, false).catch((err: unknown) => this.#log.warn({ viewId, err: String(err) }, 'cleanup after failed open'));
      for (const d of disks) if (this.#busy.get(d.file) === viewId) this.#busy.delete(d.file);
      throw e;
    }
  }

  async releaseView(viewId: string, outcome: { success: boolean }): Promise<void> {
    if (!isViewId(viewId)) throw new Error(`not a view id: ${JSON.stringify(viewId)}`);
    await this.#remove(viewId, outcome.success);
    this.#views.delete(viewId);
    for (const [f, holder] of this.#busy) if (holder === viewId) this.#busy.delete(f);
  }

  async reapOrphans(keep: ReadonlySet<string> = new Set(this.#views.keys())): Promise<ReapReport> {
    const report: ReapReport = { exports: [], jobs: [], nodes: [], files: [], bitmaps: [] };
    const ids = new Set<string>();
    for (const f of await readdir(this.config.runDir).catch(() => [] as string[])) {
      const m = /^cairn-(v[a-z0-9]{11})\.(pid|nbd\.sock)$/.exec(f);
      if (m && !keep.has(m[1]!)) { ids.add(m[1]!); report.files.push(join(this.config.runDir, f)); }
    }
    for (const vm of this.config.vms) {
      for (const d of vm.disks) {
        for (const b of (await imageInfo(d.file)).bitmaps) {
          const vb = parseViewBitmapName(b.name);
          if (vb && !keep.has(vb.viewId)) { ids.add(vb.viewId); report.bitmaps.push(b.name); }
        }
      }
    }
    for (const id of ids) {
      this.#log.warn({ viewId: id }, 'reaping leftovers of an offline view nobody holds');
      await this.#remove(id, false);
      this.#views.delete(id);
    }
    return report;
  }

  async quiesce(): Promise<QuiesceResult> { return { frozen: false, reason: 'VM is powered off: nothing to freeze' }; }
  async thaw(): Promise<void> { /* nothing frozen */ }
  async close(): Promise<void> { /* views stay until released or reaped */ }

  /** The plan's QMP bitmap steps, done on the image file with qemu-img. */
  async #applyPlan(file: string, plan: DiskPlan): Promise<void> {
    for (const c of plan.pre) if (c.command === 'block-dirty-bitmap-remove') await bitmapOps(file, String(c.args['name']), ['remove']);
    const a = plan.actions;
    for (let i = 0; i < a.length; i++) {
      const { type, data } = a[i]!;
      const name = String(data['name'] ?? data['target']);
      if (type === 'block-dirty-bitmap-add') {
        const next = a[i + 1];
        const merge = next?.type === 'block-dirty-bitmap-merge' && next.data['target'] === name ? (next.data['bitmaps'] as string[])[0] : undefined;
        const ops: Parameters<typeof bitmapOps>[2] = ['add'];
        if (merge) { ops.push({ merge }); i++; }
        if (data['disabled']) ops.push('disable');
        await bitmapOps(file, name, ops, Number(data['granularity']));
      } else if (type === 'block-dirty-bitmap-clear') {
        await bitmapOps(file, name, ['clear']);
      } else {
        throw new Error(`offline adapter cannot apply ${type}`);
      }
    }
  }

  async #serve(viewId: string, socketPath: string, exports: Array<{ file: string; format: string; exportName: string; bitmap: string | undefined }>): Promise<void> {
    const args = ['--pidfile', pidFile(this.config.runDir, viewId)];
    exports.forEach((e, i) => {
      args.push('--blockdev', `driver=${e.format},node-name=d${i},read-only=on,file.driver=file,file.filename=${e.file.replaceAll(",", ",,")}`);
    });
    args.push('--nbd-server', `addr.type=unix,addr.path=${socketPath.replaceAll(",", ",,")}`);
    exports.forEach((e, i) => {
      args.push('--export', `type=nbd,id=e${i},node-name=d${i},name=${e.exportName},writable=off${e.bitmap ? `,bitmaps.0=${e.bitmap}` : ''}`);
    });
    // Detached, so a crash of the caller leaves it to the reaper rather than killing a live transfer.
    const child = spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`qemu-storage-daemon exited with ${child.exitCode}: ${stderr.trim()}`);
      const pid = await readFile(pidFile(this.config.runDir, viewId), 'utf8').catch(() => '');
      const sock = await readdir(this.config.runDir).then((fs) => fs.includes(`${PREFIX}-${viewId}.nbd.sock`));
      if (pid && sock) break;
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`qemu-storage-daemon did not come up: ${stderr.trim()}`); }
      await new Promise((r) => setTimeout(r, 20));
    }
    child.stderr.destroy();
    child.unref();
  }

  async #remove(viewId: string, success: boolean): Promise<void> {
    await this.#stopDaemon(viewId);
    for (const vm of this.config.vms) {
      for (const d of vm.disks) {
        const bitmaps = (await imageInfo(d.file)).bitmaps;
        for (const b of bitmaps) {
          const vb = parseViewBitmapName(b.name);
          if (!vb || vb.viewId !== viewId) continue;
          const live = bitmaps.find((x) => x.name === vb.live);
          if (!success && vb.kind === 'frozen' && live && !live.flags.includes('in-use')) {
            await bitmapOps(d.file, vb.live, [{ merge: b.name }]);
          }
          if (!success && vb.kind === 'fresh' && live) await bitmapOps(d.file, vb.live, ['remove']);
          await bitmapOps(d.file, b.name, ['remove']);
        }
      }
    }
  }

  async #stopDaemon(viewId: string): Promise<void> {
    const file = pidFile(this.config.runDir, viewId);
    const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (pid > 0) {
      // Only a daemon of this view: a recycled pid must not be killed.
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes(viewId)) {
        process.kill(pid, 'SIGTERM');
        for (let i = 0; i < 200 && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(viewId); i++) {
          await new Promise((r) => setTimeout(r, 25));
        }
        if ((await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes(viewId)) process.kill(pid, 'SIGKILL');
      }
    }
    await rm(file, { force: true });
    await rm(socketFile(this.config.runDir, viewId), { force: true });
  }
}
