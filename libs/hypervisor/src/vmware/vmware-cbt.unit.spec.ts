// Full or incremental for a VMware disk, and why: the change-id rules and the paging of
// QueryChangedDiskAreas, with the query answered by hand.
import { describe, expect, it } from 'vitest';
import { changedAreasPlan } from './vmware-cbt.ts';
import type { VmwareDisk } from './vmware-inventory.ts';
import type { Node } from './vsphere-xml.ts';

const disk = (changeId?: string, capacityBytes = 8 << 20): VmwareDisk => ({
  id: 'scsi0-0', key: 2000, label: 'Hard disk 1', fileName: '[ds] vm/vm.vmdk', datastore: 'ds', path: 'vm/vm.vmdk', capacityBytes,
  backing: 'VirtualDiskFlatVer2BackingInfo', thinProvisioned: false, hasParent: false, controllerKey: 1000, unitNumber: 0, ...(changeId ? { changeId } : {}),
});
const info = (startOffset: number, length: number, areas: Array<[number, number]>): Node =>
  ({ startOffset: String(startOffset), length: String(length), changedArea: areas.map(([s, l]) => ({ start: String(s), length: String(l) })) });
const never = async (): Promise<Node> => { throw new Error('not asked'); };

describe('changedAreasPlan', () => {
  it('is full, with the reason, whenever the change id cannot be built on', async () => {
    const prev = { changeId: 'aa/3', capacityBytes: 8 << 20 };
    expect(await changedAreasPlan({ mode: 'full', chain: 'c', disk: disk('aa/4'), previous: prev, query: never })).toMatchObject({ mode: 'full', reason: 'full backup requested' });
    expect(await changedAreasPlan({ mode: 'auto', chain: undefined, disk: disk('aa/4'), previous: prev, query: never })).toMatchObject({ mode: 'full', reason: 'no backup chain to track changes for' });
    expect((await changedAreasPlan({ mode: 'auto', chain: 'c', disk: disk(), previous: prev, query: never })).reason).toMatch(/reports no change id for scsi0-0/);
    expect(await changedAreasPlan({ mode: 'auto', chain: 'c', disk: disk('aa/4'), previous: undefined, query: never })).toMatchObject({ reason: 'first backup of scsi0-0 in chain c' });
    expect(await changedAreasPlan({ mode: 'auto', chain: 'c', disk: disk('aa/4', 16 << 20), previous: prev, query: never })).toMatchObject({ reason: `scsi0-0 was resized from ${8 << 20} to ${16 << 20} bytes` });
    expect(await changedAreasPlan({ mode: 'auto', chain: 'c', disk: disk('bb/1'), previous: prev, query: never })).toMatchObject({ reason: 'change tracking of scsi0-0 was reset (change id aa/3 → bb/1)' });
    expect((await changedAreasPlan({ mode: 'auto', chain: 'c', disk: disk('aa/2'), previous: prev, query: never })).reason).toMatch(/reverted snapshot/);
    const refused = await changedAreasPlan({ mode: 'auto', chain: 'c', disk: disk('aa/4'), previous: prev, query: async () => { throw new Error('A specified parameter was not correct: changeId'); } });
    expect(refused).toMatchObject({ mode: 'full', reason: 'change id aa/3 of scsi0-0 is no longer valid (vSphere: A specified parameter was not correct: changeId)' });
  });

  it('follows the answer page by page and clips areas to the disk', async () => {
    const asked: number[] = [];
    const plan = await changedAreasPlan({
      mode: 'auto', chain: 'c', disk: disk('aa/4'), previous: { changeId: 'aa/3', capacityBytes: 8 << 20 },
      query: async (offset) => {
        asked.push(offset);
        return offset === 0 ? info(0, 4 << 20, [[4096, 8192]]) : info(4 << 20, 4 << 20, [[(8 << 20) - 4096, 65536]]);
      },
    });
    expect(asked).toEqual([0, 4 << 20]);
    expect(plan).toEqual({ mode: 'incremental', reason: 'changes since change id aa/3 (2 areas, 12288 bytes)', changed: [{ start: 4096, length: 8192 }, { start: (8 << 20) - 4096, length: 4096 }] });
  });
});
