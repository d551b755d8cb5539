// DefineRestoredVm against an in-memory log and a scripted libvirt adapter: what is defined
// comes from the restore job's recorded plan, only once every disk is written.
import { describe, expect, it } from 'vitest';
import { handleCommand, InMemoryEventLog } from '@cairn/eventlog';
import { restoreDecider, type RestoreCommand } from '@cairn/jobs';
import { libvirtVmConfig, parseDomainXml, DomainExistsError, type HypervisorAdapter } from '@cairn/hypervisor';
import { defineRestoredVm } from './restored-vm.ts';

const XML = `<domain type='qemu'><name>web-1</name><uuid>4f21f958-ea11-44f1-a03b-8804dcc7637a</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/srv/web-1.qcow2'/><target dev='vda' bus='virtio'/></disk>
  <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/><model type='virtio'/></interface>
  <serial type='file'><source path='/var/log/web-1.log'/></serial></devices></domain>`;
const actor = { kind: 'service' as const, id: 'data-mover@s' };
const UUID = '0b5d7c1e-7f5e-4a8e-9d59-2f0c8f7e6a11';

class FakeLibvirt {
  readonly kind = 'libvirt' as const;
  defined: Array<{ xml: string; name: string; uuid: string; start: boolean }> = [];
  clash = false;
  async defineRestored(xml: string, o: { name: string; uuid: string; start: boolean }) {
    if (this.clash) throw new DomainExistsError(`a domain named ${o.name} already exists on qemu:///system (uuid x); choose another --vm name`);
    this.defined.push({ xml, ...o });
    return { uuid: o.uuid, macs: parseDomainXml(xml).nics.map((n) => n.mac ?? ''), started: o.start };
  }
  async shutOffDisks() { return { uuid: UUID, disks: [] }; }
  async finishInPlace() { return { uuid: UUID, macs: [], started: false }; }
  async importIntoPool(): Promise<Map<string, string>> { throw new Error('no storage pool in these tests'); }
}

async function restoreJob(log: InMemoryEventLog, restoreId: string, o: { host?: string; written?: boolean } = {}) {
  const run = (c: RestoreCommand) => handleCommand(log, `restore-${restoreId}`, restoreDecider, c, { meta: { site: 's', actor, correlationId: restoreId, causationId: null } });
  await run({ kind: 'request', data: { restoreId, restorePointId: 'rp1', repository: 'default', ownTarget: false, target: { kind: 'vm', vmName: 'web-1-copy', format: 'raw', start: true, keepIdentity: false, ...(o.host ? { host: o.host } : {}) } } });
  const dir = '/restores/vms/web-1-copy';
  await run({
    kind: 'start', worker: 'm1', plan: {
      source: 'local', sourceLocation: '/repo',
      disks: [{ disk: 'vda', path: `${dir}/vda.raw`, writePath: `${dir}.x/vda.raw`, partialPath: `${dir}.x/vda.raw.partial`, format: 'raw', sizeBytes: 1024 }],
      vm: {
        name: 'web-1-copy', dir, stagingDir: `${dir}.x`, uuid: UUID, macs: { nic0: '52:54:00:12:34:56' }, start: true,
        config: { ...libvirtVmConfig(XML) } as never,
        ...(o.host ? { libvirt: { host: o.host, networkMap: { default: 'isolated' }, noNetwork: false } } : {}),
      },
    },
  });
  if (o.written !== false) await run({ kind: 'diskWritten', disk: 'vda', sizeBytes: 1024, actorPath: `${dir}/vda.raw` });
}

describe('DefineRestoredVm', () => {
  it('defines the domain the restore job recorded: name, UUID, MACs, disks, networks, its own console', async () => {
    const log = new InMemoryEventLog('s');
    const lv = new FakeLibvirt();
    await restoreJob(log, 'r1', { host: 'lv' });
    const adapters = new Map<string, HypervisorAdapter>([['lv', lv as unknown as HypervisorAdapter]]);
    expect(await defineRestoredVm('r1', log, adapters)).toEqual({ host: 'lv', domain: 'web-1-copy', uuid: UUID, macs: ['52:54:00:12:34:56'], started: true });
    const s = parseDomainXml(lv.defined[0]!.xml);
    expect(s).toMatchObject({ name: 'web-1-copy', uuid: UUID });
    expect(s.disks.map((d) => [d.target, d.source, d.format])).toEqual([['vda', '/restores/vms/web-1-copy/vda.raw', 'raw']]);
    expect(s.nics[0]).toMatchObject({ mac: '52:54:00:12:34:56', source: 'isolated' });
    expect(lv.defined[0]!.xml).toContain('/restores/vms/web-1-copy/serial.log');
    lv.clash = true;
    await expect(defineRestoredVm('r1', log, adapters)).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/already exists/) });
  });

  it('refuses a job with disks still unwritten, one that makes no libvirt domain, an unknown host, an unknown job', async () => {
    const log = new InMemoryEventLog('s');
    const adapters = new Map<string, HypervisorAdapter>([['lv', new FakeLibvirt() as unknown as HypervisorAdapter]]);
    await restoreJob(log, 'early', { host: 'lv', written: false });
    await expect(defineRestoredVm('early', log, adapters)).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/not written vda/) });
    await restoreJob(log, 'qemu');
    await expect(defineRestoredVm('qemu', log, adapters)).rejects.toMatchObject({ code: 'invalid_command' });
    await restoreJob(log, 'elsewhere', { host: 'other' });
    await expect(defineRestoredVm('elsewhere', log, adapters)).rejects.toMatchObject({ code: 'not_found', message: expect.stringMatching(/other is not a libvirt hypervisor/) });
    await expect(defineRestoredVm('never', log, adapters)).rejects.toMatchObject({ code: 'not_found' });
  });
});
