// Whole-VM restore onto libvirt through the product (real libvirtd, QEMU, NATS): the test
// guest, booted as a libvirt domain, is backed up with `cairn backup`; `cairn restore <point>
// --vm <new> --host lv` defines a new domain from the domain XML the restore point keeps, with
// a new name, UUID and MACs and its disk in the chosen storage, byte-identical to the restore
// point; with `--start --no-network` the copy boots to the guest's marker on its own serial
// console beside the running original, its NIC disconnected; a name libvirt already has is
// refused with the reason. `--storage <pool>` puts the disks into volumes of a libvirt dir pool
// (the domain defined on them); an unknown pool and one without the space are refused with the
// reason, no domain defined. Then `--in-place` over the original: refused while it runs; shut off,
// with its disk changed, the restore backs up what it overwrites first (that restore point holds
// the changed disk), puts the restore point's bytes back, and the domain boots again.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RestoreJobView } from '@cairn/contracts';
import { buildGuestImage, defineGuestDomain, ensureLibvirtd, useHarness, virsh, waitFor } from '@cairn/testing';
import { parseDomainXml } from '@cairn/hypervisor';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { defaultScratchDir } from '@cairn/snapshot-coordinator';
import { cli, sha256 } from './e2e-helpers.ts';

const run = promisify(execFile);

