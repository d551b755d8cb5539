// The coordinator's rules against a scripted hypervisor and an in-memory log.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newEvent, type KnownEvent, type TraceContext } from '@cairn/contracts';
import { InMemoryEventLog, WrongExpectedRevisionError } from '@cairn/eventlog';
import type { HypervisorAdapter, OpenViewRequest, View } from '@cairn/hypervisor';
import { SnapshotCommandError, SnapshotCoordinator, chainFor } from './snapshot-coordinator.service.ts';
import { ViewRecordFile } from './view-records.ts';

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
const actor = { kind: 'service' as const, id: 'sc' };
const dirs: string[] = [];
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }); });

class FakeAdapter implements HypervisorAdapter {
  opened: OpenViewRequest[] = [];
  released: Array<{ viewId: string; success: boolean }> = [];
  adopted: string[] = [];
  reaped: Array<ReadonlySet<string>> = [];
  failOpen = false;
  /** Answer a full request with a full view, as the real adapters do (else always incremental). */
  honourMode = false;
  #n = 0;
  async inventory() { return [{ id: 'web 1', name: 'web 1', state: 'running', disks: [{ id: 'vda', nodeName: 'n', file: 'f', format: 'qcow2', sizeBytes: 1024 }] }]; }
  async openView(req: OpenViewRequest): Promise<View> {
    if (this.failOpen) throw new Error('disk busy');
    this.opened.push(req);
    const viewId = `v${String(++this.#n).padStart(11, '0')}`;
    return {
      viewId, vm: req.vm, jobId: req.jobId, nbd: { socketPath: '/run/nbd.sock' }, createdAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + (req.leaseMs ?? 1000)).toISOString(),
      disks: [this.honourMode && req.mode === 'full'
        ? { disk: 'vda', exportName: `cairn-${viewId}-vda`, sizeBytes: 1024, mode: 'full', reason: 'full backup requested' }
        : { disk: 'vda', exportName: `cairn-${viewId}-vda`, sizeBytes: 1024, mode: 'incremental', reason: 'changes since…', bitmapContext: 'qemu:dirty-bitmap:x', changedBytes: 65536 }],
    };
  }
  async releaseView(viewId: string, o: { success: boolean }) { await new Promise((r) => setTimeout(r, 5)); this.released.push({ viewId, success: o.success }); }
  openViews() { return []; }
  adoptView(v: View) { this.adopted.push(v.viewId); }
  async reapOrphans(keep?: ReadonlySet<string>) { this.reaped.push(keep ?? new Set()); return { exports: [], jobs: [], nodes: [], files: [], bitmaps: [] }; }
  async quiesce() { return { frozen: false, reason: '' }; }
  async thaw() { /* nothing */ }
  async close() { /* nothing */ }
}

/** A job that asked for a snapshot, as the scheduler leaves it (JobRequested, JobStarted, SnapshotRequested). */
async function requestedJob(log: InMemoryEventLog, jobId: string, snapshotId: string, o: { policyId?: string; mode?: 'auto' | 'full'; trace?: TraceContext } = {}) {
  const meta = { site: 's', actor, streamId: `job-${jobId}`, ...(o.trace ? { trace: o.trace } : {}) };
  const r = await log.append(`job-${jobId}`, [
    newEvent('JobRequested', { jobId, vmId: 'web_1', policyId: o.policyId ?? null, mode: o.mode ?? 'auto', trigger: 'manual' }, meta),
    newEvent('JobStarted', { jobId, attempt: 1 }, meta),
    newEvent('SnapshotRequested', { jobId, vmId: 'web_1', snapshotId }, meta),
  ], { expectedRevision: 'no_stream' });
  return { jobRevision: Number(r.nextRevision), jobPosition: Number(r.position) };
}

