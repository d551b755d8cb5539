// libvirt on a remote host through the product: the test starts its own sshd on a free
// loopback port (generated host and client keys, key login only), and this machine stands in
// for the remote host. `cairn hypervisor add libvirt --uri qemu+ssh://root@127.0.0.1:<port>/
// system?keyfile=…&no_verify=1` (the key stays in its file) finds a booted TCG domain whose
// guest keeps writing; `cairn` backs it up full and then incrementally through libvirt's
// pull-mode backup, the NBD socket on the host forwarded over SSH to the coordinator's side;
// each restore point restores byte-identical to the disk at its instant (the domain is paused
// over each backup, so its image is that instant), the incremental reading only the changes;
// afterwards no forward, socket or scratch file is left on either side.
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildGuestImage, defineGuestDomain, ensureLibvirtd, startTestSshd, useHarness, virsh, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { defaultScratchDir } from '@cairn/snapshot-coordinator';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

const run = promisify(execFile);

describe('libvirt over qemu+ssh through the product (real sshd, libvirtd, QEMU, NATS)', () => {
  const h = useHarness();

  it('hypervisor add with a qemu+ssh URI and a key file; full and incremental backups restore byte-identical', async () => {
    await ensureLibvirtd();
    const dataDir = await h.tmpDir('cairn-e2e-lvssh-');
    const sshd = await startTestSshd(join(dataDir, 'sshd'));
    h.onClose(() => sshd.stop());
    const image = await buildGuestImage({ dir: dataDir, hostname: 'lvssh', workload: true, sizeMiB: 64 });
    const dom = await defineGuestDomain({ image, dir: dataDir, prefix: 'cairn-e2e-ssh' });
    h.onClose(() => dom.remove());
    const localDir = defaultScratchDir(join(dataDir, 'coordinator'), 'lvssh');
    h.onClose(() => rm(localDir, { recursive: true, force: true })); // after the stack stops
    // The adapter's directory on the "remote" host (default /var/tmp/cairn-lvr-<hash of its state directory>).
    const remoteDir = `/var/tmp/cairn-lvr-${createHash('sha256').update(join(dataDir, 'coordinator', 'libvirt', 'lvssh')).digest('hex').slice(0, 12)}`;
    h.onClose(() => rm(remoteDir, { recursive: true, force: true }));
    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];

    // A password in the URI is refused before anything is connected.
    const withPassword = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', `qemu+ssh://root:secret@127.0.0.1:${sshd.port}/system`, '--name', 'pw']);
    expect(withPassword.code).not.toBe(0);
    expect(withPassword.stderr).toMatch(/no password in the URI/);
    expect(withPassword.stderr).not.toContain('secret');
    const added = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', sshd.libvirtUri, '--name', 'lvssh']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain(dom.name);
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === dom.name && v.hypervisor.host === 'lvssh'), { what: 'the domain in the catalogue' });
    await dom.waitForSerial(undefined, 240_000);

    const rawNow = async (label: string) => {
      const raw = join(dataDir, `now-${label}.raw`);
      await run('qemu-img', ['convert', '-U', '-O', 'raw', image.disk, raw]);
      return raw;
    };
    const digest = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');
    const pol = await cli([...args, '--json', 'policy', 'create', '--name', `p-${randomUUID().slice(0, 6)}`, '--vm', dom.name, '--cron', '0 3 * * *', '--timezone', 'UTC', '--quiesce', 'off']);
    expect(pol.code, pol.stderr).toBe(0);
    const policyId = (JSON.parse(pol.stdout) as { policyId: string }).policyId;
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'libvirt-ssh-e2e' }, defaultTimeoutMs: 60_000 });
    const backupPaused = async (label: string) => {
      await virsh('suspend', dom.name);
      try {
        const reply = await bus.send('scheduler', 'RequestBackup', { vmId: dom.name, policyId, mode: 'auto' }, { idempotencyKey: randomUUID() });
        if (!reply.accepted) throw new Error(`RequestBackup refused: ${reply.error.message}`);
        const job = await waitForJobEnd(catalogue, reply.result!.jobId, 600_000);
        expect(job.state, `${label}: ${job.failure?.reason ?? ''}`).toBe('completed');
        // The data mover read a local socket: the host's NBD socket forwarded over SSH.
        const taken = job.events.find((e) => e.type === 'SnapshotTaken') as { data?: { nbd?: { socket?: string } } } | undefined;
        expect(taken?.data?.nbd?.socket).toMatch(/\/cairn-v[a-z0-9]{11}\.fwd\.sock$/);
        return { restorePointId: job.restorePointId!, raw: await rawNow(label) };
      } finally { await virsh('resume', dom.name); }
    };

    const first = await backupPaused('full');
    const firstDigest = await digest(first.raw);
    // The guest writes 256 KiB a second once resumed: wait until its disk has changed.
    await waitFor(async () => (await digest(await rawNow('probe'))) !== firstDigest, { timeoutMs: 120_000, intervalMs: 1000, what: 'the guest to write' });
    const second = await backupPaused('incremental');
    for (const [b, kind] of [[first, 'full'], [second, 'incremental']] as const) {
      const rp = await catalogue.query('restorePoint.get', { restorePointId: b.restorePointId });
      expect(rp.kind).toBe(kind);
      const to = join(dataDir, 'restores', `${kind}.raw`);
      const r = await cli([...args, 'restore', b.restorePointId, '--disk', 'vda', '--to', to]);
      expect(r.code, r.stderr).toBe(0);
      expect(await digest(to), `${kind} restores to the disk at its instant`).toBe(await digest(b.raw));
      if (kind === 'incremental') {
        console.log(`libvirt qemu+ssh e2e incremental: ${rp.bytesRead} bytes read of ${rp.sizeBytes}`);
        expect(rp.bytesRead).toBeGreaterThan(0);
        expect(rp.bytesRead).toBeLessThan(rp.sizeBytes / 8);
      }
    }
    // Nothing left: no libvirt job, no forward or socket here, no scratch file on the host.
    expect(await virsh('domjobinfo', dom.name)).toMatch(/Job type:\s+None/);
    expect((await readdir(localDir).catch(() => [] as string[])).filter((f) => f.startsWith('cairn-v'))).toEqual([]);
    const { stdout: ps } = await run('ps', ['-eo', 'args']);
    expect(ps.split('\n').filter((l) => l.includes('.fwd.sock') && l.includes(localDir))).toEqual([]);
    expect((await readdir(remoteDir)).filter((f) => f.startsWith('cairn-')), `left in ${remoteDir}`).toEqual([]);
  }, 900_000);
});
