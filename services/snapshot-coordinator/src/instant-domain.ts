// ManageInstantDomain: the libvirt domain of an instant recovery session (the data mover serves
// the disks; this coordinator holds the libvirt connection). Everything done comes from the
// session's own stream (`instant-<instantId>`), never from the sender: `define` the domain from
// the restore point's domain XML with the plan's name, UUID and MACs, each disk its overlay over
// the NBD export (and start it when asked), `status` whether it runs, `mirror` libvirt's block copy to the targets that
// InstantMirroring recorded (again: the progress), `pivot` once ready, `remove` destroy and
// undefine. Each act is idempotent (instant-domain.ts in @cairn/hypervisor).
import { dirname } from 'node:path';
import type { KnownEvent } from '@cairn/contracts';
import { fold, type EventStreamReader } from '@cairn/eventlog';
import { instantDecider, type InstantState } from '@cairn/jobs';
import {
  BlockCopyError, DomainExistsError, DomainXmlError, domainXmlForRestore, pivotCopies, removeDomain, startOrFollowCopies,
  type CopyTarget, type HypervisorAdapter, type LibvirtAdapter, type LibvirtVmConfig,
} from '@cairn/hypervisor';
import { SnapshotCommandError } from './snapshot-coordinator.service.ts';

type Act = 'define' | 'status' | 'mirror' | 'pivot' | 'remove';
type Libvirt = Pick<LibvirtAdapter, 'kind' | 'virsh' | 'defineRestored' | 'openToQemu' | 'remote'>;

async function session(instantId: string, log: EventStreamReader): Promise<InstantState & { plan: NonNullable<InstantState['plan']> }> {
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(`instant-${instantId}`)) events.push(r.event);
  const st = fold(instantDecider, events);
  if (!st.plan) throw new SnapshotCommandError('not_found', `no instant recovery ${instantId}`);
  return st as InstantState & { plan: NonNullable<InstantState['plan']> };
}

function libvirtOf(adapters: ReadonlyMap<string, HypervisorAdapter>, host: string): Libvirt {
  const a = adapters.get(host) as (HypervisorAdapter & Partial<Libvirt>) | undefined;
  if (a?.kind !== 'libvirt' || !a.openToQemu || !a.virsh) throw new SnapshotCommandError('not_found', `${host} is not a libvirt hypervisor of this coordinator (add it with cairn hypervisor add libvirt)`);
  if (a.remote) throw new SnapshotCommandError('invalid_command', `${host} is another host's libvirt: instant recovery serves the disks on this host (restore with --vm instead)`);
  return a as Libvirt;
}

export async function manageInstantDomain(instantId: string, act: Act, log: EventStreamReader, adapters: ReadonlyMap<string, HypervisorAdapter>) {
  const st = await session(instantId, log);
  const plan = st.plan;
  if (!plan.libvirt) throw new SnapshotCommandError('invalid_command', `instant recovery ${instantId} runs under QEMU, not libvirt`);
  const host = plan.libvirt.host;
  const lv = libvirtOf(adapters, host);
  const domain = plan.vmName;
  const running = async () => (await lv.virsh.run(['domstate', domain]).catch(() => '')).trim() === 'running';
  const targets = (): CopyTarget[] => {
    if (st.status !== 'mirroring' || !st.mirroring) throw new SnapshotCommandError('conflict', `instant recovery ${instantId} is ${st.status}, not mirroring`);
    return st.mirroring.disks.map((m) => ({ target: m.disk, dest: m.path, format: m.format, sizeBytes: plan.disks.find((d) => d.disk === m.disk)!.sizeBytes }));
  };
  try {
    switch (act) {
      case 'define': {
        if (st.status !== 'starting' && st.status !== 'serving') throw new SnapshotCommandError('conflict', `instant recovery ${instantId} is ${st.status}`);
        const config = plan.config as unknown as LibvirtVmConfig;
        if (config.kind !== 'libvirt' || typeof config.domainXml !== 'string') throw new SnapshotCommandError('invalid_command', `instant recovery ${instantId}: the restore point keeps no libvirt domain XML`);
        await lv.openToQemu(plan.dir, dirname(plan.libvirt.exportSocket));
        const xml = domainXmlForRestore(config, {
          name: domain, uuid: plan.uuid, macs: config.summary.nics.map((_, i) => plan.macs[`nic${i}`] ?? ''),
          disks: Object.fromEntries(plan.disks.map((d) => [d.disk, { file: d.overlay, format: 'qcow2', backingNbd: { socket: plan.libvirt!.exportSocket, exportName: d.exportName } }])),
          // Like a whole-VM restore without a network map: the NICs are kept, disconnected.
          noNetwork: true,
          serialLog: plan.libvirt.serialLog,
        });
        const d = await lv.defineRestored(xml, { name: domain, uuid: plan.uuid, start: plan.start });
        return { host, domain, uuid: d.uuid, macs: d.macs, running: d.started };
      }
      case 'status':
        return { host, domain, running: await running() };
      case 'mirror':
        return { host, domain, running: await running(), disks: await startOrFollowCopies(lv.virsh, domain, targets()) };
      case 'pivot':
        return { host, domain, running: await running(), disks: await pivotCopies(lv.virsh, domain, targets()) };
      case 'remove':
        if (st.status === 'finished') throw new SnapshotCommandError('conflict', `instant recovery ${instantId} is finished: its domain runs from local disks and is not removed`);
        return { host, domain, running: false, removed: await removeDomain(lv.virsh, domain) };
    }
  } catch (e) {
    if (e instanceof DomainExistsError) throw new SnapshotCommandError('conflict', e.message);
    if (e instanceof DomainXmlError || e instanceof BlockCopyError) throw new SnapshotCommandError('invalid_command', `instant recovery ${instantId}: ${e.message}`);
    throw e;
  }
}

