// libvirt over qemu+tls:// through the product. The test makes its PKI with openssl
// (libvirt-tls.ts: one CA, QEMU's NBD server certificate in /etc/pki/qemu, a client
// certificate in the directory the URI names as `pkipath`) and talks to libvirtd's own TLS
// listener (ensureLibvirtd({ tls: true }) starts the daemon with `--listen`, or restarts one
// started without it; libvirt.ts), this machine standing in for the remote host.
// First the adapter alone: a view's NBD export listens on a TCP port of the host with TLS; a
// plain NBD client is refused (the server requires TLS), a client that trusts another CA
// refuses the server with a clear error, a client certificate of another CA is refused by
// QEMU, and the right client reads. Then `cairn hypervisor add libvirt --uri qemu+tls://…`,
// a full and an incremental backup of a booted TCG domain whose guest keeps writing (paused
// over each backup, so its image is that instant), each restoring byte-identical, the
// incremental reading only the changes, and nothing left: no libvirt job, no scratch file (in
// /var/tmp on the host: libvirt makes and removes them).
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { copyFile, mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  buildGuestImage, defineGuestDomain, ensureLibvirtd, issueCert, LIBVIRTD_TLS_PORT, libvirtTlsFixture, makeCa, TEST_PKI_DIR, useHarness, virsh, waitFor,
} from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack } from '@cairn/cli';
import { CommandBus } from '@cairn/messaging';
import { LibvirtAdapter } from '@cairn/hypervisor';
import { NbdClient } from '@cairn/nbd';
import { connectNbdEndpoint } from '@cairn/data-mover';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

const run = promisify(execFile);

