// A data mover on another node than the hypervisor: QEMU's NBD server listens on TCP with TLS
// and requires a client certificate of the site's PKI (snapshot coordinator config
// `nbd: { host, port, tlsDir }`); the view's address says `tls: { pki: 'site' }`, never a key;
// the mover connects with STARTTLS and its own site identity (CAIRN_NATS_SECURITY_DIR).
// Real QEMU, real certificates (openssl), a directory repository.
import { createServer } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { NbdEndpoint } from '@cairn/contracts';
import { QemuAdapter, QmpClient } from '@cairn/hypervisor';
import { guestWrite, startQemuVm } from '@cairn/hypervisor/testing';
import { initSiteSecurity, issueNbdServerTls } from '@cairn/nats-security';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { connectNbdEndpoint, runTransfer } from './transfer.ts';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('NBD exports over TCP with TLS for data movers on other nodes (real QEMU)', () => {
  const h = useHarness();

  it('a backup read through TCP+TLS with the site identity restores byte-identical; a client of another CA is refused', async () => {
    const dir = await h.tmpDir();
    const site = await initSiteSecurity({ dir: join(dir, 'site'), site: 's1', identities: ['data-mover', 'snapshot-coordinator'] });
    const other = await initSiteSecurity({ dir: join(dir, 'other'), site: 's1', identities: ['data-mover'] });
    const tls = await issueNbdServerTls(site.dir, join(dir, 'nbd-tls'), { site: 's1', node: 'hv1', hosts: ['127.0.0.1'] });

    const vm = await startQemuVm({ dir: join(dir, 'vm'), name: 'vm-a', disks: [{ id: 'vblk0', format: 'qcow2', sizeBytes: SIZE }], extraMonitors: 1 });
    h.onClose(() => vm.kill('SIGKILL'));
    const writer = await QmpClient.connect(vm.monitors[0]!);
    h.onClose(() => writer.close());
    const expected = Buffer.alloc(SIZE);
    for (const [i, [off, len]] of [[0, MiB], [3 * MiB + 4096, 64 * 1024], [7 * MiB, MiB]].entries()) {
      await guestWrite(writer, 'vblk0', off!, len!, 0x41 + i);
      expected.fill(0x41 + i, off!, off! + len!);
    }

    const port = await freePort();
    const adapter = await QemuAdapter.connect({
      qmpSocket: vm.qmpPath, overlayDir: join(dir, 'overlays'), nbd: { host: '127.0.0.1', port }, nbdServerTlsDir: tls.dir,
    });
    h.onClose(() => adapter.close());
    const view = await adapter.openView({ vm: 'vm-a', mode: 'full', jobId: 'job-1' });
    h.onClose(() => adapter.releaseView(view.viewId, { success: true }).then(() => undefined));
    // The address carries no key, no path: only that the site's PKI is asked for.
    expect(view.nbd).toEqual({ host: '127.0.0.1', port, tls: { pki: 'site' } });
    const d = view.disks[0]!;
    const endpoint = { host: '127.0.0.1', port, tls: { pki: 'site' as const }, exports: [{ disk: d.disk, exportName: d.exportName, sizeBytes: d.sizeBytes, mode: d.mode, reason: d.reason }] };
    expect(Value.Check(NbdEndpoint, endpoint)).toBe(true); // as SnapshotTaken carries it

    // Without the site's PKI the mover says what it needs.
    await expect(connectNbdEndpoint(endpoint, d.exportName, [], 1, {})).rejects.toThrow(/requires a client certificate of the site's PKI: set CAIRN_NATS_SECURITY_DIR/);
    // A mover of another PKI: its CA does not sign the server's certificate, so it refuses the server ...
    await expect(connectNbdEndpoint(endpoint, d.exportName, [], 1, { CAIRN_NATS_SECURITY_DIR: other.dir })).rejects.toThrow(/certificate was refused/);
    // ... and a client certificate of another CA is refused by the server, even trusting the right CA.
    const foreign = other.credentials('data-mover');
    await expect(connectNbdEndpoint({ ...endpoint, tls: { caFile: site.caFile, certFile: foreign.certFile, keyFile: foreign.keyFile } }, d.exportName, [], 1, {})).rejects.toThrow(/closed during the handshake|certificate/);
    // Plain NBD (no STARTTLS) is refused by the server too.
    await expect(connectNbdEndpoint({ host: '127.0.0.1', port, exports: endpoint.exports }, d.exportName, [], 1, {})).rejects.toThrow(/requires TLS/);

    const saved = process.env['CAIRN_NATS_SECURITY_DIR'];
    process.env['CAIRN_NATS_SECURITY_DIR'] = site.dir;
    h.onClose(() => { if (saved === undefined) delete process.env['CAIRN_NATS_SECURITY_DIR']; else process.env['CAIRN_NATS_SECURITY_DIR'] = saved; });
    const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const result = await runTransfer({ jobId: 'job-1', vm: { id: 'vm-a', name: 'vm-a' }, mode: 'full', parent: null, nbd: endpoint }, { repository: repo });
    const out = join(dir, 'restored.raw');
    await repo.restoreDisk(result.restorePointId, d.disk, out);
    expect((await readFile(out)).equals(expected)).toBe(true);
  }, 240_000);

  it('never serves views without TLS on an NBD server someone else started plainly at that address', async () => {
    const dir = await h.tmpDir();
    const site = await initSiteSecurity({ dir: join(dir, 'site'), site: 's1', identities: ['data-mover'] });
    const tls = await issueNbdServerTls(site.dir, join(dir, 'nbd-tls'), { site: 's1', node: 'hv1', hosts: ['127.0.0.1'] });
    const vm = await startQemuVm({ dir: join(dir, 'vm'), name: 'vm-b', disks: [{ id: 'vblk0', format: 'qcow2', sizeBytes: MiB }], extraMonitors: 1 });
    h.onClose(() => vm.kill('SIGKILL'));
    const port = await freePort();
    const other = await QmpClient.connect(vm.monitors[0]!);
    h.onClose(() => other.close());
    await other.execute('nbd-server-start', { addr: { type: 'inet', data: { host: '127.0.0.1', port: String(port) } } });
    const adapter = await QemuAdapter.connect({
      qmpSocket: vm.qmpPath, overlayDir: join(dir, 'overlays'), nbd: { host: '127.0.0.1', port }, nbdServerTlsDir: tls.dir,
    });
    h.onClose(() => adapter.close());
    await expect(adapter.openView({ vm: 'vm-b', mode: 'full', jobId: 'job-2' })).rejects.toThrow(/already running at 127\.0\.0\.1:\d+ in this QEMU (serves without TLS|does not require TLS)/);
    expect(adapter.openViews()).toEqual([]);
  }, 240_000);
});
