// A simulated hypervisor, for load tests only (never offered by cairn.yaml or `cairn hypervisor
// add`; `cairn run snapshot-coordinator --simulated <n>` refuses without
// CAIRN_SIMULATED_HYPERVISOR=1). It holds thousands of VMs with one generated thin disk each,
// serves point-in-time views over NBD with a dirty-bitmap context, and tracks changed blocks per
// backup chain as a real adapter does: before each view a few blocks of the VM are "written";
// a successful release advances the chain, a failed one keeps the changes for the next backup.
// Content is a pure function of (VM, block, generation), so a restore can be checked exactly.
import { mkdir } from 'node:fs/promises';
import { endianness } from 'node:os';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import { NbdServer, STATE_DIRTY, STATE_HOLE, STATE_ZERO, type BlockSource, type Extent } from '@cairn/nbd';
import type {
  HypervisorAdapter, OpenViewRequest, QuiesceResult, ReapReport, View, ViewDisk, VmInfo,
} from '../hypervisor.port.ts';

export interface SimulatedAdapterConfig {
  /** Hypervisor host name the inventory reports (default `simulated`). */
  readonly name?: string;
  readonly vms: number;
  /**
   * This host's VMs are `first` … `first + vms - 1` of `total` simulated VMs (several simulated
   * hosts of one load test: names and content stay distinct across hosts). Default 0 of `vms`.
   */
  readonly first?: number;
  readonly total?: number;
  /** Each VM's one disk (default 4 MiB). */
  readonly diskBytes?: number;
  /** Unit of change (default 64 KiB, a typical guest write). */
  readonly blockBytes?: number;
  /** Blocks written between two views of a VM (default 4). */
  readonly changesPerView?: number;
  readonly nbdSocket: string;
  readonly defaultLeaseMs?: number;
}

interface SimVm {
  /** Generation each block was last written at (0: never, reads as zeros). */
  readonly written: Uint32Array;
  generation: number;
}

interface OpenSimView {
  readonly view: View;
  readonly chainKey: string | undefined;
  readonly generation: number;
  readonly exports: string[];
}

/** The simulated VMs' names: `sim-00001` … */
export function simulatedVmName(index: number, total: number): string {
  return `sim-${String(index + 1).padStart(Math.max(5, String(total).length), '0')}`;
}

/** 32-bit mix (a fixed, fast hash): content and choices are reproducible without stored data. */
function mix(a: number, b: number, c: number): number {
  let h = (Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35) ^ Math.imul(c + 0x165667b1, 0x27d4eb2f)) >>> 0;
  h ^= h >>> 16; h = Math.imul(h, 0x7feb352d) >>> 0; h ^= h >>> 15; h = Math.imul(h, 0x846ca68b) >>> 0; h ^= h >>> 16;
  return h >>> 0;
}

