// Instant recovery onto libvirt (issue 15; real libvirtd, QEMU, NATS, a Linux guest): the test
// guest runs as a libvirt domain, is backed up through the stack, and is lost. `cairn restore
// <point> --instant --vm <n> --host lv --start` defines a new domain from the domain XML the
// restore point keeps (new name, UUID and MACs), each disk a local qcow2 overlay whose backing is
// the session's read-only NBD export, and starts it: its marker comes on its own console. While
// the guest writes numbered, fsynced records, `cairn instant finish` has libvirt copy each disk to
// a local image (`blockcopy`) and pivot: the export (process, socket) is gone, the domain keeps
// running on the local image alone, and every record the guest reported is on that image.
// `cairn instant discard` on a second session leaves no domain, process, socket or file behind.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InstantView, KnownEvent } from '@cairn/contracts';
import { CatalogueClient } from '@cairn/catalogue-client';
import { liveDisks, parseDomainXml } from '@cairn/hypervisor';
import { buildGuestImage, createHarness, defineGuestDomain, ensureLibvirtd, virsh, waitFor, type GuestDomain, type GuestImage, type Harness } from '@cairn/testing';
import { startStack, type Stack } from '@cairn/cli';
import { defaultScratchDir } from '@cairn/snapshot-coordinator';
import { cli, gatewayCall, pidsOf } from './e2e-helpers.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const RECORD = 32;
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

function reported(serial: string): { boot: string; last: number } | undefined {
  const last = [...serial.matchAll(/REC ([0-9a-f]{8}) (\d+)/g)].at(-1);
  return last ? { boot: last[1]!, last: Number(last[2]) } : undefined;
}

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

