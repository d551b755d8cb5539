// Test restores against real parts: the test guest (host kernel, busybox init printing its
// marker, the guest agent, a web server on port 80) written into a real repository, served over
// NBD with a throw-away overlay, booted by QEMU with no route out. It passes every check (serial,
// guest agent and a command through it, TCP port 80 on the isolated network, an operator script);
// a command that tries to reach the host from inside fails (the host's listener sees nothing) and
// a script past its timeout is killed; the same restore point with its root file system's first
// chunk flipped inside the repository fails, naming the check, with the console tail and a PNG
// screenshot kept; afterwards no QEMU, export, overlay or run directory is left.
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { chmod, open, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildGuestImage, useHarness, type GuestImage } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import { chunkKey, DirectoryBackend, initRepository, type Repository } from '@cairn/repository';
import { RestoreExports } from './restore-exports.ts';
import { runTestRestore, type TestRestoreDeps } from './test-restore.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

describe('test restore (real guest, QEMU, NBD export, no network)', () => {
  const h = useHarness();
  let image: GuestImage;
  let repo: Repository;
  let dir: string;
  let restorePointId: string;
  let deps: TestRestoreDeps;
  let log: InMemoryEventLog;

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-tr-');
    image = await buildGuestImage({
      dir: join(dir, 'guest'), hostname: 'tr-guest', format: 'raw', sizeMiB: 64, guestAgent: true, network: true,
      files: { '/etc/os-release': 'PRETTY_NAME="Cairn test guest 1"\nNAME=cairn-guest\nVERSION_ID=1\n', '/www/index.html': 'cairn-ok\n' },
      // The one network interface (named by the initramfs' udev) gets user-mode networking's guest address.
      workloadScript: '#!/bin/sh\nfor n in $(ls /sys/class/net); do [ $n = lo ] || ifconfig $n 10.0.2.15 netmask 255.255.255.0 up; done\nhttpd -p 80 -h /www\n',
    });
    repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const fh = await open(image.disk, 'r');
    const size = (await fh.stat()).size;
    async function* extents() {
      for (let offset = 0; offset < size; offset += 4 * MiB) {
        const buf = Buffer.alloc(Math.min(4 * MiB, size - offset));
        await fh.read(buf, 0, buf.length, offset);
        yield { offset, data: buf };
      }
    }
    restorePointId = (await repo.writeRestorePoint({ vm: { id: 'vm-tr', name: 'tr-guest' }, disks: [{ name: 'vda', sizeBytes: size, extents: extents() }] })).restorePointId;
    await fh.close();
    const exports = new RestoreExports(join(dir, 'run'));
    h.onClose(() => exports.close());
    log = new InMemoryEventLog('site-tr');
    deps = { log, site: 'site-tr', actor: { kind: 'service', id: 'data-mover@site-tr' }, repository: repo, exports, workDir: join(dir, 'work') };
  }, 300_000);

  // Root on the restored disk, the host's kernel; a panic stops (is not rebooted) so its screen can be kept.
  const boot = () => ({ kernel: image.kernel, initrd: image.initrd, append: 'console=ttyS0 root=/dev/vda rw' });

  const leftovers = async (testRestoreId: string) => {
    const ps = await run('ps', ['-eo', 'args']).then((r) => r.stdout);
    return {
      qemu: ps.split('\n').filter((l) => l.includes(`testrestore-${testRestoreId}`)),
      exports: deps.exports.names(),
      overlays: await readdir(join(dir, 'run', 'overlays')).catch(() => []),
      runDirs: (await readdir(deps.workDir)).filter((n) => n.startsWith('tr-')),
    };
  };
  const nothingLeft = { qemu: [], exports: [], overlays: [], runDirs: [] };

  it('a booted test guest\'s restore point passes the serial pattern, the guest agent (ping, OS, a command), TCP port 80 on the isolated network and an operator script; a PNG is kept; nothing is left', async () => {
    const script = join(dir, 'fetch-index.sh');
    // The operator's script reaches the guest's port through the forward it is given, and checks the page.
    await writeFile(script, '#!/bin/bash\nset -e\nexec 3<>"/dev/tcp/${CAIRN_TCP_80%:*}/${CAIRN_TCP_80#*:}"\nprintf "GET / HTTP/1.0\\r\\n\\r\\n" >&3\ngrep cairn-ok <&3\n');
    await chmod(script, 0o755);
    const r = await runTestRestore(deps, {
      restorePointId, serialPattern: image.marker, boot: boot(), timeoutMs: 240_000, testRestoreId: 'tr-pass',
      agent: { exec: ['/bin/cat', '/www/index.html'] }, tcpPorts: [80], script: { name: 'fetch-index.sh', file: script, timeoutMs: 30_000 },
    });
    expect(r.passed, JSON.stringify(r.event)).toBe(true);
    expect(r.event.results.map((x) => [x.check, x.ok])).toEqual([
      [`serial:${image.marker}`, true], ['agent:guest-ping', true], ['agent:exec:/bin/cat /www/index.html', true], ['tcp:80', true], ['script:fetch-index.sh', true]]);
    expect(r.event.results[1]!.detail).toContain('OS: Cairn test guest 1');
    expect(r.event.results[2]!.detail).toContain('exit 0: cairn-ok');
    expect(r.event.results[4]!.detail).toContain('cairn-ok');
    const png = await readFile(r.event.screenshot!.file);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(await leftovers('tr-pass')).toEqual(nothingLeft);
    const types: string[] = [];
    for await (const e of log.readStream('testrestore-tr-pass')) types.push(e.event.type);
    expect(types).toEqual(['TestRestoreStarted', 'TestRestorePassed']);
  }, 300_000);

  it('fails a command that tries to reach the host from the isolated network, and kills a script at its timeout', async () => {
    let reached = 0;
    const host = createServer((_q, res) => { reached++; res.end('leak'); });
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    h.onClose(() => new Promise<void>((r) => host.close(() => r())));
    const port = (host.address() as { port: number }).port;
    const slow = join(dir, 'slow.sh');
    await writeFile(slow, '#!/bin/sh\necho waiting\nsleep 600\n');
    await chmod(slow, 0o755);
    // 10.0.2.2 is the host in user-mode networking: restrict=on must keep the guest from it.
    const r = await runTestRestore(deps, {
      restorePointId, serialPattern: image.marker, boot: boot(), timeoutMs: 240_000, testRestoreId: 'tr-isolated',
      agent: { exec: ['/bin/busybox', 'wget', '-T', '5', '-q', '-O-', `http://10.0.2.2:${port}/`] }, tcpPorts: [80], script: { name: 'slow.sh', file: slow, timeoutMs: 3000 },
    });
    expect(r.passed).toBe(false);
    if (r.passed) return;
    expect(r.event.check).toBe(`agent:exec:/bin/busybox wget -T 5 -q -O- http://10.0.2.2:${port}/`);
    expect(r.event.results.map((x) => [x.check.split(':')[0], x.ok])).toEqual([['serial', true], ['agent', true], ['agent', false], ['tcp', true], ['script', false]]);
    expect(r.event.results[4]!.detail).toMatch(/killed after its timeout of 3000 ms: waiting/);
    expect(reached).toBe(0);
    expect(await leftovers('tr-isolated')).toEqual(nothingLeft);
  }, 300_000);

  it('a restore point whose boot disk was damaged inside the repository fails, naming the check, with console tail and screenshot', async () => {
    // The root file system's first chunk (its superblock) overwritten in the repository.
    const reader = await repo.openDisk(restorePointId, 'vda');
    const first = (await reader.chunkIdAt(0))!;
    const file = join(dir, 'repo', chunkKey(first));
    const sealed = await readFile(file);
    sealed.fill(0x5a, 64, sealed.length - 64);
    await writeFile(file, sealed);

    const r = await runTestRestore(deps, { restorePointId, serialPattern: image.marker, boot: boot(), timeoutMs: 180_000, testRestoreId: 'tr-fail' });
    expect(r.passed).toBe(false);
    if (r.passed) return;
    expect(r.event.check).toBe(`serial:${image.marker}`);
    // The initramfs cannot read the root device (the repository refuses the damaged chunk) and gives up.
    expect(r.event.reason).toMatch(/Dropping to a shell|Gave up waiting for root|Kernel panic/);
    expect(r.event.consoleTail).toMatch(/I\/O error, dev vda/);
    expect(r.event.screenshot).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/), bytes: expect.any(Number) });
    expect((await readFile(r.event.screenshot!.file)).subarray(1, 4).toString()).toBe('PNG');
    expect(await leftovers('tr-fail')).toEqual(nothingLeft);
    const types: string[] = [];
    for await (const e of log.readStream('testrestore-tr-fail')) types.push(e.event.type);
    expect(types).toEqual(['TestRestoreStarted', 'TestRestoreFailed']);
  }, 300_000);
});