describe('libvirt over qemu+tls through the product (real libvirtd, QEMU, TLS on the NBD export)', () => {
  const h = useHarness();

  it('NBD export served with TLS only; full and incremental backups over qemu+tls restore byte-identical', async (ctx) => {
    await ensureLibvirtd({ tls: true });
    const fx = await libvirtTlsFixture();
    if ('skip' in fx) { ctx.skip(fx.skip); return; }
    // The server end is libvirtd itself: its TLS port, not a stand-in.
    expect(fx.uri).toContain(`localhost:${LIBVIRTD_TLS_PORT}/`);
    expect(Number((await run('ss', ['-Hltnp', `sport = :${LIBVIRTD_TLS_PORT}`])).stdout.match(/pid=(\d+)/)?.[1])).toBe(Number((await readFile('/run/libvirtd.pid', 'utf8')).trim()));
    const dataDir = await h.tmpDir('cairn-e2e-lvtls-');
    // libvirtd verifies clients itself: a certificate of another CA, and one of the test CA
    // whose DN is not in tls_allowed_dn_list, are both refused.
    const pkiDir = async (name: string, cert: { cert: string; key: string }) => {
      const dir = join(dataDir, name);
      await mkdir(dir, { recursive: true });
      await copyFile(fx.caFile, join(dir, 'cacert.pem'));
      await copyFile(cert.cert, join(dir, 'clientcert.pem'));
      await copyFile(cert.key, join(dir, 'clientkey.pem'));
      return fx.uri.replace(fx.clientDir, dir);
    };
    const otherCaDir = join(dataDir, 'other-ca');
    await makeCa(otherCaDir, 'Another CA');
    const outsider = await pkiDir('pki-outsider', await issueCert(otherCaDir, otherCaDir, { name: 'client', cn: 'cairn-test-client', server: false }));
    await expect(run('virsh', ['-q', '-c', outsider, 'uri'], { timeout: 60_000 })).rejects.toThrow();
    const unlisted = await pkiDir('pki-unlisted', await issueCert(TEST_PKI_DIR, join(dataDir, 'unlisted'), { name: 'client', cn: 'not-allowed', server: false }));
    await expect(run('virsh', ['-q', '-c', unlisted, 'uri'], { timeout: 60_000 })).rejects.toThrow();
    const image = await buildGuestImage({ dir: dataDir, hostname: 'lvtls', workload: true, sizeMiB: 64 });
    const dom = await defineGuestDomain({ image, dir: dataDir, prefix: 'cairn-e2e-tls' });
    h.onClose(() => dom.remove());

    // ---- the adapter alone: what the export accepts ----------------------------------------
    const adapter = await LibvirtAdapter.connect({ uri: fx.uri, runDir: join(dataDir, 'probe-run'), stateDir: join(dataDir, 'probe-state') });
    const view = await adapter.openView({ vm: dom.name, mode: 'full', jobId: 'tls-probe' });
    try {
      expect('host' in view.nbd && view.nbd.tls, 'a TCP export with TLS').toBeTruthy();
      if (!('host' in view.nbd) || !view.nbd.tls) throw new Error('unreachable');
      const nbd = view.nbd;
      const tlsFiles = nbd.tls!;
      if (!('caFile' in tlsFiles)) throw new Error('a libvirt TLS export names the client certificate files');
      expect(nbd.host).toBe('localhost');
      expect(tlsFiles.caFile).toBe(join(fx.clientDir, 'cacert.pem'));
      const exportName = view.disks[0]!.exportName;
      // libvirt's own record of the job: TCP, TLS.
      expect(await virsh('backup-dumpxml', dom.name)).toMatch(new RegExp(`<server transport='tcp' tls='yes' name='localhost' port='${nbd.port}'/>`));
      // Plain NBD: the server requires TLS before anything else.
      await expect(NbdClient.connect({ host: nbd.host, port: nbd.port }, { exportName })).rejects.toThrow(/requires TLS/);
      // A client trusting another CA refuses the server.
      const wrongDir = join(dataDir, 'wrong-ca');
      const wrong = await makeCa(wrongDir, 'Not the CA of this host');
      const wrongCa = { host: nbd.host, port: nbd.port, exports: [], tls: { ...tlsFiles, caFile: wrong.cert } };
      await expect(connectNbdEndpoint(wrongCa, exportName, [], 1)).rejects.toThrow(/over TLS: the server's certificate was refused \(.*certificate.*\); it must be signed by the CA in .*wrong-ca\/ca-cert\.pem/);
      // A client certificate of another CA: QEMU (verify-peer, libvirt's default) ends the handshake.
      const stranger = await issueCert(wrongDir, wrongDir, { name: 'client', cn: 'stranger', server: false });
      await expect(connectNbdEndpoint({ ...wrongCa, tls: { ...tlsFiles, certFile: stranger.cert, keyFile: stranger.key } }, exportName, [], 1)).rejects.toThrow();
      // The right client reads.
      const reader = await connectNbdEndpoint({ host: nbd.host, port: nbd.port, exports: [], tls: tlsFiles }, exportName, ['base:allocation'], 1);
      try {
        expect(reader.size).toBe(view.disks[0]!.sizeBytes);
        const head = await reader.read(0, 4096);
        expect(head.length).toBe(4096);
      } finally { await reader.close(); }
    } finally {
      await adapter.releaseView(view.viewId, { success: false });
      await adapter.close();
    }
    expect(await virsh('domjobinfo', dom.name)).toMatch(/Job type:\s+None/);

    // ---- through the product ---------------------------------------------------------------
    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];
    // Flags that do not fit are usage errors before anything is sent.
    const badPorts = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', fx.uri, '--name', 'lvtls', '--nbd-ports', '10960-10950']);
    expect(badPorts.code).toBe(2);
    expect(badPorts.stderr).toMatch(/--nbd-ports: the first port \(10960\) is above the last \(10950\)/);
    // The NBD settings stored with the hypervisor: the client directory (here the pkipath one,
    // named explicitly) and a port range of its own.
    const added = await cli([...args, 'hypervisor', 'add', 'libvirt', '--uri', fx.uri, '--name', 'lvtls', '--nbd-tls-dir', fx.clientDir, '--nbd-ports', '10950-10960']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toContain(dom.name);
    const stored = JSON.parse(await readFile(join(dataDir, 'coordinator', 'hypervisors.json'), 'utf8')) as Array<{ name: string }>;
    expect(stored.find((x) => x.name === 'lvtls')).toMatchObject({ kind: 'libvirt', nbdTlsDir: fx.clientDir, nbdPorts: [10950, 10960] });
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === dom.name && v.hypervisor.host === 'lvtls'), { what: 'the domain in the catalogue' });
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
    const bus = new CommandBus(stack.nc, { site: stack.site, actor: { kind: 'user', id: 'libvirt-tls-e2e' }, defaultTimeoutMs: 60_000 });
    const backupPaused = async (label: string) => {
      await virsh('suspend', dom.name);
      try {
        const reply = await bus.send('scheduler', 'RequestBackup', { vmId: dom.name, policyId, mode: 'auto' }, { idempotencyKey: randomUUID() });
        if (!reply.accepted) throw new Error(`RequestBackup refused: ${reply.error.message}`);
        const job = await waitForJobEnd(catalogue, reply.result!.jobId, 600_000);
        expect(job.state, `${label}: ${job.failure?.reason ?? ''}`).toBe('completed');
        // The data mover read the host's TCP export with TLS.
        const taken = job.events.find((e) => e.type === 'SnapshotTaken') as { data?: { nbd?: { host?: string; port?: number; tls?: { caFile?: string } } } } | undefined;
        expect(taken?.data?.nbd).toMatchObject({ host: 'localhost', tls: { caFile: join(fx.clientDir, 'cacert.pem') } });
        expect(taken!.data!.nbd!.port, 'a port of --nbd-ports').toBeGreaterThanOrEqual(10950);
        expect(taken!.data!.nbd!.port).toBeLessThanOrEqual(10960);
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
        console.log(`libvirt qemu+tls e2e incremental: ${rp.bytesRead} bytes read of ${rp.sizeBytes}`);
        expect(rp.bytesRead).toBeGreaterThan(0);
        expect(rp.bytesRead).toBeLessThan(rp.sizeBytes / 8);
      }
    }
    // Nothing left: no libvirt job, no scratch file in /var/tmp on the host (this machine).
    expect(await virsh('domjobinfo', dom.name)).toMatch(/Job type:\s+None/);
    expect((await readdir('/var/tmp')).filter((f) => /^cairn-v[a-z0-9]{11}-vd[a-z]\.qcow2$/.test(f))).toEqual([]);
    await rm(join(dataDir, 'restores'), { recursive: true, force: true });
  }, 900_000);
});
