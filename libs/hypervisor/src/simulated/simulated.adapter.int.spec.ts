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
  });
});
