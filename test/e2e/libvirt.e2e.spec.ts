// libvirt end to end: a running Cairn gets `cairn hypervisor add libvirt --uri qemu:///system`,
// finds a booted TCG domain (two disks, a guest that keeps writing) in its inventory, and
// `cairn backup` takes a full and then an incremental restore point through libvirt's backup
// API; each restores byte-identical to the domain's disks at the snapshot instant (the domain
// is paused over each backup, so its own images are that instant), the incremental reading
// only the changed blocks.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildGuestImage, defineGuestDomain, ensureLibvirtd, useHarness, virsh, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { cli } from './e2e-helpers.ts';

const run = promisify(execFile);

describe('libvirt through the product (real libvirtd, QEMU, NATS)', () => {
  const h = useHarness();

  it('hypervisor add libvirt, then cairn backup full and incremental; each restore point restores to the disks at its instant', async () => {
    await ensureLibvirtd();
    const dataDir = await h.tmpDir('cairn-e2e-lv-');
    const image = await buildGuestImage({ dir: dataDir, hostname: 'lve2e', workload: true, sizeMiB: 96 });
    const data = join(dataDir, 'data.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', data, '16M']);
    const dom = await defineGuestDomain({ image, dir: dataDir, prefix: 'cairn-e2e', extraDisks: [{ file: data, format: 'qcow2' }] });
    h.onClose(() => dom.remove());
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
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === dom.name && v.hypervisor.host === 'lv'), { what: 'the domain in the catalogue' });
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
    const backupPaused = async (label: string) => {
      await virsh('suspend', dom.name);
      try {
        const r = await cli([...args, '--json', 'backup', dom.name, '--wait', '--timeout', '600'], {}, 660_000);
        expect(r.code, `${label}: ${r.stderr}`).toBe(0);
        return { job: JSON.parse(r.stdout) as { restorePointId: string }, images: await imagesNow() };
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
    const job = await cli([...args, '--json', 'job', 'list']);
    expect(job.code).toBe(0);
  }, 900_000);
});