async function setup(leaseMs = 60_000) {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-scu-'));
  dirs.push(dir);
  const adapter = new FakeAdapter();
  const log = new (class extends InMemoryEventLog {
    reads: string[] = [];
    override readStream(...a: Parameters<InMemoryEventLog['readStream']>) { this.reads.push(a[0]); return super.readStream(...a); }
    appends: Array<Parameters<InMemoryEventLog['append']>[2]> = [];
    override append(...a: Parameters<InMemoryEventLog['append']>) { this.appends.push(a[2]); return super.append(...a); }
  })('s');
  const records = new ViewRecordFile(join(dir, 'views.json'));
  const make = () => new SnapshotCoordinator({ site: 's', actor, leaseMs }, new Map([['h1', adapter]]), log, records, silent);
  const types = async (streamId: string) => { const out: KnownEvent[] = []; for await (const r of log.readStream(streamId)) out.push(r.event); return out; };
  return { adapter, log, records, make, types, dir };
}

describe('SnapshotCoordinator', () => {
  it('takes the snapshot id, mode and chain from the command, announces the view without reading the job stream', async () => {
    const { adapter, log, make, types } = await setup();
    const { jobRevision, jobPosition } = await requestedJob(log, 'j1', 'snap-a', { policyId: 'gold', mode: 'full' });
    const c = make();
    const cmd = { jobId: 'j1', vmId: 'web_1', snapshotId: 'snap-a', mode: 'full' as const, policyId: 'gold', jobRevision, jobPosition };
    log.appends.length = 0;
    expect(await c.requestSnapshot(cmd, 'key-1')).toEqual({ snapshotId: 'snap-a' });
    expect(adapter.opened[0]).toMatchObject({ vm: 'web 1', mode: 'full', chain: 'gold', jobId: 'j1' });
    expect(log.reads).toEqual([]);
    // The append expects the sender's revision with that event's position (JetStream: no head read).
    expect(log.appends).toEqual([{ expectedRevision: BigInt(jobRevision), expectedPosition: BigInt(jobPosition) }]);
    const taken = (await types('job-j1')).find((e) => e.type === 'SnapshotTaken');
    expect(taken?.data).toMatchObject({ snapshotId: 'snap-a', nbd: { socket: '/run/nbd.sock', exports: [{ disk: 'vda', mode: 'incremental', dirtyBitmapContext: 'qemu:dirty-bitmap:x' }] } });
    // A retry (the stream has moved on: the job decider reads it and records nothing twice) opens nothing new.
    expect(await c.requestSnapshot(cmd, 'key-1')).toEqual({ snapshotId: 'snap-a' });
    expect(adapter.opened).toHaveLength(1);
    expect((await types('job-j1')).filter((e) => e.type === 'SnapshotTaken')).toHaveLength(1);
  });

  it('answers repeats as the first time without a reply store: concurrent ones open one view, late ones open none', async () => {
    const { adapter, log, make, types } = await setup();
    const { jobRevision } = await requestedJob(log, 'j5', 'snap-5');
    const c = make();
    const cmd = { jobId: 'j5', vmId: 'web_1', snapshotId: 'snap-5', jobRevision };
    expect(await Promise.all([c.requestSnapshot(cmd, 'snap-5'), c.requestSnapshot(cmd, 'snap-5')])).toEqual([{ snapshotId: 'snap-5' }, { snapshotId: 'snap-5' }]);
    expect(adapter.opened).toHaveLength(1);
    const release = { jobId: 'j5', snapshotId: 'snap-5', outcome: 'success' as const };
    await c.releaseSnapshot(release);
    // After the release: the same answers, nothing opened or released again, nothing recorded twice.
    await c.releaseSnapshot(release);
    expect(await c.requestSnapshot(cmd, 'snap-5')).toEqual({ snapshotId: 'snap-5' });
    expect(adapter.opened).toHaveLength(1);
    expect(adapter.released).toEqual([{ viewId: 'v00000000001', success: true }]);
    expect((await types('job-j5')).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotRequested', 'SnapshotTaken', 'SnapshotReleased']);
    // Another job naming the snapshot is not answered from this one's, and a failed request is answered as it was.
    await expect(c.releaseSnapshot({ ...release, jobId: 'j6' })).rejects.toMatchObject({ code: 'not_found' });
    adapter.failOpen = true;
    await requestedJob(log, 'j8', 'snap-8');
    await expect(c.requestSnapshot({ jobId: 'j8', vmId: 'web_1', snapshotId: 'snap-8' }, 'snap-8')).rejects.toMatchObject({ code: 'snapshot_failed' });
    adapter.failOpen = false;
    await expect(c.requestSnapshot({ jobId: 'j8', vmId: 'web_1', snapshotId: 'snap-8' }, 'snap-8')).rejects.toMatchObject({ code: 'snapshot_failed' });
    expect(adapter.opened).toHaveLength(1);
    expect((await types('job-j8')).filter((e) => e.type === 'SnapshotFailed')).toHaveLength(1);
  });

  it('opens a full view when the command says there is no parent to build on, and records why', async () => {
    const { adapter, log, make, types } = await setup();
    adapter.honourMode = true;
    const { jobRevision } = await requestedJob(log, 'j9', 'snap-9');
    const none = 'no earlier restore point of this VM in repository default';
    await make().requestSnapshot({ jobId: 'j9', vmId: 'web_1', snapshotId: 'snap-9', mode: 'auto', parent: { none }, jobRevision }, 'k9');
    expect(adapter.opened[0]).toMatchObject({ mode: 'full', chain: 'manual' });
    const taken = (await types('job-j9')).find((e) => e.type === 'SnapshotTaken');
    expect(taken?.data).toMatchObject({ nbd: { exports: [{ disk: 'vda', mode: 'full', reason: none }] } });
    // A named parent leaves the choice to the changed-block history.
    const b = await requestedJob(log, 'j10', 'snap-10');
    await make().requestSnapshot({ jobId: 'j10', vmId: 'web_1', snapshotId: 'snap-10', mode: 'auto', parent: { restorePointId: 'rp1', snapshotId: 'snap-9' }, jobRevision: b.jobRevision }, 'k10');
    expect(adapter.opened[1]).toMatchObject({ mode: 'auto' });
  });

  it('refuses to record a view for a snapshot the job did not ask for, and gives the view back', async () => {
    const { adapter, log, make, types } = await setup();
    const { jobRevision } = await requestedJob(log, 'j7', 'snap-7');
    await expect(make().requestSnapshot({ jobId: 'j7', vmId: 'web_1', snapshotId: 'other', jobRevision: jobRevision + 5 }, 'k7')).rejects.toMatchObject({ code: 'conflict' });
    expect((await types('job-j7')).map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotRequested']);
    expect(adapter.released).toEqual([{ viewId: 'v00000000001', success: false }]);
  });

  it('records SnapshotFailed with the reason when no view can be opened', async () => {
    const { adapter, log, make, types } = await setup();
    adapter.failOpen = true;
    await requestedJob(log, 'j2', 'k2');
    await expect(make().requestSnapshot({ jobId: 'j2', vmId: 'web_1' }, 'k2')).rejects.toMatchObject({ code: 'snapshot_failed' });
    expect((await types('job-j2')).filter((e) => e.type === 'SnapshotFailed').map((e) => [e.type, (e.data as { reason?: string }).reason])).toEqual([['SnapshotFailed', 'could not open a view of web_1: disk busy']]);
    await expect(make().requestSnapshot({ jobId: 'j3', vmId: 'nope' }, 'k3')).rejects.toBeInstanceOf(SnapshotCommandError);
  });

  it('a release racing the lease reaper releases once; the loser is told', async () => {
    const { adapter, log, make, types } = await setup(1);
    await requestedJob(log, 'j4', 's4');
    const c = make();
    await c.requestSnapshot({ jobId: 'j4', vmId: 'web_1', leaseMs: 1000 }, 's4');
    const late = new Date(Date.now() + 5000);
    const [reaped, released] = await Promise.allSettled([c.reapExpired(late), c.releaseSnapshot({ jobId: 'j4', snapshotId: 's4', outcome: 'success' })]);
    expect(reaped).toEqual({ status: 'fulfilled', value: 1 });
    expect(released).toMatchObject({ status: 'rejected', reason: { code: 'not_found' } });
    // A repeat of the release is told the same.
    await expect(c.releaseSnapshot({ jobId: 'j4', snapshotId: 's4', outcome: 'success' })).rejects.toMatchObject({ code: 'not_found', message: /lease ran out/ });
    expect(adapter.released).toEqual([{ viewId: 'v00000000001', success: false }]);
    expect((await types('job-j4')).filter((e) => e.type === 'SnapshotReleased').map((e) => (e.data as { cause: string }).cause)).toEqual(['lease_expired']);
  });

  it('events it writes outside a command (the lease reaper) continue the trace of the job', async () => {
    const { make, log, types } = await setup(1);
    const trace = { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' };
    await requestedJob(log, 'j6', 's6', { trace });
    const c = make();
    await c.requestSnapshot({ jobId: 'j6', vmId: 'web_1', leaseMs: 1000 }, 's6');
    expect(await c.reapExpired(new Date(Date.now() + 5000))).toBe(1);
    const events = await types('job-j6');
    expect(events.map((e) => e.type)).toEqual(['JobRequested', 'JobStarted', 'SnapshotRequested', 'SnapshotTaken', 'SnapshotReleased']);
    for (const e of events) expect(e.trace?.traceparent.split('-')[1], e.type).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('after a restart: adopts recorded views, reaps the rest keeping them, releases expired ones', async () => {
    const { adapter, log, make } = await setup();
    await requestedJob(log, 'j5', 's5');
    await make().requestSnapshot({ jobId: 'j5', vmId: 'web_1' }, 's5');
    const restarted = make();
    await restarted.recover();
    expect(adapter.adopted).toEqual(['v00000000001']);
    expect([...adapter.reaped[0]!]).toEqual(['v00000000001']);
    expect(adapter.released).toEqual([]);
    await restarted.releaseSnapshot({ jobId: 'j5', snapshotId: 's5', outcome: 'success' });
    await expect(restarted.releaseSnapshot({ jobId: 'j5', snapshotId: 's5' })).rejects.toMatchObject({ code: 'not_found' });
  });

  it('a snapshot asks the hypervisor for no inventory once one found the VM: its name there comes from it', async () => {
    const { adapter, log, make } = await setup();
    let asked = 0;
    const inventory = adapter.inventory.bind(adapter);
    adapter.inventory = async () => { asked++; return inventory(); };
    const c = make();
    await c.syncInventory();
    expect(asked).toBe(1);
    for (const [jobId, snapshotId] of [['j1', 'snap-a'], ['j2', 'snap-b']] as const) {
      const { jobRevision } = await requestedJob(log, jobId, snapshotId);
      await c.requestSnapshot({ jobId, vmId: 'web_1', snapshotId, jobRevision }, `key-${jobId}`);
      await c.releaseSnapshot({ jobId, snapshotId, outcome: 'success' });
    }
    expect(asked).toBe(1);
    expect(adapter.opened.map((o) => o.vm)).toEqual(['web 1', 'web 1']);
    // Without a round first, the first snapshot looks the VM up once, the next ones not.
    const fresh = await setup();
    let freshAsked = 0;
    const freshInventory = fresh.adapter.inventory.bind(fresh.adapter);
    fresh.adapter.inventory = async () => { freshAsked++; return freshInventory(); };
    const c2 = fresh.make();
    for (const [jobId, snapshotId] of [['j1', 'snap-a'], ['j2', 'snap-b']] as const) {
      const { jobRevision } = await requestedJob(fresh.log, jobId, snapshotId);
      await c2.requestSnapshot({ jobId, vmId: 'web_1', snapshotId, jobRevision }, `key-${jobId}`);
      await c2.releaseSnapshot({ jobId, snapshotId, outcome: 'success' });
    }
    expect(freshAsked).toBe(1);
    expect(fresh.adapter.opened.map((o) => o.vm)).toEqual(['web 1', 'web 1']);
  });

  it('inventory rounds triggered at once (periodic, hypervisor add, libvirt events) run one at a time: the VM is discovered once, nothing conflicts', async () => {
    const { adapter, make, types } = await setup();
    let inside = 0;
    let most = 0;
    const inventory = adapter.inventory.bind(adapter);
    adapter.inventory = async () => { inside++; most = Math.max(most, inside); await new Promise((r) => setTimeout(r, 5)); inside--; return inventory(); };
    const c = make();
    await Promise.all([c.syncInventory(), c.syncInventory(), c.syncInventory(), c.syncInventory()]);
    expect(most).toBe(1);
    expect((await types('vm-web_1')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged']);
  });

  it('inventory: a VM the log has on this hypervisor and the hypervisor no longer lists is removed, also one removed while no coordinator ran', async () => {
    const { adapter, log, make, types } = await setup();
    const meta = (streamId: string) => ({ site: 's', actor, streamId });
    await log.append('vm-old', [newEvent('VmDiscovered', { vmId: 'old', name: 'old', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [] }, meta('vm-old'))], { expectedRevision: 'no_stream' });
    await log.append('vm-elsewhere', [newEvent('VmDiscovered', { vmId: 'elsewhere', name: 'elsewhere', hypervisor: { kind: 'qemu', host: 'h2' }, tags: [], disks: [] }, meta('vm-elsewhere'))], { expectedRevision: 'no_stream' });
    const c = make();
    await c.syncInventory();
    expect((await types('vm-old')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmRemoved']);
    expect((await types('vm-elsewhere')).map((e) => e.type)).toEqual(['VmDiscovered']);
    // Seen in one round, gone in the next: removed once.
    const inventory = adapter.inventory.bind(adapter);
    adapter.inventory = async () => [];
    await c.syncInventory();
    await c.syncInventory();
    expect((await types('vm-web_1')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged', 'VmRemoved']);
    adapter.inventory = inventory;
    await c.syncInventory();
    expect((await types('vm-web_1')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged', 'VmRemoved', 'VmDiscovered', 'VmPowerStateChanged']);
  });

  it('inventory rounds read no VM stream: only the vm events appended since the last round, other writers\' included', async () => {
    const { log, make, types } = await setup();
    const c = make();
    await c.syncInventory();
    await c.syncInventory();
    expect(log.reads).toEqual([]);
    expect((await types('vm-web_1')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged']);
    log.reads.length = 0; // types() reads
    // Another coordinator recorded the disk as gone (and the VM stopped) since: this round sees it in the log.
    const meta = { site: 's', actor, streamId: 'vm-web_1' };
    await log.append('vm-web_1', [newEvent('DiskDetached', { vmId: 'web_1', disk: 'vda' }, meta), newEvent('VmPowerStateChanged', { vmId: 'web_1', state: 'stopped' }, meta)], { expectedRevision: 1n });
    await c.syncInventory();
    expect(log.reads).toEqual([]);
    expect((await types('vm-web_1')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged', 'DiskDetached', 'VmPowerStateChanged', 'VmPowerStateChanged', 'DiskAttached']);
    await c.syncInventory();
    expect((await types('vm-web_1'))).toHaveLength(6);
  });

  it('inventory: another writer between read and append makes it read and decide again (bounded)', async () => {
    const { log, make, types } = await setup();
    let interfere = 1;
    const append = log.append.bind(log);
    log.append = async (streamId, events, options) => {
      if (streamId.startsWith('vm-') && interfere > 0) {
        interfere--;
        // Another coordinator saw the VM with a smaller disk just before us.
        await append(streamId, [newEvent('VmDiscovered', { vmId: 'web_1', name: 'web 1', hypervisor: { kind: 'qemu', host: 'h1' }, tags: [], disks: [{ name: 'vda', sizeBytes: 512 }] }, { site: 's', actor, streamId })], { expectedRevision: 'any' });
      }
      return append(streamId, events, options);
    };
    const c = make();
    await c.syncInventory();
    expect((await types('vm-web_1')).map((e) => e.type)).toEqual(['VmDiscovered', 'VmPowerStateChanged', 'DiskDetached', 'DiskAttached']);
    // A writer that always gets there first: given up after a few attempts (the next round tries again).
    interfere = 100;
    await log.append('vm-web_1', [newEvent('DiskDetached', { vmId: 'web_1', disk: 'vda' }, { site: 's', actor, streamId: 'vm-web_1' })], { expectedRevision: 'any' });
    await expect(c.syncInventory()).rejects.toBeInstanceOf(WrongExpectedRevisionError);
  });

  it('chain names from policy ids', () => {
    expect(chainFor(null)).toBe('manual');
    expect(chainFor('gold')).toBe('gold');
    expect(chainFor('x'.repeat(100))).toMatch(/^[0-9a-f]{32}$/);
  });
});
