// The simulated hypervisor over a real NBD connection (our client): a full view holds only the
// written blocks (the rest are holes), an incremental one marks exactly the blocks written since
// the chain's last successful backup in its dirty-bitmap context, a failed release keeps those
// changes for the next view, and every block reads as its generated content.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { allocatedExtents, changedExtents, NbdClient, type Extent } from '@cairn/nbd';
import { useHarness } from '@cairn/testing';
import { SimulatedAdapter, simulatedBlock, simulatedVmName } from './simulated.adapter.ts';

const BLOCK = 64 * 1024;

async function collect(it: AsyncIterable<Extent>): Promise<Extent[]> {
  const out: Extent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

describe('simulated hypervisor', () => {
  const h = useHarness();

  it('full then incremental views over NBD, changes kept across a failed release, content as generated', async () => {
    const dir = await h.tmpDir('cairn-sim-');
    const sim = await SimulatedAdapter.start({ vms: 2000, diskBytes: 2 * 1024 * 1024, changesPerView: 3, nbdSocket: join(dir, 'nbd.sock') });
    h.onClose(() => sim.close());
    const inventory = await sim.inventory();
    expect(inventory).toHaveLength(2000);
    expect(inventory[41]).toMatchObject({ name: simulatedVmName(41, 2000), state: 'running', disks: [{ id: 'disk0', sizeBytes: 2 * 1024 * 1024 }] });
    const vm = simulatedVmName(41, 2000);

    const open = async (mode: 'auto' | 'full') => {
      const view = await sim.openView({ vm, mode, jobId: `job-${mode}`, chain: 'policy-1' });
      const disk = view.disks[0]!;
      const nbd = await NbdClient.connect({ path: (view.nbd as { socketPath: string }).socketPath }, {
        exportName: disk.exportName, metaContexts: ['base:allocation', ...(disk.bitmapContext ? [disk.bitmapContext] : [])],
      });
      h.onClose(() => nbd.close());
      return { view, disk, nbd };
    };

    const first = await open('auto');
    expect(first.disk.mode).toBe('full');
    // The restore point's VM configuration names its kind (SnapshotTaken's schema requires it).
    expect(first.view.vmConfig).toMatchObject({ kind: 'simulated' });
    const allocated = await collect(allocatedExtents(first.nbd));
    const writtenBlocks = allocated.reduce((n, e) => n + e.length, 0) / BLOCK;
    expect(writtenBlocks).toBeGreaterThanOrEqual(1);
    expect(writtenBlocks).toBeLessThanOrEqual(3);
    for (const e of allocated) {
      for (let off = e.offset; off < e.offset + e.length; off += BLOCK) {
        expect(Buffer.from(await first.nbd.read(off, BLOCK)).equals(sim.currentBlock(vm, off / BLOCK)), `block ${off / BLOCK}`).toBe(true);
      }
    }
    await sim.releaseView(first.view.viewId, { success: true });

    // The next view: only what was written since, in the bitmap context.
    const second = await open('auto');
    expect(second.disk.mode).toBe('incremental');
    const changed = await collect(changedExtents(second.nbd, second.disk.bitmapContext!));
    const changedBlocks = changed.flatMap((e) => Array.from({ length: e.length / BLOCK }, (_, k) => e.offset / BLOCK + k));
    expect(changedBlocks.length).toBeGreaterThanOrEqual(1);
    expect(changedBlocks.length * BLOCK).toBe(second.disk.changedBytes);
    for (const b of changedBlocks) expect(Buffer.from(await second.nbd.read(b * BLOCK, BLOCK)).equals(sim.currentBlock(vm, b))).toBe(true);
    // A failed transfer: those changes are still there for the next view, with the new ones.
    await sim.releaseView(second.view.viewId, { success: false });
    const third = await open('auto');
    const again = await collect(changedExtents(third.nbd, third.disk.bitmapContext!));
    const againBlocks = new Set(again.flatMap((e) => Array.from({ length: e.length / BLOCK }, (_, k) => e.offset / BLOCK + k)));
    for (const b of changedBlocks) expect(againBlocks.has(b), `block ${b} kept`).toBe(true);
    await sim.releaseView(third.view.viewId, { success: true });
    expect(sim.openViews()).toEqual([]);
    // The generator is a pure function of (VM, block, generation).
    expect(simulatedBlock(41, 3, 7, BLOCK).equals(simulatedBlock(41, 3, 7, BLOCK))).toBe(true);
    expect(simulatedBlock(41, 3, 7, BLOCK).equals(simulatedBlock(42, 3, 7, BLOCK))).toBe(false);
    // Its bytes: the seed's xorshift words, little-endian (the first and last words of one block,
    // as written one word at a time before the block was filled through a 32-bit view).
    const b = simulatedBlock(41, 3, 7, BLOCK);
    expect([b.readUInt32LE(0), b.readUInt32LE(BLOCK - 4)]).toEqual(referenceWords(41, 3, 7, BLOCK));
    expect(simulatedBlock(41, 3, 0, BLOCK).equals(Buffer.alloc(BLOCK))).toBe(true);
  });

  it('reads whole blocks, parts of blocks and holes alike', async () => {
    const sim = await SimulatedAdapter.start({ vms: 2, diskBytes: 8 * BLOCK, blockBytes: BLOCK, changesPerView: 3, nbdSocket: join(await h.tmpDir('cairn-sim-'), 'sim.sock') });
    try {
      const vm = simulatedVmName(1, 2);
      const view = await sim.openView({ vm, mode: 'full', jobId: 'parts', chain: 'p' });
      const nbd = await NbdClient.connect({ path: (view.nbd as { socketPath: string }).socketPath }, { exportName: view.disks[0]!.exportName });
      try {
        const whole = Buffer.concat(Array.from({ length: 8 }, (_, k) => sim.currentBlock(vm, k)));
        // A read of all blocks at once, and reads starting and ending inside blocks.
        expect(Buffer.from(await nbd.read(0, 8 * BLOCK)).equals(whole)).toBe(true);
        for (const [offset, length] of [[100, BLOCK], [BLOCK - 8, 16], [3 * BLOCK + 4, 2 * BLOCK + 12]] as const) {
          expect(Buffer.from(await nbd.read(offset, length)).equals(whole.subarray(offset, offset + length)), `${offset}+${length}`).toBe(true);
        }
        // Whole-block reads go into buffers the server gives back: a hole read into a buffer an
        // earlier read left data in is zeros, in turn and with many reads at once.
        for (let pass = 0; pass < 3; pass++) {
          for (let b = 0; b < 8; b++) {
            expect(Buffer.from(await nbd.read(b * BLOCK, BLOCK)).equals(whole.subarray(b * BLOCK, (b + 1) * BLOCK)), `block ${b}`).toBe(true);
          }
        }
        const windows = Array.from({ length: 48 }, (_, k) => ({ offset: (k % 7) * BLOCK, length: 2 * BLOCK }));
        const got = await Promise.all(windows.map((w) => nbd.read(w.offset, w.length)));
        got.forEach((g, k) => expect(Buffer.from(g).equals(whole.subarray(windows[k]!.offset, windows[k]!.offset + 2 * BLOCK)), `window ${k}`).toBe(true));
      } finally {
        await nbd.close();
        await sim.releaseView(view.viewId, { success: true });
      }
    } finally {
      await sim.close();
    }
  });
});

/** The first and last words of a block by the generator's definition, one word at a time. */
function referenceWords(vm: number, block: number, generation: number, blockBytes: number): [number, number] {
  let h = (Math.imul(vm ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(block + 0x7f4a7c15, 0xc2b2ae35) ^ Math.imul(generation + 0x165667b1, 0x27d4eb2f)) >>> 0;
  h ^= h >>> 16; h = Math.imul(h, 0x7feb352d) >>> 0; h ^= h >>> 15; h = Math.imul(h, 0x846ca68b) >>> 0; h ^= h >>> 16;
  let x = (h >>> 0) || 1;
  const words: number[] = [];
  for (let i = 0; i + 4 <= blockBytes; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    if (i === 0 || i + 8 > blockBytes) words.push(x);
  }
  return [words[0]!, words.at(-1)!];
}