const alive = (pid: number | undefined): boolean => {
  if (!pid) return false;
  try { return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};
const exists = (p: string) => stat(p).then(() => true, () => false);
const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

describe('instant recovery onto libvirt (real libvirtd, QEMU, NATS, Linux guest)', () => {
  let h: Harness;
  let dataDir: string;
  let storage: string;
  let image: GuestImage;
  let dom: GuestDomain;
  let stack: Stack;
  let restorePointId: string;
  let original: ReturnType<typeof parseDomainXml>;
  const events: KnownEvent[] = [];
  const args = () => ['--data', dataDir];
  const domains: string[] = [];

  beforeAll(async () => {
    h = await createHarness();
    await ensureLibvirtd();
    dataDir = await h.tmpDir('cairn-e2e-lvinst-');
    await chmod(dataDir, 0o755); // QEMU (libvirt's user) passes through to the session's overlays and socket
    image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'lvinst', sizeMiB: 256, workloadScript: WORKLOAD, files: { '/data/records': Buffer.alloc(8192 * RECORD, '.') } });
    dom = await defineGuestDomain({ image, dir: join(dataDir, 'guest'), prefix: 'cairn-instant-orig' });
    h.onClose(() => dom.remove());
    h.onClose(() => rm(defaultScratchDir(join(dataDir, 'coordinator'), 'lv'), { recursive: true, force: true }));
    stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    h.onClose(async () => {
      for (const d of domains) { await virsh('destroy', d).catch(() => undefined); await virsh('undefine', d).catch(() => undefined); }
      for (const pid of await pidsOf(storage)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    });
    const added = await cli([...args(), 'hypervisor', 'add', 'libvirt', '--uri', 'qemu:///system', '--name', 'lv']);
    expect(added.code, added.stderr).toBe(0);
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === dom.name), { what: 'the domain in the catalogue' });
    await dom.waitForSerial(undefined, 300_000);
    original = parseDomainXml(await virsh('dumpxml', dom.name));
    const backup = await cli([...args(), '--json', 'backup', dom.name, '--wait', '--timeout', '600'], {}, 660_000);
    expect(backup.code, backup.stderr).toBe(0);
    restorePointId = (JSON.parse(backup.stdout) as { restorePointId: string }).restorePointId;
    await virsh('destroy', dom.name); // the original is lost; its CPU goes to the recovered ones
    storage = join(dataDir, 'restores', 'vms');
    await mkdir(storage, { recursive: true, mode: 0o755 });
    await chmod(join(dataDir, 'restores'), 0o755);
    const sub = stack.log.subscribe({ from: 'start', category: 'instant' });
    h.onClose(() => sub.stop());
    void (async () => { for await (const e of sub) events.push(e.event); })();
  }, 1_200_000);

  afterAll(async () => { await h?.close(); });

  const startInstant = async (name: string, id: string) => {
    domains.push(name);
    const t0 = Date.now();
    const r = await cli([...args(), '--json', 'restore', restorePointId, '--instant', '--vm', name, '--host', 'lv', '--storage', storage, '--start', '--id', id], {}, 300_000);
    expect(r.code, `${r.stdout} ${r.stderr}`).toBe(0);
    const view = JSON.parse(r.stdout) as InstantView;
    const serving = Date.now();
    await waitFor(async () => (await readFile(view.serialLog!, 'utf8').catch(() => '')).includes(image.marker) || undefined,
      { timeoutMs: 300_000, intervalMs: 250, what: `${image.marker} on ${name}` });
    return { view, servingMs: serving - t0, markerMs: Date.now() - t0 };
  };

  it('runs the restore point as a new libvirt domain on overlays over the export; finish copies and pivots while the guest writes, no write lost', async () => {
    const id = randomUUID();
    const name = `cairn-instant-a-${id.slice(0, 8)}`;
    const { view, servingMs, markerMs } = await startInstant(name, id);
    expect(view).toMatchObject({ instantId: id, state: 'serving', running: true, vmName: name, dir: join(storage, name), libvirt: { host: 'lv', domain: name } });
    // A new domain from the restore point's XML: its own name, UUID and MACs; the disk an overlay over the NBD export.
    const xml = await virsh('dumpxml', name);
    const defined = parseDomainXml(xml);
    expect(defined.uuid).not.toBe(original.uuid);
    expect(defined.nics[0]!.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(defined.nics[0]!.mac).not.toBe(original.nics[0]!.mac);
    expect(defined.disks.map((d) => [d.target, d.source, d.format])).toEqual([['vda', join(view.dir, 'vda.overlay.qcow2'), 'qcow2']]);
    expect(liveDisks(xml)[0]!.networkBacking).toBe(true);
    expect(xml).toMatch(new RegExp(`<source protocol=.nbd. name=.vda.[^>]*>\\s*<host transport=.unix. socket=.${join(view.dir, 'export', 'export.sock')}.`));
    expect(alive(view.exporterPid)).toBe(true);
    expect((await stat(join(view.dir, 'vda.overlay.qcow2'))).blocks * 512, 'the overlay holds only what the guest wrote').toBeLessThan(64 * MiB);
    const listed = (JSON.parse((await cli([...args(), '--json', 'instant', 'list'])).stdout) as InstantView[]).find((v) => v.instantId === id);
    expect(listed).toMatchObject({ state: 'serving', running: true, libvirt: { domain: name } });

    const serial = () => readFile(view.serialLog!, 'utf8').catch(() => '');
    await waitFor(async () => ((reported(await serial())?.last ?? -1) > 2) || undefined, { timeoutMs: 120_000, intervalMs: 250, what: 'guest records' });
    const atMirror = reported(await serial())!.last;
    const t0 = Date.now();
    const fin = await cli([...args(), '--json', 'instant', 'finish', id], {}, 900_000);
    expect(fin.code, `${fin.stdout} ${fin.stderr}`).toBe(0);
    const finishMs = Date.now() - t0;
    const atPivot = reported(await serial())!.last;
    const disk = join(view.dir, 'vda.raw');
    expect(JSON.parse(fin.stdout)).toMatchObject({ instantId: id, state: 'finished', disks: [{ disk: 'vda', path: disk }] });
    expect(events.filter((e) => e.streamId === `instant-${id}`).map((e) => e.type)).toEqual(['InstantRecoveryStarted', 'InstantServing', 'InstantMirroring', 'InstantFinished']);
    // The export is gone (process, socket and its directory, overlay); the domain runs on the local image alone, live and persistent.
    expect(alive(view.exporterPid)).toBe(false);
    // QEMU's own command line still names the socket it started with; nothing else does, and nothing is connected to it.
    const qemuPid = Number((await readFile(`/run/libvirt/qemu/${name}.pid`, 'utf8')).trim());
    expect(await pidsOf(join(view.dir, 'export'))).toEqual([qemuPid]);
    expect((await run('ss', ['-xp'])).stdout).not.toContain(join(view.dir, 'export'));
    for (const p of ['export', 'vda.overlay.qcow2']) expect(await exists(join(view.dir, p)), p).toBe(false);
    expect((await virsh('domstate', name)).trim()).toBe('running');
    for (const x of [await virsh('dumpxml', name), await virsh('dumpxml', '--inactive', name)]) {
      expect(liveDisks(x).map((d) => [d.source, d.networkBacking, d.mirror])).toEqual([[disk, false, undefined]]);
    }
    await waitFor(async () => ((reported(await serial())?.last ?? -1) > atPivot + 2) || undefined, { timeoutMs: 120_000, intervalMs: 250, what: 'guest records after the pivot' });
    expect(await serial(), 'no I/O error inside the guest').not.toMatch(/I\/O error/);
    // Paused so the image holds still: every record the guest reported (each fsynced first) is on it.
    await virsh('suspend', name);
    const last = reported(await serial())!;
    const onDisk = await recordsOnDisk(disk, last.boot);
    expect(Array.from({ length: last.last + 1 }, (_, i) => i).filter((i) => !onDisk.has(i))).toEqual([]);
    expect(atPivot - atMirror, 'records written during the copy').toBeGreaterThan(0);
    const api = await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'GET', `/v1/instant-recoveries/${id}`);
    expect(api).toMatchObject({ status: 200, body: { instantId: id, state: 'finished', libvirt: { domain: name } } });
    console.log(`[libvirt instant] 256 MiB guest: command to running ${s(servingMs)}, command to marker ${s(markerMs)}; `
      + `finish (blockcopy + pivot) ${s(finishMs)} including the CLI, ${atPivot - atMirror} records written during it, ${last.last + 1} in all, none lost`);
    await virsh('destroy', name);
  }, 1_200_000);

  it('discard destroys and undefines the domain and leaves no process, export, overlay or socket behind', async () => {
    const id = randomUUID();
    const name = `cairn-instant-b-${id.slice(0, 8)}`;
    const { view } = await startInstant(name, id);
    // What the session holds: the domain's QEMU, the exporter and its supervisor, the export's socket, the overlay.
    const held = await pidsOf(view.dir);
    expect(held).toEqual(expect.arrayContaining([view.exporterPid!]));
    expect(held.length).toBeGreaterThanOrEqual(3);
    const sockets = async () => (await run('ss', ['-xlp'])).stdout.split('\n').filter((l) => l.includes(view.dir));
    expect((await sockets()).length).toBeGreaterThanOrEqual(1);
    expect(await exists(join(view.dir, 'vda.overlay.qcow2'))).toBe(true);

    const d = await cli([...args(), '--json', 'instant', 'discard', id], {}, 300_000);
    expect(d.code, d.stderr).toBe(0);
    expect(JSON.parse(d.stdout)).toMatchObject({ instantId: id, state: 'discarded', running: false });
    expect(await pidsOf(view.dir)).toEqual([]);
    expect(await sockets()).toEqual([]);
    expect(await exists(view.dir)).toBe(false);
    expect((await virsh('list', '--all', '--name')).split('\n').map((l) => l.trim())).not.toContain(name);
    const discarded = events.find((e) => e.streamId === `instant-${id}` && e.type === 'InstantDiscarded');
    expect((discarded?.data as { removed: string[] } | undefined)?.removed).toEqual(expect.arrayContaining([`libvirt domain ${name} stopped`, `libvirt domain ${name} undefined`, `exporter process ${view.exporterPid}`, view.dir]));
  }, 900_000);
});