describe('whole-VM restore onto libvirt (real libvirtd, QEMU, NATS)', () => {
  const h = useHarness();

  it('restore --vm --host defines a new domain (new UUID and MACs, disks byte-identical); --start boots it to its marker', async () => {
    await ensureLibvirtd();
    const dataDir = await h.tmpDir('cairn-e2e-lvvm-');
    await chmod(dataDir, 0o755); // QEMU (libvirt's user) passes through to the restored disks
    const image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'lvvm', sizeMiB: 64 });
    const dom = await defineGuestDomain({ image, dir: join(dataDir, 'guest'), prefix: 'cairn-e2e-vmr' });
    h.onClose(() => dom.remove());
    h.onClose(() => rm(defaultScratchDir(join(dataDir, 'coordinator'), 'lv'), { recursive: true, force: true }));
    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];
    const added = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', 'qemu:///system', '--name', 'lv']);
    expect(added.code, added.stderr).toBe(0);
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === dom.name), { what: 'the domain in the catalogue' });
    await dom.waitForSerial(undefined, 240_000);
    const original = parseDomainXml(await virsh('dumpxml', dom.name));

    const backup = await cli([...args, '--json', 'backup', dom.name, '--wait', '--timeout', '600'], {}, 660_000);
    expect(backup.code, backup.stderr).toBe(0);
    const restorePointId = (JSON.parse(backup.stdout) as { restorePointId: string }).restorePointId;
    const pointFile = join(dataDir, 'restores', 'point-vda.raw');
    const asFile = await cli([...args, 'restore', restorePointId, '--disk', 'vda', '--to', pointFile]);
    expect(asFile.code, asFile.stderr).toBe(0);
    const storage = join(dataDir, 'restores', 'vms');
    await mkdir(storage, { recursive: true, mode: 0o755 });
    await chmod(join(dataDir, 'restores'), 0o755);

    const names = [`${dom.name}-a`, `${dom.name}-b`, `${dom.name}-p`, `${dom.name}-q`, `${dom.name}-s`];
    for (const n of names) h.onClose(async () => { await virsh('destroy', n).catch(() => undefined); await virsh('undefine', n).catch(() => undefined); });
    const restoreVm = async (name: string, more: string[]) => {
      const begun = Date.now();
      const r = await cli([...args, '--json', 'restore', restorePointId, '--vm', name, '--host', 'lv', '--storage', storage, ...more], {}, 600_000);
      return { ...r, ms: Date.now() - begun };
    };

    // Defined, not started: new identity, the disk in the storage equal to the restore point.
    const a = await restoreVm(names[0]!, []);
    expect(a.code, a.stderr).toBe(0);
    const av = (JSON.parse(a.stdout) as RestoreJobView).vm!;
    expect(av).toMatchObject({ name: names[0], dir: join(storage, names[0]!), started: false, libvirt: { host: 'lv', domain: names[0] } });
    const defined = parseDomainXml(await virsh('dumpxml', '--inactive', names[0]!));
    expect(defined.uuid).toBe(av.uuid);
    expect(defined.uuid).not.toBe(original.uuid);
    expect(defined.nics.map((n) => n.mac)).toEqual(Object.values(av.macs));
    expect(defined.nics[0]!.mac).not.toBe(original.nics[0]!.mac);
    expect(defined.disks.map((d) => [d.target, d.source, d.format])).toEqual([['vda', join(storage, names[0]!, 'vda.raw'), 'raw']]);
    expect(await sha256(join(storage, names[0]!, 'vda.raw'))).toBe(await sha256(pointFile));
    expect((await virsh('domstate', names[0]!)).trim()).toBe('shut off');

    // --storage <pool>: the disks become volumes of a libvirt dir pool, the domain defined on them.
    const pools: string[] = [];
    const makePool = async (dir: string) => {
      const pool = `cairn-e2e-pool-${randomUUID().slice(0, 8)}`;
      await virsh('pool-define-as', pool, 'dir', '--target', dir);
      pools.push(pool);
      await virsh('pool-start', pool);
      return pool;
    };
    h.onClose(async () => { for (const p of pools) { await virsh('pool-destroy', p).catch(() => undefined); await virsh('pool-undefine', p).catch(() => undefined); } });
    const poolDir = join(dataDir, 'restores', 'pool');
    await mkdir(poolDir, { recursive: true, mode: 0o755 });
    const pool = await makePool(poolDir);
    const inPool = await cli([...args, '--json', 'restore', restorePointId, '--vm', names[2]!, '--host', 'lv', '--storage', pool], {}, 600_000);
    expect(inPool.code, inPool.stdout + inPool.stderr).toBe(0);
    const volume = join(poolDir, `${names[2]!}-vda.raw`);
    expect(await virsh('vol-list', pool)).toContain(`${names[2]!}-vda.raw`);
    expect(parseDomainXml(await virsh('dumpxml', '--inactive', names[2]!)).disks.map((d) => [d.target, d.source, d.format])).toEqual([['vda', volume, 'raw']]);
    expect(await sha256(volume), 'the volume holds the restore point').toBe(await sha256(pointFile));
    // A pool libvirt does not have: refused with the reason, no domain defined.
    const unknown = await cli([...args, '--json', 'restore', restorePointId, '--vm', names[3]!, '--host', 'lv', '--storage', 'cairn-no-such-pool'], {}, 600_000);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stdout + unknown.stderr).toMatch(/has no storage pool cairn-no-such-pool \(it has .*\)/);
    await expect(virsh('dominfo', names[3]!)).rejects.toThrow();
    // A pool without the space (a 1 MiB tmpfs): refused with what it has and what is needed.
    const smallDir = join(dataDir, 'restores', 'small-pool');
    await mkdir(smallDir, { recursive: true, mode: 0o755 });
    await run('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', smallDir]);
    h.onClose(async () => { await run('umount', [smallDir]).catch(() => undefined); });
    const small = await makePool(smallDir);
    const full = await cli([...args, '--json', 'restore', restorePointId, '--vm', names[4]!, '--host', 'lv', '--storage', small], {}, 600_000);
    expect(full.code).not.toBe(0);
    expect(full.stdout + full.stderr).toMatch(new RegExp(`storage pool ${small} has \\d+ bytes available; the restored disks need \\d+`));
    await expect(virsh('dominfo', names[4]!)).rejects.toThrow();
    expect(await virsh('vol-list', small)).not.toContain(names[4]!);

    // --start --no-network: it boots beside the original, on its own console, its NIC disconnected.
    const b = await restoreVm(names[1]!, ['--start', '--no-network', '--format', 'qcow2']);
    expect(b.code, b.stderr).toBe(0);
    const bv = (JSON.parse(b.stdout) as RestoreJobView).vm!;
    expect(bv.started).toBe(true);
    expect(bv.uuid).not.toBe(original.uuid);
    expect(bv.uuid).not.toBe(av.uuid);
    const bootBegun = Date.now();
    await waitFor(async () => (await readFile(bv.serialLog, 'utf8').catch(() => '')).includes(image.marker), { timeoutMs: 300_000, intervalMs: 250, what: `${image.marker} on ${bv.serialLog}` });
    console.log(`libvirt whole-VM restore: defined in ${a.ms} ms; restored with --start in ${b.ms} ms, marker ${Date.now() - bootBegun} ms later`);
    expect(await virsh('dumpxml', names[1]!)).toMatch(/<link state=['"]down['"]/);
    expect((await virsh('domstate', dom.name)).trim()).toBe('running');

    // A name libvirt already has: the job fails with the reason (conflict), nothing is redefined.
    const clash = await restoreVm(dom.name, []);
    expect(clash.code).toBe(4);
    expect(clash.stdout + clash.stderr).toMatch(new RegExp(`a domain named ${dom.name} already exists`));
    expect(parseDomainXml(await virsh('dumpxml', dom.name)).uuid).toBe(original.uuid);

    // In place over the original: refused while it runs, nothing changed.
    const whileRunning = await cli([...args, '--json', 'restore', restorePointId, '--in-place'], {}, 600_000);
    expect(whileRunning.code, whileRunning.stdout + whileRunning.stderr).toBe(4);
    expect(whileRunning.stdout + whileRunning.stderr).toMatch(/is running: an in-place restore needs it shut off/);
    // Shut off, and its disk changed since the backup: the restore puts the backup's bytes back,
    // after a safety backup of what it overwrites.
    await virsh('destroy', dom.name);
    await run('qemu-io', ['-f', image.format, '-c', 'write -P 0xab 0 64k', image.disk]);
    const beforeFile = join(dataDir, 'before-in-place.raw');
    await run('qemu-img', ['convert', '-O', 'raw', image.disk, beforeFile]);
    expect(await sha256(beforeFile)).not.toBe(await sha256(pointFile));
    const inPlace = await cli([...args, '--json', 'restore', restorePointId, '--in-place'], {}, 900_000);
    expect(inPlace.code, inPlace.stdout + inPlace.stderr).toBe(0);
    const ip = (JSON.parse(inPlace.stdout) as RestoreJobView).vm!;
    expect(ip).toMatchObject({ name: dom.name, uuid: original.uuid, started: false, libvirt: { host: 'lv', domain: dom.name } });
    const afterFile = join(dataDir, 'after-in-place.raw');
    await run('qemu-img', ['convert', '-O', 'raw', image.disk, afterFile]);
    expect(await sha256(afterFile), 'the disk is the restore point again').toBe(await sha256(pointFile));
    const safetyId = ip.libvirt!.safetyRestorePointId!;
    expect(safetyId).toBeTruthy();
    const safetyFile = join(dataDir, 'restores', 'safety-vda.raw');
    const safety = await cli([...args, 'restore', safetyId, '--disk', 'vda', '--to', safetyFile]);
    expect(safety.code, safety.stderr).toBe(0);
    expect(await sha256(safetyFile), 'the safety backup holds what was overwritten').toBe(await sha256(beforeFile));
    // The domain comes back on its restored disk.
    await writeFile(dom.serialLog, ''); // the first boot's marker is not this one's
    await virsh('start', dom.name);
    await dom.waitForSerial(undefined, 300_000);
  }, 1_200_000);
});
