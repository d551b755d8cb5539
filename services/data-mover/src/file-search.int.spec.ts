// Searching file indexes kept in a real repository: a file that exists only in the second of
// three restore points is found there and nowhere else, the answer names the restore points
// without an index, and no appliance is started for any of it. The event names the searcher.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { InMemoryEventLog } from '@cairn/eventlog';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { runningAppliances, type FileIndex } from '@cairn/guest-files';
import { FileBrowser } from './file-browser.ts';
import { FileIndexStore, splitPoints } from './file-index.store.ts';

const index = (paths: string[]): FileIndex => ({
  version: 1, builtAt: new Date().toISOString(),
  filesystems: [{ disk: 'disk0', name: 'part1', type: 'ext4', indexed: true }],
  files: paths.map((path, i) => ({ disk: 'disk0', path, type: 'file' as const, size: 100 + i, mtime: new Date(1_700_000_000_000 + i * 1000).toISOString() })),
});

describe('file search over the indexes in the repository', () => {
  const h = useHarness();

  it('finds a file only in the restore point that holds it, without an appliance', async () => {
    const dir = await h.tmpDir();
    const repo = await initRepository(new DirectoryBackend(join(dir, 'repo'), { createRoot: true }), { passphrase: 'pw', kdf: { N: 1024 } });
    h.onClose(() => repo.close());
    const point = async () => (await repo.writeRestorePoint({ vm: { id: 'vm1', name: 'web' }, disks: [{ name: 'disk0', sizeBytes: 1024 * 1024, extents: [] }] })).restorePointId;
    const [rp1, rp2, rp3, rp4] = [await point(), await point(), await point(), await point()];
    const store = new FileIndexStore(repo);
    await store.put(rp1!, index(['/part1/etc/hosts', '/part1/home/anna/notes.txt']));
    await store.put(rp2!, index(['/part1/etc/hosts', '/part1/home/anna/notes.txt', '/part1/home/anna/Budget 2026 ü.xlsx']));
    await store.put(rp3!, index(['/part1/etc/hosts', '/part1/home/anna/notes.txt']));
    const appliancesBefore = await runningAppliances();

    const log = new InMemoryEventLog('t');
    const browser = new FileBrowser({ site: 't', index: false }, log, async () => ({ repository: repo, replica: false }),
      { add: () => Promise.reject(new Error('no export may be made')), remove: async () => false },
      async (p) => p, { info: () => undefined, warn: () => undefined }, () => [repo]);
    const actor = { kind: 'user' as const, id: 'anna' };
    const found = await browser.search({ pattern: '*.xlsx' }, actor, 'c1');
    expect(found.matches).toEqual([expect.objectContaining({ restorePointId: rp2, vmName: 'web', path: '/part1/home/anna/Budget 2026 ü.xlsx', size: 102 })]);
    expect(found.pointsSearched).toBe(3);
    expect(found.pointsWithoutIndex).toEqual([rp4]);
    // Which backups still have it: every version, oldest first.
    const notes = await browser.search({ pattern: '/part1/home/**/notes.txt' }, actor, 'c2');
    expect(notes.matches.map((m) => m.restorePointId)).toEqual([rp1, rp2, rp3]);
    const rx = await browser.search({ pattern: 'Budget \\d{4}', regex: true, vmId: 'vm1' }, actor, 'c3');
    expect(rx.matches.map((m) => m.restorePointId)).toEqual([rp2]);
    expect((await browser.search({ pattern: '*.xlsx', vmId: 'other-vm' }, actor, 'c4')).matches).toEqual([]);
    await expect(browser.search({ pattern: '([', regex: true }, actor, 'c5')).rejects.toThrow(/not a valid regular expression/);

    // A restore point whose policy wants no index (the transfer's label) gets none, and no appliance.
    const off = (await repo.writeRestorePoint({ vm: { id: 'vm1', name: 'web' }, labels: { jobId: 'j5', fileIndex: 'off' }, disks: [{ name: 'disk0', sizeBytes: 1024 * 1024, extents: [] }] })).restorePointId;
    expect(await browser.buildIndex(off)).toMatchObject({ files: 0 });
    expect((await browser.search({ pattern: '*.xlsx' }, actor, 'c4b')).pointsWithoutIndex).toEqual(expect.arrayContaining([rp4, off]));

    // No appliance ran for any of it.
    expect(browser.pool.started).toBe(0);
    // Appliances of other specs running meanwhile do not count: one for these restore points
    // would name its export (browse-<restore point>_<disk>) on its command line.
    const appliancesNow = (await runningAppliances()).filter((p) => !appliancesBefore.includes(p));
    const cmdlines = await Promise.all(appliancesNow.map((p) => readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')));
    expect(cmdlines.filter((c) => [rp1, rp2, rp3, rp4, off].some((id) => c.includes(`browse-${id}`)))).toEqual([]);

    // The searches are in the log with who asked.
    const events = [];
    for await (const r of log.readAll()) events.push(r.event);
    expect(events.filter((e) => e.type === 'FilesSearched').map((e) => [e.actor.id, (e.data as { pattern: string }).pattern]))
      .toEqual([['anna', '*.xlsx'], ['anna', '/part1/home/**/notes.txt'], ['anna', 'Budget \\d{4}'], ['anna', '*.xlsx'], ['anna', '*.xlsx']]);

    // A restore point that goes takes its index with it; the index points never look like a VM's.
    await browser.dropIndex(rp2!);
    expect((await browser.search({ pattern: '*.xlsx' }, actor, 'c6')).matches).toEqual([]);
    const { points, indexes } = splitPoints(await repo.listRestorePoints());
    expect(points.map((p) => p.id).sort()).toEqual([rp1, rp2, rp3, rp4, off].sort());
    expect([...indexes.keys()].sort()).toEqual([rp1, rp3].sort());
    await browser.close();
  });
});
