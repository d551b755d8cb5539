// The libvirt adapter against a real libvirtd and a TCG domain that boots the test guest (the
// host's kernel, a busybox root that keeps writing, the host's qemu-guest-agent inside) with a
// second, data disk: full and incremental views of both disks at one instant, checked against
// the paused domain's own images; broken chains (checkpoint deleted by hand, QEMU killed,
// domain redefined); guest-agent quiesce; a reader killed mid-transfer; a shut-off domain.
import { execFile, spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, changedExtents } from '@cairn/nbd';
import { buildGuestImage, defineGuestDomain, ensureLibvirtd, virsh, waitFor, type GuestDomain } from '@cairn/testing';
import { useCleanup } from '../testing/cleanup.ts';
import { readExport, dirtyBlocksWithNbdinfo } from '../testing/nbd-tools.ts';
import type { View } from '../hypervisor.port.ts';
import { LibvirtAdapter } from './libvirt.adapter.ts';
import { domainXmlForRestore } from './domain-xml.ts';

const run = promisify(execFile);
const socketOf = (v: View) => ('socketPath' in v.nbd ? v.nbd.socketPath : '');

/** The export as the previous copy plus the extents its dirty-bitmap context marks (the data mover's read). */
async function applyChanges(previous: Buffer, view: View, disk: string): Promise<{ image: Buffer; changedBytes: number }> {
  const d = view.disks.find((x) => x.disk === disk)!;
  const client = await NbdClient.connect({ path: socketOf(view) }, { exportName: d.exportName, metaContexts: [d.bitmapContext!] });
  const image = Buffer.from(previous);
  let changedBytes = 0;
  try {
    for await (const e of changedExtents(client, d.bitmapContext!)) {
      Buffer.from(await client.read(e.offset, e.length)).copy(image, e.offset);
      changedBytes += e.length;
    }
  } finally { await client.close(); }
  return { image, changedBytes };
}

/** The domain's image as QEMU left it (paused: flushed), read past QEMU's lock. */
async function imageNow(file: string, dir: string): Promise<Buffer> {
  const out = join(dir, `now-${Date.now()}.raw`);
  await run('qemu-img', ['convert', '-U', '-O', 'raw', file, out]);
  try { return await readFile(out); } finally { await run('rm', ['-f', out]); }
}

async function cairnCheckpoints(domain: string): Promise<string[]> {
  return (await virsh('checkpoint-list', domain, '--name')).split('\n').map((s) => s.trim()).filter((s) => s.startsWith('cairn.'));
}

