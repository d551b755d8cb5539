// The coordinator's lease reaper on a real libvirt view (real libvirtd and QEMU; the log in
// memory): a view whose lease runs out with nobody releasing it (the data mover died, the job
// never ended) is released as failed: libvirt's backup job is aborted (domjobabort: domjobinfo
// None, no backup-dumpxml), the scratch files and socket go, the view's checkpoint is deleted
// (its changes stay for the next backup), SnapshotReleased says lease_expired, and the next
// view of the domain opens. The domain boots no OS (SeaBIOS waits): one start, no guest boot.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent } from '@cairn/contracts';
import { InMemoryEventLog } from '@cairn/eventlog';
import { LibvirtAdapter } from '@cairn/hypervisor';
import { ensureLibvirtd, useHarness, virsh } from '@cairn/testing';
import { SnapshotCoordinator } from './snapshot-coordinator.service.ts';
import { ViewRecordFile } from './view-records.ts';

const run = promisify(execFile);
const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
const actor = { kind: 'service' as const, id: 'sc' };

describe('coordinator lease reaper on a libvirt view (real libvirtd, QEMU)', () => {
  const h = useHarness();

  it('a lease that runs out aborts libvirt\'s backup job, removes the scratch files and the view\'s checkpoint', async () => {
    await ensureLibvirtd();
    const dir = await h.tmpDir('cairn-lvlease-');
    await chmod(dir, 0o777); // QEMU runs as libvirt-qemu
    const disk = join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '16M']);
    await chmod(disk, 0o666);
    const name = `cairn-lease-${randomBytes(4).toString('hex')}`;
    await writeFile(join(dir, 'dom.xml'), `<domain type='qemu'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='x86_64' machine='q35'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='${disk}'/><target dev='vda' bus='virtio'/></disk><memballoon model='none'/></devices></domain>`);
    await virsh('define', join(dir, 'dom.xml'));
    h.onClose(async () => { await virsh('destroy', name).catch(() => undefined); await virsh('undefine', name, '--checkpoints-metadata').catch(() => undefined); });
    await virsh('start', name);
    const runDir = join('/var/tmp', `cairn-lvlease-${randomBytes(4).toString('hex')}`);
    h.onClose(() => run('rm', ['-rf', runDir]).then(() => undefined));
    const adapter = await LibvirtAdapter.connect({ uri: 'qemu:///system', runDir, stateDir: join(dir, 'state') });
    h.onClose(() => adapter.close());
    const log = new InMemoryEventLog('s');
    const coordinator = new SnapshotCoordinator({ site: 's', actor, leaseMs: 60_000 }, new Map([['lv', adapter]]), log, new ViewRecordFile(join(dir, 'views.json')), silent);
    await coordinator.syncInventory();

    const jobId = 'j1';
    const meta = { site: 's', actor, streamId: `job-${jobId}` };
    await log.append(`job-${jobId}`, [
      newEvent('JobRequested', { jobId, vmId: name, policyId: null, mode: 'auto', trigger: 'manual' }, meta),
      newEvent('JobStarted', { jobId, attempt: 1 }, meta),
      newEvent('SnapshotRequested', { jobId, vmId: name, snapshotId: 's1' }, meta),
    ], { expectedRevision: 'no_stream' });
    await coordinator.requestSnapshot({ jobId, vmId: name, snapshotId: 's1', leaseMs: 1000, quiesce: 'off' }, 's1');
    expect(await virsh('domjobinfo', name)).not.toMatch(/Job type:\s+None/);
    expect(await virsh('backup-dumpxml', name)).toMatch(/<domainbackup/);
    expect((await readdir(runDir)).filter((f) => f.startsWith('cairn-v')).length).toBeGreaterThan(0);
    expect((await virsh('checkpoint-list', name, '--name')).trim()).toMatch(/^cairn\./);

    // Nobody releases it; the reaper's round after the lease ran out does.
    expect(await coordinator.reapExpired(new Date(Date.now() + 5_000))).toBe(1);
    expect(await virsh('domjobinfo', name)).toMatch(/Job type:\s+None/);
    await expect(virsh('backup-dumpxml', name)).rejects.toThrow();
    expect((await readdir(runDir)).filter((f) => f.startsWith('cairn-v'))).toEqual([]);
    expect((await virsh('checkpoint-list', name, '--name')).trim()).toBe('');
    const events: KnownEvent[] = [];
    for await (const r of log.readStream(`job-${jobId}`)) events.push(r.event);
    expect(events.find((e) => e.type === 'SnapshotReleased')?.data).toMatchObject({ snapshotId: 's1', cause: 'lease_expired' });
    expect(coordinator.openSnapshots()).toEqual([]);

    // The next view opens (libvirt runs one backup job per domain: the first one is really gone).
    const v = await adapter.openView({ vm: name, mode: 'auto', jobId: 'j2', chain: 'manual' });
    expect(v.disks[0]).toMatchObject({ disk: 'vda', mode: 'full' });
    await adapter.releaseView(v.viewId, { success: false });
  }, 180_000);
});
