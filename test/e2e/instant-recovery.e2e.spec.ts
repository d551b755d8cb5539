// Instant recovery on QEMU (issue 15), with two data movers as separate processes: a real 1 GiB
// Linux guest is backed up, then run straight from the repository (`cairn restore --instant`).
// Shown: command to marker against a full restore followed by a boot; the mover that started the
// session SIGKILLed while the guest keeps writing; `cairn instant finish` on the other mover
// mirrors while the guest writes numbered records, pivots, closes the export, and a later backup
// of the running VM restores byte-identical to its disk with every record there; `cairn instant
// discard` leaves no process, export, overlay or socket behind.
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InstantView, KnownEvent } from '@cairn/contracts';
import { CatalogueClient } from '@cairn/catalogue-client';
import { QmpClient } from '@cairn/hypervisor';
import { bootGuest, buildGuestImage, createHarness, waitFor, type BootedGuest, type GuestImage, type Harness } from '@cairn/testing';
import { startStack, type Stack } from '@cairn/cli';
import { cli, gatewayCall, pidsOf, runService, sha256, waitForJobEnd, type ServiceProcess } from './e2e-helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const RECORD = 32;
/** Read rate of each mover (and exporter) from the repository: a full restore has to wait for the disk's data, instant recovery only for what the boot reads. */
const DOWNLOAD_LIMIT = 4 * MiB;
/** Numbered records, each fsynced in place into a preallocated file, then reported on the console. */
const WORKLOAD = `#!/bin/sh
boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id)
i=0
while [ $i -lt 8000 ]; do
  printf 'CAIRN-REC-%s-%06d\\n' "$boot" "$i" | dd of=/data/records bs=${RECORD} seek=$i conv=notrunc,fsync 2>/dev/null && echo "REC $boot $i" > /dev/console
  i=$((i + 1))
  usleep 200000
done
`;

/** The records a guest reported on its console: boot id and the highest number. */
function reported(serial: string): { boot: string; last: number } | undefined {
  const all = [...serial.matchAll(/REC ([0-9a-f]{8}) (\d+)/g)];
  const last = all.at(-1);
  return last ? { boot: last[1]!, last: Number(last[2]) } : undefined;
}

/** Every record of this boot found anywhere on the disk image. */
async function recordsOnDisk(file: string, boot: string): Promise<Set<number>> {
  const found = new Set<number>();
  const re = new RegExp(`CAIRN-REC-${boot}-(\\d{6})\\n`, 'g');
  let carry = '';
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * MiB })) {
    const text = carry + (chunk as Buffer).toString('latin1');
    for (const m of text.matchAll(re)) found.add(Number(m[1]));
    carry = text.slice(-RECORD);
  }
  return found;
}

/** A process that runs (a zombie whose parent died with the mover that started it does not). */
const alive = (pid: number | undefined): boolean => {
  if (!pid) return false;
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};
const exists = (p: string) => stat(p).then(() => true, () => false);

