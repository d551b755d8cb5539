// libvirt end to end: a running Cairn gets `cairn hypervisor add libvirt --uri qemu:///system`,
// finds a booted TCG domain (two disks, a guest that keeps writing, the real qemu-guest-agent)
// in its inventory, and backs it up full and then incrementally through libvirt's backup API;
// each restore point restores byte-identical to the domain's disks at the snapshot instant
// (the domain is paused over each of these backups, so its own images are that instant; the
// policy has quiesce off, a paused guest cannot answer its agent), the incremental reading
// only the changed blocks. `cairn backup` of the running domain is application-consistent;
// a domain without an agent gives `crash` with the reason (preferred) or a failed job
// (required); `cairn restore-point show` prints all of it and the domain's configuration.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildGuestImage, defineGuestDomain, ensureLibvirtd, useHarness, virsh, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { defaultScratchDir } from '@cairn/snapshot-coordinator';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

const run = promisify(execFile);

describe('libvirt through the product (real libvirtd, QEMU, NATS)', () => {
  const h = useHarness();

  it('hypervisor add libvirt, then cairn backup full and incremental; each restore point restores to the disks at its instant', async () => {
    await ensureLibvirtd();
    const dataDir = await h.tmpDir('cairn-e2e-lv-');
    const image = await buildGuestImage({ dir: dataDir, hostname: 'lve2e', workload: true, guestAgent: true, sizeMiB: 96 });
    const data = join(dataDir, 'data.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', data, '16M']);
    const dom = await defineGuestDomain({ image, dir: dataDir, prefix: 'cairn-e2e', extraDisks: [{ file: data, format: 'qcow2' }], guestAgent: true });
    h.onClose(() => dom.remove());
    // A domain with no OS and no agent channel (SeaBIOS finds nothing to boot and waits).
    const bare = `${dom.name}-bare`;
    const bareDisk = join(dataDir, 'bare.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', bareDisk, '8M']);
    await run('chmod', ['666', bareDisk]);
    await writeFile(join(dataDir, 'bare.xml'), `<domain type='qemu'><name>${bare}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='x86_64' machine='q35'>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='${bareDisk}'/><target dev='vda' bus='virtio'/></disk><memballoon model='none'/></devices></domain>`);
    await virsh('define', join(dataDir, 'bare.xml'));
    h.onClose(async () => { await virsh('destroy', bare).catch(() => undefined); await virsh('undefine', bare, '--checkpoints-metadata').catch(() => undefined); });
    await virsh('start', bare);
    h.onClose(() => rm(defaultScratchDir(join(dataDir, 'coordinator'), 'lv'), { recursive: true, force: true })); // after the stack stops
    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];

    const bad = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', 'qemu+tcp://127.0.0.1:1/system', '--name', 'nope']);
    expect(bad.code, bad.stderr).toBe(5);
    expect(bad.stderr).toMatch(/cannot connect to libvirt at qemu\+tcp/);
    const added = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', 'qemu:///system', '--name', 'lv']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain(dom.name);
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === dom.name && v.hypervisor.host === 'lv' && v.hypervisor.kind === 'libvirt'), { what: 'the domain in the catalogue' });
    await dom.waitForSerial(undefined, 240_000);

    const imagesNow = async () => {
      const out: Buffer[] = [];
      for (const [i, f] of [image.disk, data].entries()) {
        const raw = join(dataDir, `now-${i}.raw`);
        await run('qemu-img', ['convert', '-U', '-O', 'raw', f, raw]);
        out.push(await readFile(raw));
      }
      return out;
    };
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'libvirt-e2e' }, defaultTimeoutMs: 60_000 });
    const policyFor = async (vm: string, quiesce: string) => {
      const r = await cli([...args, '--json', 'policy', 'create', '--name', `p-${quiesce}-${randomUUID().slice(0, 6)}`, '--vm', vm, '--cron', '0 3 * * *', '--timezone', 'UTC', '--quiesce', quiesce]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { policyId: string }).policyId;
    };
    const backupWith = async (vmId: string, policyId: string) => {
      const reply = await bus.send('scheduler', 'RequestBackup', { vmId, policyId, mode: 'auto' }, { idempotencyKey: randomUUID() });
      if (!reply.accepted) throw new Error(`RequestBackup refused: ${reply.error.message}`);
      return waitForJobEnd(catalogue, reply.result!.jobId, 600_000);
    };
    const noQuiesce = await policyFor(dom.name, 'off');
    const backupPaused = async (label: string) => {
      await virsh('suspend', dom.name);
      try {
        const job = await backupWith(dom.name, noQuiesce);
        expect(job.state, `${label}: ${job.failure?.reason ?? ''}`).toBe('completed');
        return { job: { restorePointId: job.restorePointId! }, images: await imagesNow() };
      } finally { await virsh('resume', dom.name); }
    };

    const first = await backupPaused('full');
    await new Promise((r) => setTimeout(r, 4000)); // the guest writes 256 KiB a second
    const second = await backupPaused('incremental');
    for (const [b, kind] of [[first, 'full'], [second, 'incremental']] as const) {
      const rp = await catalogue.query('restorePoint.get', { restorePointId: b.job.restorePointId });
      expect(rp.kind).toBe(kind);
      expect(rp.disks.map((d) => d.name).sort()).toEqual(['vda', 'vdb']);
      for (const [i, disk] of (['vda', 'vdb'] as const).entries()) {
        const to = join(dataDir, 'restores', `${kind}-${disk}.raw`);
        const r = await cli([...args, 'restore', b.job.restorePointId, '--disk', disk, '--to', to]);
        expect(r.code, r.stderr).toBe(0);
        expect((await readFile(to)).equals(b.images[i]!), `${kind} ${disk} restores to the disk at its instant`).toBe(true);
      }
      if (kind === 'incremental') {
        console.log(`libvirt e2e incremental: ${rp.bytesRead} bytes read of ${rp.sizeBytes}`);
        expect(rp.bytesRead).toBeGreaterThan(0);
        expect(rp.bytesRead).toBeLessThan(rp.sizeBytes / 8);
      }
    }
    const shown = await cli([...args, 'restore-point', 'show', second.job.restorePointId]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/consistency: crash \(quiesce is off for this job\)/);
    expect(shown.stdout).toMatch(/snapshot: vda: incremental \(changes since checkpoint cairn\./);
    expect(shown.stdout).toMatch(new RegExp(`configuration \\(libvirt\\): ${dom.name}, machine pc-q35-[0-9.]+, 1 vCPU, 512\\.0 MiB memory, firmware bios`));
    expect(shown.stdout).toContain(`host-specific disk vda: ${image.disk}`);
    const xml = await cli([...args, 'restore-point', 'show', second.job.restorePointId, '--xml']);
    expect(xml.stdout).toMatch(new RegExp(`<name>${dom.name}</name>`));

    // The running domain with its agent: application-consistent (cairn backup: quiesce preferred).
    const manual = await cli([...args, '--json', 'backup', dom.name, '--wait', '--timeout', '600'], {}, 660_000);
    expect(manual.code, manual.stderr).toBe(0);
    const app = await cli([...args, 'restore-point', 'show', (JSON.parse(manual.stdout) as { restorePointId: string }).restorePointId]);
    expect(app.stdout).toMatch(/consistency: application \(file systems frozen by the QEMU guest agent/);

    // No agent: preferred gives crash with the reason, required fails the job with it.
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === bare), { what: 'the bare domain in the catalogue' });
    const crash = await cli([...args, '--json', 'backup', bare, '--wait', '--timeout', '600'], {}, 660_000);
    expect(crash.code, crash.stderr).toBe(0);
    const crashShown = await cli([...args, 'restore-point', 'show', (JSON.parse(crash.stdout) as { restorePointId: string }).restorePointId]);
    expect(crashShown.stdout).toMatch(/consistency: crash \(guest agent did not freeze the file systems: .*agent/i);
    const required = await backupWith(bare, await policyFor(bare, 'required'));
    expect(required.state).toBe('failed');
    expect(required.failure?.reason).toMatch(/quiesce is required but the guest was not frozen: guest agent did not freeze/);
    console.log(`libvirt e2e required quiesce without agent: ${required.failure?.reason}`);
  }, 900_000);
});