/** The bytes of block `block` of VM `vm` as written at `generation` (xorshift fill from a seed). */
export function simulatedBlock(vm: number, block: number, generation: number, blockBytes: number): Buffer {
  const out = Buffer.allocUnsafe(blockBytes);
  fillSimulatedBlock(out, vm, block, generation);
  return out;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * Writes the block's bytes into `out` (its whole length): zeros for generation 0, else the
 * xorshift words as little-endian 32-bit integers. Through a 32-bit view of `out` where it is
 * aligned (a third of the simulated hypervisor's CPU in a 1,000-VM scale run went to
 * `writeUInt32LE` one word at a time and to zero-filled copies of each block).
 */
function fillSimulatedBlock(out: Buffer, vm: number, block: number, generation: number): void {
  if (generation === 0) { out.fill(0); return; }
  let x = mix(vm, block, generation) || 1;
  const words = out.length >>> 2;
  if (LITTLE_ENDIAN && out.byteOffset % 4 === 0) {
    const w = new Uint32Array(out.buffer, out.byteOffset, words);
    for (let i = 0; i < words; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      w[i] = x;
    }
  } else {
    for (let i = 0; i < words; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      out.writeUInt32LE(x, i * 4);
    }
  }
  out.fill(0, words * 4);
}

/** A read buffer the NBD server can give back, and which of its block-sized slots may hold data. */
interface ReadBuffer {
  readonly bytes: Buffer;
  /** Per slot of `blockBytes`: 1 when it may hold non-zero bytes (an earlier read put a block there). */
  readonly dirty: Uint8Array;
}

/**
 * The views' read buffers, reused: the NBD server gives each back once its reply is on the
 * socket (`BlockSource.release`). A fresh 256 KiB buffer per read was external memory that
 * made most of the coordinator's mark-compacts in a scale run, and zero-filling its holes
 * (three of a full's four chunk-wide reads are mostly holes) more of its CPU than generating
 * the data: a reused buffer is zeroed only in the slots where an earlier read left data.
 */
class ReadBuffers {
  readonly #free = new Map<number, ReadBuffer[]>();
  /** Buffers handed out and not given back: only these are taken back, each once. */
  readonly #lent = new WeakMap<ArrayBufferLike, ReadBuffer>();
  #freeBytes = 0;

  constructor(private readonly blockBytes: number, private readonly maxFreeBytes: number) {}

  /** A buffer of `length` (whole blocks) whose dirty slots say where it may hold data. */
  take(length: number): ReadBuffer {
    const reused = this.#free.get(length)?.pop();
    if (reused) this.#freeBytes -= length;
    const buffer = reused ?? { bytes: Buffer.alloc(length), dirty: new Uint8Array(length / this.blockBytes) };
    this.#lent.set(buffer.bytes.buffer, buffer);
    return buffer;
  }

  give(data: Uint8Array): void {
    const buffer = this.#lent.get(data.buffer);
    if (!buffer || buffer.bytes.byteOffset !== data.byteOffset || buffer.bytes.length !== data.length) return;
    this.#lent.delete(data.buffer);
    if (this.#freeBytes + data.length > this.maxFreeBytes) return;
    const list = this.#free.get(data.length) ?? [];
    this.#free.set(data.length, list);
    list.push(buffer);
    this.#freeBytes += data.length;
  }
}

export class SimulatedAdapter implements HypervisorAdapter {
  readonly kind = 'simulated' as const;
  readonly #server = new NbdServer({ maxConnections: 1024 });
  readonly #vms: SimVm[] = [];
  readonly #byName = new Map<string, number>();
  /** Per chain and VM: the generation its last successful backup read. */
  readonly #chains = new Map<string, number>();
  readonly #views = new Map<string, OpenSimView>();
  readonly #blockBytes: number;
  readonly #blocks: number;
  readonly #first: number;
  readonly #readBuffers: ReadBuffers;

  private constructor(private readonly config: SimulatedAdapterConfig) {
    this.#blockBytes = config.blockBytes ?? 64 * 1024;
    const diskBytes = config.diskBytes ?? 4 * 1024 * 1024;
    if (diskBytes % this.#blockBytes !== 0) throw new RangeError(`a simulated disk of ${diskBytes} bytes is not whole blocks of ${this.#blockBytes}`);
    if (!(Number.isInteger(config.vms) && config.vms > 0 && config.vms <= 1_000_000)) throw new RangeError(`simulated VMs: 1 to 1,000,000, not ${config.vms}`);
    this.#blocks = diskBytes / this.#blockBytes;
    this.#first = config.first ?? 0;
    this.#readBuffers = new ReadBuffers(this.#blockBytes, 32 * 1024 * 1024);
    for (let i = 0; i < config.vms; i++) {
      this.#vms.push({ written: new Uint32Array(this.#blocks), generation: 0 });
      this.#byName.set(simulatedVmName(this.#first + i, config.total ?? config.vms), i);
    }
  }

  static async start(config: SimulatedAdapterConfig): Promise<SimulatedAdapter> {
    const adapter = new SimulatedAdapter(config);
    await mkdir(dirname(config.nbdSocket), { recursive: true });
    await adapter.#server.listen({ path: config.nbdSocket });
    return adapter;
  }

  get blockBytes(): number { return this.#blockBytes; }

  async inventory(): Promise<VmInfo[]> {
    const size = this.#blocks * this.#blockBytes;
    return [...this.#byName.keys()].map((name) => ({
      id: name, name, state: 'running',
      disks: [{ id: 'disk0', nodeName: 'sim-disk0', file: `simulated://${name}/disk0`, format: 'raw', sizeBytes: size }],
    }));
  }

  /** Block `block` of the VM as it is now (for checking a restore against the generated content). */
  currentBlock(vm: string, block: number): Buffer {
    const i = this.#index(vm);
    return simulatedBlock(this.#first + i, block, this.#vms[i]!.written[block]!, this.#blockBytes);
  }

  #index(vm: string): number {
    const i = this.#byName.get(vm);
    if (i === undefined) throw new Error(`no simulated VM ${vm}`);
    return i;
  }

  /** The guest "writes" a few blocks: the next generation. */
  #write(i: number): void {
    const vm = this.#vms[i]!;
    vm.generation++;
    const changes = this.#blocks === 1 ? 1 : Math.min(this.config.changesPerView ?? 4, this.#blocks);
    for (let k = 0; k < changes; k++) vm.written[mix(this.#first + i, vm.generation, k) % this.#blocks] = vm.generation;
  }

  async openView(req: OpenViewRequest): Promise<View> {
    const i = this.#index(req.vm);
    this.#write(i);
    const vm = this.#vms[i]!;
    const frozen = vm.written.slice();
    const generation = vm.generation;
    const chainKey = req.chain ? `${req.chain}/${req.vm}` : undefined;
    const since = chainKey ? this.#chains.get(chainKey) : undefined;
    const incremental = req.mode === 'auto' && since !== undefined;
    const viewId = `sim-${randomUUID()}`;
    const exportName = `${viewId}-disk0`;
    const bb = this.#blockBytes;
    const size = this.#blocks * bb;
    const runs = (pred: (b: number) => boolean, flagsOf: (hit: boolean) => number) => (offset: number, length: number): Promise<Extent[]> => {
      const out: Extent[] = [];
      const end = Math.min(size, offset + length);
      for (let pos = offset; pos < end;) {
        const b = Math.floor(pos / bb);
        const hit = pred(b);
        let stop = Math.min(end, (b + 1) * bb);
        while (stop < end && pred(Math.floor(stop / bb)) === hit) stop = Math.min(end, stop + bb);
        out.push({ offset: pos, length: stop - pos, flags: flagsOf(hit) });
        pos = stop;
      }
      return Promise.resolve(out);
    };
    const source: BlockSource = {
      size,
      read: (offset, length) => {
        if (offset % bb === 0 && length % bb === 0) {
          // Whole blocks (the data movers' reads): generated in place into a reused buffer,
          // holes zeroed only where the buffer's last read left data.
          const { bytes, dirty } = this.#readBuffers.take(length);
          for (let k = 0; k < dirty.length; k++) {
            const generation = frozen[offset / bb + k]!;
            if (generation) fillSimulatedBlock(bytes.subarray(k * bb, (k + 1) * bb), this.#first + i, offset / bb + k, generation);
            else if (dirty[k]) bytes.fill(0, k * bb, (k + 1) * bb);
            dirty[k] = generation ? 1 : 0;
          }
          return Promise.resolve(bytes);
        }
        // Whole blocks are generated in place; a block read in part through a copy; holes are zeros.
        const out = Buffer.allocUnsafe(length);
        for (let pos = offset; pos < offset + length;) {
          const b = Math.floor(pos / bb);
          const within = pos - b * bb;
          const n = Math.min(bb - within, offset + length - pos);
          const at = pos - offset;
          if (!frozen[b]) out.fill(0, at, at + n);
          else if (n === bb) fillSimulatedBlock(out.subarray(at, at + n), this.#first + i, b, frozen[b]!);
          else simulatedBlock(this.#first + i, b, frozen[b]!, bb).copy(out, at, within, within + n);
          pos += n;
        }
        return Promise.resolve(out);
      },
      // Thin: blocks never written are holes that read as zeros.
      blockStatus: runs((b) => frozen[b]! > 0, (data) => (data ? 0 : STATE_HOLE | STATE_ZERO)),
      release: (data) => this.#readBuffers.give(data),
    };
    const changed = incremental ? (b: number) => frozen[b]! > since : undefined;
    const changedBytes = changed ? frozen.reduce((n, g, b) => n + (changed(b) && g > 0 ? bb : 0), 0) : undefined;
    this.#server.addExport(exportName, {
      source, description: `${req.vm} disk0 at generation ${generation}`,
      ...(changed ? { dirty: { context: `qemu:dirty-bitmap:${exportName}`, status: runs(changed, (hit) => (hit ? STATE_DIRTY : 0)) } } : {}),
    });
    const disk: ViewDisk = {
      disk: 'disk0', exportName, sizeBytes: size, mode: incremental ? 'incremental' : 'full',
      reason: incremental ? `changes since generation ${since} (simulated bitmap of chain ${req.chain})` : req.mode === 'full' ? 'a full backup was asked for' : 'no earlier backup of this chain',
      ...(changed ? { bitmapContext: `qemu:dirty-bitmap:${exportName}`, changedBytes } : {}),
    };
    const now = Date.now();
    const view: View = {
      viewId, vm: req.vm, jobId: req.jobId, nbd: { socketPath: this.config.nbdSocket }, disks: [disk],
      createdAt: new Date(now).toISOString(), expiresAt: new Date(now + (req.leaseMs ?? this.config.defaultLeaseMs ?? 3_600_000)).toISOString(),
      ...(req.quiesce !== undefined ? { quiesced: { frozen: false, reason: 'a simulated VM has no guest to quiesce' } } : {}),
      vmConfig: { kind: 'simulated', disks: [{ id: 'disk0', sizeBytes: size }] },
    };
    this.#views.set(viewId, { view, chainKey, generation, exports: [exportName] });
    return view;
  }

  async releaseView(viewId: string, outcome: { success: boolean }): Promise<void> {
    const open = this.#views.get(viewId);
    if (!open) return;
    for (const x of open.exports) this.#server.removeExport(x);
    if (outcome.success && open.chainKey) this.#chains.set(open.chainKey, open.generation);
    this.#views.delete(viewId);
  }

  openViews(): View[] { return [...this.#views.values()].map((v) => v.view); }

  adoptView(view: View): void {
    // A view of an earlier run: its export died with that run; the release forgets it.
    if (!this.#views.has(view.viewId)) this.#views.set(view.viewId, { view, chainKey: undefined, generation: 0, exports: [] });
  }

  async reapOrphans(keep?: ReadonlySet<string>): Promise<ReapReport> {
    const kept = keep ?? new Set(this.#views.keys());
    const exports: string[] = [];
    for (const [id, v] of this.#views) {
      if (kept.has(id)) continue;
      for (const x of v.exports) { this.#server.removeExport(x); exports.push(x); }
      this.#views.delete(id);
    }
    return { exports, jobs: [], nodes: [], files: [], bitmaps: [] };
  }

  async quiesce(): Promise<QuiesceResult> { return { frozen: false, reason: 'a simulated VM has no guest to quiesce' }; }
  async thaw(): Promise<void> {}

  async close(): Promise<void> {
    await this.#server.close();
  }
}