describe('libvirt adapter (real libvirtd, a booted TCG guest writing to its disk)', () => {
  const h = useCleanup();
  let dir: string;
  let dom: GuestDomain;
  let adapter: LibvirtAdapter;
  let rootDisk: string;
  let dataDisk: string;
  const runDir = () => join(dir, 'run');

  beforeAll(async () => {
    await ensureLibvirtd();
    dir = await h.tmpDir('cairn-lv-');
    const image = await buildGuestImage({ dir, hostname: 'lvguest', workload: true, guestAgent: true, sizeMiB: 128 });
    rootDisk = image.disk;
    dataDisk = join(dir, 'data.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', dataDisk, '32M']);
    dom = await defineGuestDomain({ image, dir, prefix: 'cairn-lvtest', extraDisks: [{ file: dataDisk, format: 'qcow2' }], guestAgent: true });
    h.onClose(() => dom.remove());
    adapter = await LibvirtAdapter.connect({ uri: 'qemu:///system', runDir: runDir(), stateDir: join(dir, 'state'), freezeTimeoutMs: 20_000 });
    h.onClose(() => adapter.close());
    await dom.waitForSerial(undefined, 240_000);
  }, 300_000);

  afterAll(async () => { await adapter?.reapOrphans(new Set()).catch(() => undefined); });

  let fullVda: Buffer;
  let fullVdb: Buffer;

  it('lists the domain with both disks, its state and sizes, and follows libvirt\'s events', async () => {
    const events: string[] = [];
    adapter.watch((e) => { if (e.domain === dom.name) events.push(`${e.event}:${e.detail}`); });
    const vm = (await adapter.inventory()).find((v) => v.name === dom.name)!;
    expect(vm).toMatchObject({ state: 'running', disks: [{ id: 'vda', format: 'qcow2', sizeBytes: 128 << 20, file: rootDisk }, { id: 'vdb', sizeBytes: 32 << 20, file: dataDisk }] });
    await new Promise((r) => setTimeout(r, 1000)); // the event stream is connected
    await virsh('suspend', dom.name);
    await virsh('resume', dom.name);
    await waitFor(() => events.some((e) => /Resumed/.test(e)), { what: 'a lifecycle event from libvirt' });
    const config = await adapter.vmConfig(dom.name);
    expect(config.summary).toMatchObject({ name: dom.name, vcpus: 1, memoryBytes: 512 << 20, disks: [{ target: 'vda' }, { target: 'vdb' }], nics: [{ type: 'user', model: 'virtio' }] });
    expect(config.hostPaths).toEqual(expect.arrayContaining([{ where: 'disk vda', path: rootDisk }, { where: 'disk vdb', path: dataDisk }]));
  }, 120_000);

  it('full, then incremental: both disks at one instant, equal to the paused domain\'s images, the incremental reading only changed blocks', async () => {
    const v1 = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j1', chain: 'p1' });
    expect(v1.disks.map((d) => [d.disk, d.mode])).toEqual([['vda', 'full'], ['vdb', 'full']]);
    expect(v1.disks[0]!.reason).toMatch(/first backup/);
    fullVda = await readExport(socketOf(v1), v1.disks[0]!.exportName);
    fullVdb = await readExport(socketOf(v1), v1.disks[1]!.exportName);
    expect(fullVda.length).toBe(128 << 20);
    await adapter.releaseView(v1.viewId, { success: true });
    expect(await cairnCheckpoints(dom.name)).toEqual([`cairn.p1.${v1.viewId}`]);
    expect((await readdir(runDir())).filter((f) => f.includes(v1.viewId))).toEqual([]);

    await new Promise((r) => setTimeout(r, 4000)); // the guest writes 256 KiB a second
    // Paused, QEMU has flushed everything to the images: the view must equal them.
    await virsh('suspend', dom.name);
    let v2: View;
    let vdaNow: Buffer;
    let vdbNow: Buffer;
    try {
      v2 = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j2', chain: 'p1' });
      vdaNow = await imageNow(rootDisk, dir);
      vdbNow = await imageNow(dataDisk, dir);
    } finally { await virsh('resume', dom.name); }
    expect(v2.disks.map((d) => [d.disk, d.mode])).toEqual([['vda', 'incremental'], ['vdb', 'incremental']]);
    expect(v2.disks[0]!.reason).toBe(`changes since checkpoint cairn.p1.${v1.viewId} (chain p1)`);
    await new Promise((r) => setTimeout(r, 2000)); // the guest keeps writing while we read
    const vda = await applyChanges(fullVda, v2, 'vda');
    const vdb = await applyChanges(fullVdb, v2, 'vdb');
    expect(vda.image.equals(vdaNow), 'vda: previous + changed extents = the disk at the instant').toBe(true);
    expect(vdb.image.equals(vdbNow)).toBe(true);
    expect(vda.changedBytes).toBeGreaterThan(0);
    expect(vda.changedBytes).toBeLessThan(vda.image.length / 4);
    expect(vdb.changedBytes).toBe(0);
    // libnbd sees the same changed blocks.
    const blocks = await dirtyBlocksWithNbdinfo(socketOf(v2), v2.disks[0]!.exportName, v2.disks[0]!.bitmapContext!);
    expect(blocks.size * 65536).toBe(vda.changedBytes);
    console.log(`libvirt incremental: ${vda.changedBytes} of ${vda.image.length} bytes changed on vda (${blocks.size} blocks of 64 KiB), 0 on vdb`);
    fullVda = vda.image;
    fullVdb = vdb.image;
    await adapter.releaseView(v2.viewId, { success: true });
    expect(await cairnCheckpoints(dom.name)).toEqual([`cairn.p1.${v2.viewId}`]);
  }, 240_000);

  it('a reader killed mid-transfer: the job is aborted, scratch files go, the changes stay for the next backup', async () => {
    const v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j3', chain: 'p1' });
    expect(v.disks[0]!.mode).toBe('incremental');
    expect((await readdir(runDir())).filter((f) => f.endsWith('.qcow2'))).toHaveLength(2); // scratch files
    // A separate process reads the export slowly (a data mover) and is SIGKILLed mid-way.
    const reader = spawn('nbdcopy', ['--request-size=65536', '--connections=1', '--requests=1', `nbd+unix:///${v.disks[0]!.exportName}?socket=${socketOf(v)}`, '/dev/null'], { stdio: 'ignore' });
    // Listened for at once: a reader that ends by itself within the 100 ms must not hang the test.
    const readerGone = new Promise((r) => reader.once('exit', r));
    await new Promise((r) => setTimeout(r, 100));
    reader.kill('SIGKILL');
    await readerGone;
    // The job failed (or its lease ran out): released as failed.
    await adapter.releaseView(v.viewId, { success: false });
    await expect(virsh('backup-dumpxml', dom.name)).rejects.toThrow(/no domain backup job/);
    expect((await virsh('domjobinfo', dom.name))).toMatch(/Job type:\s+None/);
    expect(await readdir(runDir())).toEqual([]);
    const left = await cairnCheckpoints(dom.name);
    expect(left).toHaveLength(1);
    expect(left[0]).not.toContain(v.viewId);

    await new Promise((r) => setTimeout(r, 2000));
    await virsh('suspend', dom.name);
    let next: View;
    let vdaNow: Buffer;
    try {
      next = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j4', chain: 'p1' });
      vdaNow = await imageNow(rootDisk, dir);
    } finally { await virsh('resume', dom.name); }
    expect(next.disks[0]!.mode).toBe('incremental');
    // The failed view's changes were merged back: previous good copy + these changes = now.
    const vda = await applyChanges(fullVda, next, 'vda');
    expect(vda.image.equals(vdaNow)).toBe(true);
    fullVda = vda.image;
    await adapter.releaseView(next.viewId, { success: true });
  }, 240_000);

  it('quiesce through the real qemu-guest-agent in the guest: the view says application-consistent', async () => {
    const v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j5', chain: 'p1', quiesce: true });
    try {
      expect(v.quiesced).toEqual({ frozen: true, reason: expect.stringMatching(/frozen by the QEMU guest agent/) });
      // Thawed again right after the point in time (asked of the agent directly: test only).
      expect(await virsh('qemu-agent-command', dom.name, '{"execute":"guest-fsfreeze-status"}')).toMatch(/thawed/);
    } finally { await adapter.releaseView(v.viewId, { success: true }); }
  }, 120_000);

  it('a run that dies between freeze and thaw: the guest is thawed when the adapter starts again on the same state', async () => {
    const status = () => virsh('qemu-agent-command', dom.name, '{"execute":"guest-fsfreeze-status"}'); // test only
    const config = { uri: 'qemu:///system', runDir: join(dir, 'run-dying'), stateDir: join(dir, 'state-dying'), freezeTimeoutMs: 20_000, maxFrozenMs: 600_000 };
    const dying = await LibvirtAdapter.connect(config);
    try {
      expect(await dying.quiesce(dom.name)).toMatchObject({ frozen: true });
      // The run ends here with no thaw (close() only stops its watcher and dead-man timer):
      // what a coordinator SIGKILLed between domfsfreeze and domfsthaw leaves behind.
      await dying.close();
      expect(await status()).toMatch(/"frozen"/);
      const next = await LibvirtAdapter.connect(config);
      await next.close();
      expect(await status()).toMatch(/"thawed"/);
      expect(JSON.parse(await readFile(join(config.stateDir, 'libvirt-state.json'), 'utf8')).frozen ?? {}).toEqual({});
    } finally { await virsh('domfsthaw', dom.name).catch(() => undefined); }
  }, 120_000);

  it('a checkpoint deleted by hand, QEMU killed, the domain redefined: each next backup is full and says why', async () => {
    const [cp] = await cairnCheckpoints(dom.name);
    await virsh('checkpoint-delete', dom.name, cp!);
    let v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j6', chain: 'p1' });
    expect(v.disks.map((d) => d.mode)).toEqual(['full', 'full']);
    expect(v.disks[0]!.reason).toMatch(new RegExp(`checkpoint ${cp!.replaceAll('.', '\\.')} of the last backup is gone`));
    await adapter.releaseView(v.viewId, { success: true });

    // QEMU killed: libvirt refuses the incremental (bitmap broken), the adapter goes full.
    const pid = Number((await readFile(`/run/libvirt/qemu/${dom.name}.pid`, 'utf8')).trim());
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => /shut off/.test(await virsh('domstate', dom.name)), { what: 'the domain to be down' });
    await virsh('start', dom.name);
    v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j7', chain: 'p1' });
    expect(v.disks[0]!.mode).toBe('full');
    expect(v.disks[0]!.reason).toMatch(/is broken \(.*bitmap.*\); the domain probably stopped uncleanly/);
    await adapter.releaseView(v.viewId, { success: true });

    // Redefined (a new UUID, its checkpoint metadata gone).
    await virsh('destroy', dom.name);
    await virsh('undefine', dom.name, '--checkpoints-metadata');
    const file = join(dir, 'redefine.xml');
    await writeFile(file, dom.xml);
    await virsh('define', file);
    await virsh('start', dom.name);
    v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j8', chain: 'p1' });
    expect(v.disks[0]!.mode).toBe('full');
    expect(v.disks[0]!.reason).toMatch(/the domain was redefined \(UUID .* is now .*\)/);
    await adapter.releaseView(v.viewId, { success: true });
    v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j9', chain: 'p1' });
    expect(v.disks[0]!.mode).toBe('incremental');
    await adapter.releaseView(v.viewId, { success: true });
  }, 300_000);

  it('a shut-off domain: its disks are served read-only, the domain cannot start meanwhile; its configuration defines a copy', async () => {
    await virsh('destroy', dom.name);
    const v = await adapter.openView({ vm: dom.name, mode: 'auto', jobId: 'j10', chain: 'p1' });
    try {
      expect(v.disks.map((d) => d.mode)).toEqual(['full', 'full']);
      expect(v.disks[0]!.reason).toMatch(/shut off/);
      const vda = await readExport(socketOf(v), v.disks[0]!.exportName);
      expect(vda.equals(await imageNow(rootDisk, dir))).toBe(true);
      await expect(virsh('start', dom.name)).rejects.toThrow(/lock/i);
    } finally { await adapter.releaseView(v.viewId, { success: true }); }
    expect(await readdir(runDir())).toEqual([]);

    const config = await adapter.vmConfig(dom.name);
    const copy = `${dom.name}-copy`;
    const xmlFile = join(dir, 'copy.xml');
    await writeFile(xmlFile, domainXmlForRestore(config, { name: copy, disks: { vda: { file: rootDisk, format: 'qcow2' } } }));
    await virsh('define', xmlFile);
    try {
      const copied = await virsh('dumpxml', copy);
      expect(copied).toMatch(new RegExp(`<name>${copy}</name>`));
      expect(copied).not.toMatch(/vdb/);
    } finally { await virsh('undefine', copy); }
  }, 180_000);
});
