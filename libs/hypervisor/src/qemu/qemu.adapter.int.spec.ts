// The QEMU adapter against a real QEMU whose disk is written continuously: point-in-time
// contents, exact changed blocks, failed transfers, clean restarts and crashes of QEMU.
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCleanup } from '../testing/cleanup.ts';
import { QmpClient } from '../qmp/qmp-client.ts';
import { startQemuVm, guestWrite, type QemuVm } from '../testing/qemu-vm.ts';
import { GuestWriter, applyWrites, blocksWritten, type LoggedWrite } from '../testing/guest-writer.ts';
import { readExport, readExportWithNbdcopy, dirtyBlocks, dirtyBlocksWithNbdinfo } from '../testing/nbd-tools.ts';
import type { View } from '../hypervisor.port.ts';
import { QemuAdapter } from './qemu.adapter.ts';
import { objectId, overlayFileName } from './naming.ts';
import { fakeGuestAgent } from '../testing/fake-guest-agent.ts';

const SIZE = 16 << 20;
const RAW_SIZE = 8 << 20;

describe('QEMU adapter (real QEMU, disk written during backups)', () => {
  const h = useCleanup();
  let dir: string;
  let vm: QemuVm;
  let adapter: QemuAdapter;
  let writerQmp: QmpClient;
  let writer: GuestWriter;
  const nbdSocket = () => join(dir, 'nbd.sock');

  /** Snapshot points seen so far: the write-log prefixes (K) the view matched. */
  interface Point { matches: number[] }

  beforeAll(async () => {
    dir = await h.tmpDir('cairn-hv-');
    vm = await startQemuVm({ dir, name: 'vm-a', disks: [{ id: 'vblk0', format: 'qcow2', sizeBytes: SIZE }, { id: 'vblk1', format: 'raw', sizeBytes: RAW_SIZE }], extraMonitors: 2 });
    h.onClose(() => vm.kill('SIGKILL'));
    adapter = await QemuAdapter.connect({ qmpSocket: vm.qmpPath, overlayDir: join(dir, 'overlays'), nbd: { socketPath: nbdSocket() } });
    h.onClose(() => adapter.close());
    writerQmp = await QmpClient.connect(vm.monitors[0]!);
    h.onClose(() => writerQmp.close());
    writer = new GuestWriter(writerQmp, 'vblk0', SIZE, 7);
  });

  afterAll(async () => { await writer?.stop(); });

  /**
   * Opens a view while the writer runs, reads it while the writer keeps running, and returns
   * the prefixes K of the write log whose disk state equals the export. Writes are sequential
   * and each is atomic against the QMP transaction, so exactly the writes done before the
   * point in time are in the view: some K between those done before openView and those
   * started before it returned.
   */
  async function snapshotWhileWriting(base: Buffer, mode: 'auto' | 'full', chain = 'c1'): Promise<{ view: View; data: Buffer; point: Point }> {
    // Make sure writes really run across the point in time.
    while (writer.writes.length < 10) await new Promise((r) => setTimeout(r, 10));
    const kMin = writer.writes.length;
    const view = await adapter.openView({ vm: 'vm-a', mode, jobId: 'job-1', chain });
    const kMax = writer.started;
    const before = writer.writes.length;
    const data = await readExport(nbdSocket(), view.disks[0]!.exportName);
    // Waiting until some writes landed after the read proves the guest was never blocked.
    while (writer.writes.length < before + 3) await new Promise((r) => setTimeout(r, 10));
    const state = applyWrites(Buffer.from(base), writer.writes, 0, kMin);
    const matches: number[] = [];
    for (let k = kMin; k <= kMax; k++) {
      if (k > kMin) applyWrites(state, writer.writes, k - 1, k);
      if (state.equals(data)) matches.push(k);
    }
    expect(matches.length, `export equals the disk after K writes for some K in [${kMin}, ${kMax}]`).toBeGreaterThan(0);
    return { view, data, point: { matches } };
  }

  /** The incremental's dirty blocks are exactly the blocks written between the two points. */
  async function expectDirtyBetween(view: View, prev: Point, cur: Point, writes: readonly LoggedWrite[]): Promise<void> {
    const d = view.disks.find((x) => x.disk === 'vblk0')!;
    expect(d.mode).toBe('incremental');
    const dirty = [...await dirtyBlocks(nbdSocket(), d.exportName, d.bitmapContext!)].sort((a, b) => a - b);
    expect(dirty.length).toBeGreaterThan(0);
    // libnbd sees the same bitmap as our client.
    expect([...await dirtyBlocksWithNbdinfo(nbdSocket(), d.exportName, d.bitmapContext!)].sort((a, b) => a - b)).toEqual(dirty);
    const candidates = prev.matches.flatMap((a) => cur.matches.map((b) => [...blocksWritten(writes, a, b)].sort((x, y) => x - y)));
    expect(candidates).toContainEqual(dirty);
  }

  const zero = Buffer.alloc(SIZE);
  let p1: Point;
  let p2: Point;

  it('full then incremental while the guest writes: exact point-in-time bytes and exact changed blocks; raw disk always full', async () => {
    for (let i = 0; i < 5; i++) await guestWrite(writerQmp, 'vblk1', i * 3 * 65536, 65536, 0x40 + i);
    writer.start();
    const full = await snapshotWhileWriting(zero, 'auto');
    expect(full.view.disks[0]).toMatchObject({ disk: 'vblk0', mode: 'full', reason: expect.stringMatching(/no dirty bitmap cairn-c1 yet/) });
    expect(full.view.disks[0]!.bitmapContext).toBeUndefined();
    const raw = full.view.disks.find((d) => d.disk === 'vblk1')!;
    expect(raw).toMatchObject({ mode: 'full', reason: expect.stringMatching(/raw disk: no persistent dirty bitmap/) });
    const rawData = await readExportWithNbdcopy(nbdSocket(), raw.exportName);
    expect(rawData.length).toBe(RAW_SIZE);
    expect(rawData[3 * 65536]).toBe(0x41);
    // The VM's configuration for the restore point, from QMP.
    expect(full.view.vmConfig).toMatchObject({
      kind: 'qemu', name: 'vm-a', machine: expect.stringMatching(/q35/), vcpus: 1, memoryBytes: expect.any(Number),
      disks: [{ id: 'vblk0', format: 'qcow2', sizeBytes: SIZE }, { id: 'vblk1', format: 'raw', sizeBytes: RAW_SIZE }],
    });
    await adapter.releaseView(full.view.viewId, { success: true });
    p1 = full.point;

    const inc = await snapshotWhileWriting(zero, 'auto');
    expect(inc.view.disks[0]!.reason).toMatch(/changes since the last backup/);
    expect(inc.view.disks.find((d) => d.disk === 'vblk1')).toMatchObject({ mode: 'full', reason: expect.stringMatching(/raw/) });
    await expectDirtyBetween(inc.view, p1, inc.point, writer.writes);
    await adapter.releaseView(inc.view.viewId, { success: true });
    p2 = inc.point;
  });

  it('a failed transfer keeps its changes: the next incremental holds them too', async () => {
    const failed = await snapshotWhileWriting(zero, 'auto');
    await adapter.releaseView(failed.view.viewId, { success: false });
    const next = await snapshotWhileWriting(zero, 'auto');
    // Exactly the writes since the last *successful* backup (p2), across the failed one.
    await expectDirtyBetween(next.view, p2, next.point, writer.writes);
    await adapter.releaseView(next.view.viewId, { success: true });
    p2 = next.point;
  });

  it('a full backup on request still advances the generation', async () => {
    const full = await snapshotWhileWriting(zero, 'full');
    expect(full.view.disks[0]).toMatchObject({ mode: 'full', reason: 'full backup requested' });
    await adapter.releaseView(full.view.viewId, { success: true });
    const inc = await snapshotWhileWriting(zero, 'auto');
    await expectDirtyBetween(inc.view, full.point, inc.point, writer.writes);
    await adapter.releaseView(inc.view.viewId, { success: true });
    p2 = inc.point;
  });

  it('views after the first on a connection: no name, NBD server or overlay-format commands; a success release asks nothing and leaves nothing; an NBD server stopped meanwhile is started again; objects removed by someone else fall back to the scan', async () => {
    const sent: string[] = [];
    const execute = adapter.qmp.execute.bind(adapter.qmp);
    adapter.qmp.execute = <T>(command: string, args?: Record<string, unknown>, opts?: { timeoutMs?: number }): Promise<T> => {
      sent.push(command);
      return execute<T>(command, args, opts);
    };
    const leftovers = async (viewId: string) => ({
      nodes: (await execute<Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }>>('query-named-block-nodes'))
        .flatMap((n) => [n['node-name'], ...(n['dirty-bitmaps'] ?? []).map((b) => b.name)]).filter((n) => n.includes(viewId)),
      exports: await execute('query-block-exports'), blockJobs: await execute('query-block-jobs'), jobs: await execute('query-jobs'),
      files: await readdir(join(dir, 'overlays')),
    });
    const nothing = { nodes: [], exports: [], blockJobs: [], jobs: [], files: [] };
    try {
      const one = await snapshotWhileWriting(zero, 'auto');
      expect(sent.filter((c) => ['query-name', 'query-status', 'nbd-server-start', 'blockdev-create', 'job-dismiss'].includes(c))).toEqual([]);
      // One qcow2 node per disk, its file inline (written from the first overlay QEMU formatted).
      expect(sent.filter((c) => c === 'blockdev-add')).toHaveLength(2);
      await expectDirtyBetween(one.view, p2, one.point, writer.writes);
      sent.length = 0;
      await adapter.releaseView(one.view.viewId, { success: true });
      expect(sent.filter((c) => c.startsWith('query-'))).toEqual([]);
      expect(await leftovers(one.view.viewId)).toEqual(nothing);

      await writerQmp.execute('nbd-server-stop');
      const two = await snapshotWhileWriting(zero, 'auto');
      expect(sent).toContain('nbd-server-start');
      await expectDirtyBetween(two.view, one.point, two.point, writer.writes);
      await adapter.releaseView(two.view.viewId, { success: true });
      expect(await leftovers(two.view.viewId)).toEqual(nothing);

      // Someone else removed the view's export and frozen bitmap: its own removal fails on the
      // bitmap, and the scan removes whatever is left.
      const three = await snapshotWhileWriting(zero, 'auto');
      const exportId = objectId('export', three.view.viewId, 0);
      const gone = writerQmp.waitForEvent('BLOCK_EXPORT_DELETED', (d) => d['id'] === exportId);
      await writerQmp.execute('block-export-del', { id: exportId, mode: 'hard' });
      await gone;
      await writerQmp.execute('block-dirty-bitmap-remove', { node: vm.disks[0]!.nodeName, name: `cairn.frozen.${three.view.viewId}.cairn-c1` });
      sent.length = 0;
      await adapter.releaseView(three.view.viewId, { success: true });
      expect(sent).toContain('query-block-exports'); // the scan's
      expect(await leftovers(three.view.viewId)).toEqual(nothing);
      p2 = three.point;
    } finally {
      adapter.qmp.execute = execute;
    }
  });

  it('QEMU stopped cleanly and restarted: incrementals continue', async () => {
    await writer.stop();
    await vm.quit();
    await vm.start();
    await writerQmp.close();
    writerQmp = await QmpClient.connect(vm.monitors[0]!);
    const w2 = new GuestWriter(writerQmp, 'vblk0', SIZE, 99);
    // Continue the same log so the model spans the restart.
    w2.writes.push(...writer.writes);
    w2.started = writer.started;
    writer = w2;
    writer.start();
    const inc = await snapshotWhileWriting(zero, 'auto');
    await expectDirtyBetween(inc.view, p2, inc.point, writer.writes);
    await adapter.releaseView(inc.view.viewId, { success: true });
  });

  it('QEMU killed: the next backup is full and says why, the one after is incremental again', async () => {
    await writer.stop();
    await vm.kill('SIGKILL');
    await vm.start();
    await writerQmp.close();
    writerQmp = await QmpClient.connect(vm.monitors[0]!);
    // After a crash the image holds what QEMU had flushed: the full view is the new base.
    const full = await adapter.openView({ vm: 'vm-a', mode: 'auto', jobId: 'job-2', chain: 'c1' });
    expect(full.disks[0]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/inconsistent \(QEMU stopped uncleanly\)/) });
    const base = await readExport(nbdSocket(), full.disks[0]!.exportName);
    await adapter.releaseView(full.viewId, { success: true });
    writer = new GuestWriter(writerQmp, 'vblk0', SIZE, 1234);
    writer.start();
    const inc = await snapshotWhileWriting(base, 'auto');
    await expectDirtyBetween(inc.view, { matches: [0] }, inc.point, writer.writes);
    await adapter.releaseView(inc.view.viewId, { success: true });
    p2 = inc.point;
  });

  it('a failed first backup leaves no bitmap: the next one is full again', async () => {
    const first = await adapter.openView({ vm: 'vm-a', mode: 'auto', jobId: 'job-3', chain: 'c2', disks: ['vblk0'] });
    expect(first.disks).toHaveLength(1);
    expect(first.disks[0]!.reason).toMatch(/no dirty bitmap cairn-c2 yet/);
    await adapter.releaseView(first.viewId, { success: false });
    const again = await adapter.openView({ vm: 'vm-a', mode: 'auto', jobId: 'job-3', chain: 'c2', disks: ['vblk0'] });
    expect(again.disks[0]!.reason).toMatch(/no dirty bitmap cairn-c2 yet/);
    await adapter.releaseView(again.viewId, { success: true });
  });

  it('a restarted caller reaps what a crashed one left, merging the frozen changes back', async () => {
    await writer.stop();
    for (let i = 0; i < 5; i++) await writer.writeOne();
    const orphan = await adapter.openView({ vm: 'vm-a', mode: 'auto', jobId: 'job-4', chain: 'c1', disks: ['vblk0'] });
    for (let i = 0; i < 5; i++) await writer.writeOne();
    // The caller goes away; a new adapter on the same QEMU knows nothing of the view.
    await adapter.close();
    const fresh = adapter = await QemuAdapter.connect({ qmpSocket: vm.qmpPath, overlayDir: join(dir, 'overlays'), nbd: { socketPath: nbdSocket() } });
    const report = await fresh.reapOrphans();
    expect(report.exports).toHaveLength(1);
    expect(report.jobs).toHaveLength(1);
    expect(report.nodes).toHaveLength(1);
    expect(report.files).toHaveLength(1);
    expect(report.bitmaps).toEqual([`cairn.frozen.${orphan.viewId}.cairn-c1`]);
    expect(await fresh.qmp.execute('query-block-exports')).toEqual([]);
    expect(await fresh.qmp.execute('query-block-jobs')).toEqual([]);
    // No node of the orphan is left: neither its qcow2 overlay nor the file node under it.
    const named = async (viewId: string) => (await fresh.qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes'))
      .map((n) => n['node-name']).filter((n) => n.includes(viewId));
    expect(await named(orphan.viewId)).toEqual([]);
    expect((await readdir(join(dir, 'overlays'))).length).toBe(0);
    const next = await fresh.openView({ vm: 'vm-a', mode: 'auto', jobId: 'job-5', chain: 'c1', disks: ['vblk0'] });
    // Exactly the writes since the last successful backup, including those the orphan had taken.
    await expectDirtyBetween(next, p2, { matches: [writer.writes.length] }, writer.writes);
    await fresh.releaseView(next.viewId, { success: true });
    expect(await named(next.viewId)).toEqual([]);
    expect(await fresh.qmp.execute('query-jobs')).toEqual([]); // the overlay's blockdev-create job was dismissed
    expect(await fresh.reapOrphans()).toEqual({ exports: [], jobs: [], nodes: [], files: [], bitmaps: [] });
    // The NBD server was started by the first adapter: this one shares it.
    expect(fresh.sharesNbdServer).toBe(true);
  });

  it('a caller gone between formatting an overlay and dismissing its job: reap dismisses the job and removes its node and file', async () => {
    // What a crash inside the overlay's creation leaves: the file, its file node, and a concluded
    // blockdev-create job nobody dismissed.
    const viewId = 'vcrashedmid0';
    const fileNode = objectId('file', viewId, 0);
    const job = objectId('create', viewId, 0);
    const file = join(dir, 'overlays', overlayFileName(viewId, 0));
    await writeFile(file, '');
    await adapter.qmp.execute('blockdev-add', { driver: 'file', 'node-name': fileNode, filename: file });
    const concluded = adapter.qmp.waitForEvent('JOB_STATUS_CHANGE', (d) => d['id'] === job && d['status'] === 'concluded');
    await adapter.qmp.execute('blockdev-create', { 'job-id': job, options: { driver: 'qcow2', file: fileNode, size: SIZE } });
    await concluded;
    const report = await adapter.reapOrphans();
    expect(report.jobs).toEqual([job]);
    expect(report.files).toEqual([file]);
    expect(await adapter.qmp.execute('query-jobs')).toEqual([]);
    const names = (await adapter.qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes')).map((n) => n['node-name']);
    expect(names.filter((n) => n.includes(viewId))).toEqual([]);
    expect((await readdir(join(dir, 'overlays'))).length).toBe(0);
  });

  it('quiesce: the guest agent freezes before the point in time and thaws after; a silent agent means crash-consistent, thawed anyway', async () => {
    for (const [delay, frozen] of [[0, true], [Infinity, false]] as const) {
      const agent = await fakeGuestAgent(delay);
      h.onClose(() => agent.close());
      const a = await QemuAdapter.connect({
        qmpSocket: vm.monitors[1]!, overlayDir: join(dir, 'overlays'), nbd: { socketPath: nbdSocket() },
        guestAgentSocket: agent.path, freezeTimeoutMs: 300,
      });
      const commands: string[] = [];
      const view = await a.openView({ vm: 'vm-a', mode: 'auto', jobId: 'job-q', chain: 'q', disks: ['vblk1'], quiesce: true });
      commands.push(...agent.received.filter((c) => c !== 'guest-sync-delimited'));
      expect(view.quiesced?.frozen).toBe(frozen);
      expect(view.quiesced?.reason).toMatch(frozen ? /froze 2 file system/ : /crash-consistent instead: .*no answer within 300 ms/);
      expect(commands).toEqual(['guest-fsfreeze-freeze', 'guest-fsfreeze-thaw']);
      await a.releaseView(view.viewId, { success: true });
      await a.close();
    }
  });
});
