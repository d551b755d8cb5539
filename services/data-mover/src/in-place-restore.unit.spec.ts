// In-place restore decisions against an in-memory log: which policies make a VM immutable, the
// four-eyes approval it then needs, disks mapped onto the domain's images, the safety backup.
import { describe, expect, it } from 'vitest';
import { newEvent, type Actor } from '@cairn/contracts';
import { InMemoryEventLog } from '@cairn/eventlog';
import { libvirtVmConfig } from '@cairn/hypervisor';
import type { Manifest } from '@cairn/repository';
import { immutablePoliciesOf, inPlaceDisks, planInPlaceRestore, type InPlaceDisks } from './in-place-restore.ts';

const XML = `<domain type='qemu'><name>web-1</name><uuid>4f21f958-ea11-44f1-a03b-8804dcc7637a</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/web-1.qcow2'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
const manifest = { id: 'rp1', vm: { id: 'web-1', name: 'web-1', config: { hypervisor: libvirtVmConfig(XML) } }, disks: [{ name: 'vda', sizeBytes: 1 << 20 }] } as unknown as Manifest;
const current: InPlaceDisks = { domain: 'web-1', uuid: '4f21f958-ea11-44f1-a03b-8804dcc7637a', disks: [{ target: 'vda', path: '/srv/web-1.qcow2', format: 'qcow2' }] };
const target = { kind: 'vm' as const, vmName: 'web-1', host: 'lv', inPlace: true, format: 'raw' as const, start: false, keepIdentity: true };
const admin = (id: string): Actor => ({ kind: 'user', id });

async function immutablePolicy(log: InMemoryEventLog) {
  const streamId = 'policy-p1';
  await log.append(streamId, [newEvent('PolicyCreated', {
    policyId: 'p1', name: 'gold', selector: { names: ['web-1'] }, schedule: { cron: '0 3 * * *', timezone: 'UTC' },
    retention: { daily: 7, weekly: 0, monthly: 0, yearly: 0, last: 1 }, repository: 'default', keyRef: 'k', priority: 0, immutable: true,
  }, { site: 's', actor: admin('a1'), streamId })], { expectedRevision: 'no_stream' });
}

async function approval(log: InMemoryEventLog, id: string, action: object, grantedBy = 'a2') {
  const streamId = `approval-${id}`;
  await log.append(streamId, [
    newEvent('ApprovalRequested', { approvalId: id, action, requestedBy: 'user:a1' } as never, { site: 's', actor: admin('a1'), streamId }),
    newEvent('ApprovalGranted', { approvalId: id, approvedBy: `user:${grantedBy}` } as never, { site: 's', actor: admin(grantedBy), streamId }),
  ], { expectedRevision: 'no_stream' });
}

describe('in-place restore (libvirt)', () => {
  it('policies that make a VM immutable: by name or by its hypervisor', () => {
    const p = (policyId: string, immutable: boolean, selector: object) => ({ policyId, immutable, selector });
    expect(immutablePoliciesOf([p('a', true, { names: ['web-1'] }), p('b', false, { names: ['web-1'] }), p('c', true, { hypervisor: 'lv' }), p('d', true, { names: ['db'] })], 'web-1', 'lv')).toEqual(['a', 'c']);
  });

  it('maps the restore point\'s disks onto the domain\'s images, refusing what cannot be overwritten', () => {
    expect(inPlaceDisks('r1', manifest, current)).toEqual([{ disk: 'vda', path: '/srv/web-1.qcow2', partialPath: '/srv/.vda.cairn-restore-r1', format: 'qcow2', sizeBytes: 1 << 20 }]);
    expect(() => inPlaceDisks('r1', manifest, { ...current, disks: [] })).toThrow(/has no disk vda any more/);
    expect(() => inPlaceDisks('r1', manifest, { ...current, disks: [{ target: 'vda', path: '', format: 'raw' }] })).toThrow(/not a local image/);
  });

  it('backs up first unless told not to; an immutable policy needs a granted approval for this very act', async () => {
    const log = new InMemoryEventLog('s');
    const safety: string[] = [];
    const deps = { log, prepare: async () => current, safetyBackup: async (vmId: string) => { safety.push(vmId); return 'safety-rp'; }, heartbeat: () => undefined };
    const plain = await planInPlaceRestore('r1', manifest, target, deps);
    expect(plain.vm.libvirt).toEqual({ host: 'lv', networkMap: {}, noNetwork: false, inPlace: { safetyRestorePointId: 'safety-rp' } });
    expect(safety).toEqual(['web-1']);
    expect((await planInPlaceRestore('r2', manifest, { ...target, safetyBackup: false }, deps)).vm.libvirt?.inPlace).toEqual({});
    await expect(planInPlaceRestore('r3', { ...manifest, vm: { ...manifest.vm, name: 'other' } } as Manifest, target, deps)).rejects.toThrow(/is of other, not web-1/);

    await immutablePolicy(log);
    await expect(planInPlaceRestore('r4', manifest, target, deps)).rejects.toMatchObject({ code: 'forbidden', message: expect.stringMatching(/immutable policy p1: .*four-eyes act; ask for it .*restore-in-place/) });
    await approval(log, 'ap-other', { kind: 'restore-in-place', vm: 'web-1', restorePointId: 'rp-else' });
    await expect(planInPlaceRestore('r5', manifest, { ...target, approvalId: 'ap-other' }, deps)).rejects.toThrow(/for another act|restore-in-place/);
    await approval(log, 'ap-self', { kind: 'restore-in-place', vm: 'web-1', restorePointId: 'rp1' }, 'a1');
    await expect(planInPlaceRestore('r6', manifest, { ...target, approvalId: 'ap-self' }, deps)).rejects.toThrow(/its own requester/);
    await approval(log, 'ap-ok', { kind: 'restore-in-place', vm: 'web-1', restorePointId: 'rp1' });
    const approved = await planInPlaceRestore('r7', manifest, { ...target, approvalId: 'ap-ok' }, deps);
    expect(approved.vm.libvirt?.inPlace).toEqual({ safetyRestorePointId: 'safety-rp', approvalId: 'ap-ok' });
  });
});

describe('in-place restore (QEMU)', () => {
  const qemu = {
    kind: 'qemu', name: 'vm-q', uuid: '5c0ffee0-0000-4000-8000-00000000a11c', disks: [{ id: 'disk0', format: 'qcow2', sizeBytes: 1 << 20, file: '/srv/vm-q.qcow2' }],
    nics: [], hostPaths: [{ where: 'disk disk0', path: '/srv/vm-q.qcow2' }],
  };
  const m = { id: 'rp-q', vm: { id: 'vm-q', name: 'vm-q', config: { hypervisor: qemu } }, disks: [{ name: 'disk0', sizeBytes: 1 << 20 }] } as unknown as Manifest;
  const now: InPlaceDisks = { domain: 'vm-q', uuid: '', disks: [{ target: 'disk0', path: '/srv/vm-q.qcow2', format: 'qcow2' }] };
  const t = { ...target, vmName: 'vm-q', host: 'q1' };

  it('over the image files its QEMU last named, after they are found free and backed up; never started by Cairn', async () => {
    const log = new InMemoryEventLog('s');
    const checked: string[][] = [];
    const deps = { log, prepare: async () => now, safetyBackup: async () => 'safety-q', heartbeat: () => undefined, imagesFree: async (p: readonly string[]) => { checked.push([...p]); } };
    const plan = await planInPlaceRestore('r1', m, t, deps);
    expect(plan.disks).toEqual([{ disk: 'disk0', path: '/srv/vm-q.qcow2', partialPath: '/srv/.disk0.cairn-restore-r1', format: 'qcow2', sizeBytes: 1 << 20 }]);
    expect(plan.vm).toMatchObject({ name: 'vm-q', uuid: qemu.uuid, start: false, qemuInPlace: { host: 'q1', safetyRestorePointId: 'safety-q' } });
    expect(plan.vm.libvirt).toBeUndefined();
    expect(checked).toEqual([['/srv/vm-q.qcow2']]);
    await expect(planInPlaceRestore('r2', m, { ...t, start: true }, deps)).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/does not start it/) });
    const busy = { ...deps, imagesFree: async () => { throw new Error('/srv/vm-q.qcow2 is open in process 42'); } };
    await expect(planInPlaceRestore('r3', m, t, busy)).rejects.toThrow(/open in process 42/);
  });
});