describe('instant recovery (real QEMU 1 GiB guest, two movers as processes)', () => {
  let h: Harness;
  let dataDir: string;
  let storage: string;
  let image: GuestImage;
  let guest: BootedGuest;
  let stack: Stack;
  let catalogue: CatalogueClient;
  const movers: ServiceProcess[] = [];
  let restorePointId: string;
  const events: KnownEvent[] = [];
  const instantId = randomUUID();
  let view: InstantView;

  beforeAll(async () => {
    h = await createHarness();
    dataDir = await h.tmpDir('cairn-e2e-instant-');
    storage = join(dataDir, 'restores', 'vms');
    // 1 GiB disk with 64 MiB of random data, so a full restore has something to move.
    image = await buildGuestImage({
      dir: join(dataDir, 'guest'), hostname: 'inst-guest', sizeMiB: 1024, workloadScript: WORKLOAD,
      files: { '/data/blob': randomBytes(64 * MiB), '/data/records': Buffer.alloc(8192 * RECORD, '.') },
    });
    guest = await bootGuest({ image, dir: join(dataDir, 'guest-run'), args: ['-name', 'vm-orig', '-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0,id=nic0'] });
    h.onClose(() => guest.kill());
    await guest.waitForSerial();
    stack = await startStack({ dataDir, qemu: [{ qmpSocket: guest.qmpPath }], without: ['data-mover'] });
    h.onClose(() => stack.stop());
    for (const name of ['m1', 'm2']) {
      const m = runService(name, ['--nats', stack.natsUrl, '--site', stack.site, '--data', join(dataDir, name), 'run', 'data-mover', '--repo', join(dataDir, 'repository'), '--download-limit', String(DOWNLOAD_LIMIT)],
        { CAIRN_REPO_PASSPHRASE: stack.passphrase, CAIRN_RESTORE_ROOTS: join(dataDir, 'restores') });
      h.onClose(async () => { m.kill(); await m.exited; });
      movers.push(m);
    }
    await Promise.all(movers.map((m) => m.ready));
    // Whatever a session left running (VMs, exporters: their command lines name this directory) goes at the end.
    h.onClose(async () => { for (const pid of await pidsOf(storage)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } });
    catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'vm-orig'), { timeoutMs: 60_000, what: 'vm-orig in the catalogue' });
    const r = await cli(['--data', dataDir, '--json', 'backup', 'vm-orig']);
    expect(r.code, r.stderr).toBe(0);
    const job = await waitForJobEnd(catalogue, (JSON.parse(r.stdout) as { jobId: string }).jobId, 300_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    restorePointId = job.restorePointId!;
    await guest.kill(); // the original is lost; its CPU goes to the recovered ones
    const sub = stack.log.subscribe({ from: 'start', category: 'instant' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const e of sub) events.push(e.event); })();
  }, 900_000);

  afterAll(async () => { await h?.close(); });

  it('instant recovery boots to the marker without waiting for the disk; a full restore + boot for comparison', async () => {
    // Full restore of every disk, then the VM started from them.
    const t0 = Date.now();
    const full = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--vm', 'full-a', '--storage', storage, '--start'], {}, 600_000);
    expect(full.code, `${full.stdout} ${full.stderr}`).toBe(0);
    const fullVm = (JSON.parse(full.stdout) as { vm: { pid: number; serialLog: string } }).vm;
    const fullRestored = Date.now();
    await waitFor(async () => (await readFile(fullVm.serialLog, 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 300_000, intervalMs: 250, what: `${image.marker} on the fully restored VM` });
    const fullBooted = Date.now();
    process.kill(fullVm.pid, 'SIGKILL');

    // Instant: the VM runs on overlays over the restore point served by its own exporter.
    const t1 = Date.now();
    const r = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--instant', '--vm', 'inst-a', '--storage', storage, '--start', '--id', instantId], {}, 300_000);
    expect(r.code, `${r.stdout} ${r.stderr}`).toBe(0);
    view = JSON.parse(r.stdout) as InstantView;
    const instantServing = Date.now();
    expect(view).toMatchObject({ instantId, state: 'serving', running: true, vmName: 'inst-a', dir: join(storage, 'inst-a') });
    expect(alive(view.pid) && alive(view.exporterPid)).toBe(true);
    await waitFor(async () => (await readFile(view.serialLog!, 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 300_000, intervalMs: 250, what: `${image.marker} on the instantly recovered VM` });
    const instantBooted = Date.now();
    // Read from the repository, never copied: the overlays hold only what the guest wrote.
    expect((await stat(join(view.dir, 'disk0.overlay.qcow2'))).blocks * 512).toBeLessThan(64 * MiB);
    const types = events.filter((e) => e.streamId === `instant-${instantId}`).map((e) => e.type);
    expect(types).toEqual(['InstantRecoveryStarted', 'InstantServing']);
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    console.log(`[instant] 1 GiB guest (64 MiB random data, ${DOWNLOAD_LIMIT / MiB} MiB/s read limit): full restore + start ${s(fullRestored - t0)}, boot ${s(fullBooted - fullRestored)}, command to marker ${s(fullBooted - t0)}; `
      + `instant: command to serving ${s(instantServing - t1)}, boot ${s(instantBooted - instantServing)}, command to marker ${s(instantBooted - t1)}`);
  }, 900_000);

  it('the mover that started it is SIGKILLed: the guest keeps writing; finish on the other mover mirrors while it writes, pivots, closes the export; a later backup restores byte-identical with every record', async () => {
    const serial = () => readFile(view.serialLog!, 'utf8').catch(() => '');
    const started = events.find((e) => e.streamId === `instant-${instantId}` && e.type === 'InstantRecoveryStarted')!;
    const worker = (started.data as { worker: string }).worker;
    const victim = movers.find((m) => worker.startsWith(`data-mover@${m.pid}-`))!;
    expect(victim, `no mover has the pid of ${worker}`).toBeDefined();
    victim.kill('SIGKILL');
    await victim.exited;
    const before = reported(await serial())?.last ?? -1;
    await waitFor(async () => ((reported(await serial())?.last ?? -1) > before + 2) || undefined, { timeoutMs: 120_000, intervalMs: 250, what: 'guest records after the mover died' });
    expect(alive(view.exporterPid)).toBe(true);
    // The exporter itself SIGKILLed: its supervisor starts it again on the same socket, QEMU reconnects
    // (the mirror below reads the whole disk through the new one).
    const socket = join(view.dir, 'export.sock');
    // Processes naming the socket: the supervisor, the exporter, and QEMU (its NBD client).
    const exporters = async () => (await pidsOf(socket)).filter((p) => p !== view.exporterPid && p !== view.pid && alive(p));
    const [first] = await exporters();
    expect(first, 'the exporter under its supervisor').toBeDefined();
    process.kill(first!, 'SIGKILL');
    const second = await waitFor(async () => (await exporters()).find((p) => p !== first), { timeoutMs: 120_000, intervalMs: 200, what: 'the exporter started again' });
    await waitFor(async () => ((reported(await serial())?.last ?? -1) > before + 5) || undefined, { timeoutMs: 120_000, intervalMs: 250, what: 'guest records after the exporter came back' });

    const listed = await cli(['--data', dataDir, '--json', 'instant', 'list']);
    expect(listed.code, listed.stderr).toBe(0);
    const mine = (JSON.parse(listed.stdout) as InstantView[]).find((v) => v.instantId === instantId);
    expect(mine).toMatchObject({ state: 'serving', running: true });
    expect(mine!.overlayBytes).toBeGreaterThan(0);
    const api = await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'GET', '/v1/instant-recoveries');
    expect(api.status).toBe(200);
    expect((api.body['items'] as InstantView[]).find((v) => v.instantId === instantId)).toMatchObject({ state: 'serving', running: true, exporterPid: view.exporterPid });

    const atMirror = reported(await serial())!.last;
    const t0 = Date.now();
    const fin = await cli(['--data', dataDir, '--json', 'instant', 'finish', instantId], {}, 900_000);
    expect(fin.code, `${fin.stdout} ${fin.stderr}`).toBe(0);
    const finished = Date.now();
    const atPivot = reported(await serial())!.last;
    const disk = join(view.dir, 'disk0.raw');
    expect(JSON.parse(fin.stdout)).toMatchObject({ instantId, state: 'finished', disks: [{ disk: 'disk0', path: disk, format: 'raw' }] });
    const types = events.filter((e) => e.streamId === `instant-${instantId}`).map((e) => e.type);
    expect(types).toEqual(['InstantRecoveryStarted', 'InstantServing', 'InstantMirroring', 'InstantFinished']);
    // The export is gone: exporter process, socket, overlays; the VM keeps running and writing.
    expect(alive(view.exporterPid)).toBe(false);
    expect(alive(second)).toBe(false);
    expect(await serial(), 'no I/O error inside the guest').not.toMatch(/I\/O error/);
    for (const p of ['export.sock', 'disk0.overlay.qcow2']) expect(await exists(join(view.dir, p)), p).toBe(false);
    expect(alive(view.pid)).toBe(true);
    await waitFor(async () => ((reported(await serial())?.last ?? -1) > atPivot + 2) || undefined, { timeoutMs: 120_000, intervalMs: 250, what: 'guest records after the pivot' });
    // QEMU runs on the local image alone.
    const qmp = await QmpClient.connect(view.qmpSocket!);
    const blocks = await qmp.execute<Array<{ inserted?: { file: string; backing_file_depth: number } }>>('query-block');
    expect(blocks.map((b) => b.inserted?.file)).toEqual([disk]);
    expect(blocks[0]!.inserted!.backing_file_depth).toBe(0);
    // Paused so the disk holds still for the comparison; every record the guest reported is fsynced before.
    await qmp.execute('stop');
    await qmp.close();
    const last = reported(await serial())!;

    // A later backup of the recovered VM (through the stack, as any VM) restores byte-identical to its disk.
    const add = await cli(['--data', dataDir, '--json', 'hypervisor', 'add', 'qemu', '--qmp', view.qmpSocket!, '--name', 'recovered']);
    expect(add.code, add.stderr).toBe(0);
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'inst-a'), { timeoutMs: 60_000, what: 'inst-a in the catalogue' });
    const b = await cli(['--data', dataDir, '--json', 'backup', 'inst-a']);
    expect(b.code, b.stderr).toBe(0);
    const job = await waitForJobEnd(catalogue, (JSON.parse(b.stdout) as { jobId: string }).jobId, 300_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const restored = join(dataDir, 'restores', 'inst-a-later.raw');
    const rr = await cli(['--data', dataDir, '--json', 'restore', job.restorePointId!, '--to', restored], {}, 600_000);
    expect(rr.code, rr.stderr).toBe(0);
    expect(await sha256(restored)).toBe(await sha256(disk));
    // Every record the guest reported, before, during and after the mirror, is on the disk.
    const onDisk = await recordsOnDisk(restored, last.boot);
    const missing = Array.from({ length: last.last + 1 }, (_, i) => i).filter((i) => !onDisk.has(i));
    expect(missing).toEqual([]);
    expect(atPivot - atMirror, 'records written during the mirror').toBeGreaterThan(0);
    console.log(`[instant] finish (mirror of the 1 GiB disk + pivot) ${((finished - t0) / 1000).toFixed(1)} s including the CLI; `
      + `${atPivot - atMirror} guest records written during it, ${last.last + 1} in all, none lost`);
    process.kill(view.pid!, 'SIGKILL');
  }, 1_200_000);

  it('discard leaves no process, export, overlay or socket behind', async () => {
    const id = randomUUID();
    const r = await cli(['--data', dataDir, '--json', 'restore', restorePointId, '--instant', '--vm', 'inst-b', '--storage', storage, '--start', '--id', id], {}, 300_000);
    expect(r.code, `${r.stdout} ${r.stderr}`).toBe(0);
    const v = JSON.parse(r.stdout) as InstantView;
    await waitFor(async () => (await readFile(v.serialLog!, 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 300_000, intervalMs: 250, what: `${image.marker} on inst-b` });
    // What the session holds: its VM and exporter, its sockets, its overlay.
    const held = await pidsOf(v.dir);
    expect(held).toEqual(expect.arrayContaining([v.pid!, v.exporterPid!]));
    expect(held).toHaveLength(3); // the VM, the exporter's supervisor and the exporter
    const sockets = async () => (await run('ss', ['-xlp'])).stdout.split('\n').filter((l) => l.includes(v.dir));
    expect((await sockets()).length).toBeGreaterThanOrEqual(2); // QMP and the export
    expect(await exists(join(v.dir, 'disk0.overlay.qcow2'))).toBe(true);

    const d = await cli(['--data', dataDir, '--json', 'instant', 'discard', id]);
    expect(d.code, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ instantId: id, state: 'discarded', running: false });
    expect(await pidsOf(v.dir)).toEqual([]);
    expect(await sockets()).toEqual([]);
    expect(await exists(v.dir)).toBe(false);
    const discarded = events.find((e) => e.streamId === `instant-${id}` && e.type === 'InstantDiscarded');
    expect((discarded?.data as { removed: string[] } | undefined)?.removed).toEqual(expect.arrayContaining([`VM process ${v.pid}`, `exporter process ${v.exporterPid}`, v.dir]));
    expect(await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'GET', `/v1/instant-recoveries/${id}`)).toMatchObject({ status: 200, body: { instantId: id, state: 'discarded' } });
    // Gone from the list; refused a second time with nothing to do; an unknown id is not found (exit 3).
    const listed = JSON.parse((await cli(['--data', dataDir, '--json', 'instant', 'list'])).stdout) as InstantView[];
    expect(listed.map((x) => x.instantId)).not.toContain(id);
    expect((await cli(['--data', dataDir, '--json', 'instant', 'discard', randomUUID()])).code).toBe(3);
  }, 900_000);
});
