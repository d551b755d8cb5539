import { describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { decideInventory, decideRemoval, evolveVm, unknownVm, vmIdFromName, type ObservedVm } from './inventory.decider.ts';

const meta = { site: 's', actor: { kind: 'service' as const, id: 'sc' }, streamId: 'vm-a' };
const fold = (events: KnownEvent[]) => events.reduce(evolveVm, unknownVm);
const seen = (disks: Array<[string, number]>): ObservedVm => ({ vmId: 'a', name: 'a', host: 'h1', disks: disks.map(([name, sizeBytes]) => ({ name, sizeBytes })) });

describe('inventory decider', () => {
  it('a VM seen for the first time is discovered with its disks', () => {
    expect(decideInventory(unknownVm, seen([['d0', 10]]))).toEqual([
      { type: 'VmDiscovered', data: { vmId: 'a', name: 'a', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'd0', sizeBytes: 10 }] } },
    ]);
  });

  it('a libvirt domain is discovered as running under libvirt', () => {
    expect(decideInventory(unknownVm, { ...seen([['vda', 10]]), kind: 'libvirt' })[0]).toMatchObject({ data: { hypervisor: { kind: 'libvirt', host: 'h1' } } });
  });

  it('attached, detached and resized disks; nothing when unchanged', () => {
    const known = fold([
      newEvent('VmDiscovered', { vmId: 'a', name: 'a', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'd0', sizeBytes: 10 }, { name: 'd1', sizeBytes: 5 }] }, meta) as KnownEvent,
      newEvent('DiskDetached', { vmId: 'a', disk: 'd1' }, meta) as KnownEvent,
      newEvent('DiskAttached', { vmId: 'a', disk: { name: 'd2', sizeBytes: 7 } }, meta) as KnownEvent,
    ]);
    expect(decideInventory(known, seen([['d0', 10], ['d2', 7]]))).toEqual([]);
    expect(decideInventory(known, seen([['d0', 20], ['d3', 1]])).map((c) => `${c.type}:${JSON.stringify(c.data)}`)).toEqual([
      'DiskDetached:{"vmId":"a","disk":"d0"}',
      'DiskDetached:{"vmId":"a","disk":"d2"}',
      'DiskAttached:{"vmId":"a","disk":{"name":"d0","sizeBytes":20}}',
      'DiskAttached:{"vmId":"a","disk":{"name":"d3","sizeBytes":1}}',
    ]);
  });

  it('power state: recorded with the discovery, then on each change only', () => {
    const running = { ...seen([['d0', 10]]), kind: 'vmware' as const, state: 'running' };
    expect(decideInventory(unknownVm, running).map((c) => c.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged']);
    const known = fold([
      newEvent('VmDiscovered', { vmId: 'a', name: 'a', hypervisor: { kind: 'vmware', host: 'h1' }, tags: [], disks: [{ name: 'd0', sizeBytes: 10 }] }, meta) as KnownEvent,
      newEvent('VmPowerStateChanged', { vmId: 'a', state: 'running' }, meta) as KnownEvent,
    ]);
    expect(decideInventory(known, running)).toEqual([]);
    expect(decideInventory(known, { ...running, state: 'stopped' })).toEqual([{ type: 'VmPowerStateChanged', data: { vmId: 'a', state: 'stopped' } }]);
    // An adapter that reports no state records none.
    expect(decideInventory(known, seen([['d0', 10]]))).toEqual([]);
  });

  it('a VM gone from its hypervisor is removed once; seen again, it is discovered again', () => {
    const discovered = newEvent('VmDiscovered', { vmId: 'a', name: 'a', hypervisor: { kind: 'vmware', host: 'h1' }, tags: [], disks: [] }, meta) as KnownEvent;
    const known = fold([discovered]);
    expect(decideRemoval(known, 'a', 'h1')).toEqual([{ type: 'VmRemoved', data: { vmId: 'a', name: 'a', hypervisor: { kind: 'vmware', host: 'h1' } } }]);
    expect(decideRemoval(known, 'a', 'h2')).toEqual([]); // the log has it on another hypervisor
    expect(decideRemoval(unknownVm, 'a', 'h1')).toEqual([]);
    const removed = fold([discovered, newEvent('VmRemoved', { vmId: 'a', name: 'a', hypervisor: { kind: 'vmware', host: 'h1' } }, meta) as KnownEvent]);
    expect(decideRemoval(removed, 'a', 'h1')).toEqual([]);
    expect(decideInventory(removed, seen([]))[0]?.type).toBe('VmDiscovered');
  });

  it('VM names become stream-safe ids', () => {
    expect(vmIdFromName('web 01.example')).toBe('web_01_example');
    expect(vmIdFromName('db-1')).toBe('db-1');
  });
});
