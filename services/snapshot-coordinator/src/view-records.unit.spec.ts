import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ViewRecordFile, expiredRecords, type ViewRecord } from './view-records.ts';

const dirs: string[] = [];
afterEach(async () => { for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true }); });

const record = (snapshotId: string, expiresAt: string): ViewRecord => ({
  snapshotId, jobId: 'j', instance: 'h1', expiresAt,
  view: { viewId: 'vabcdefghijk', vm: 'a', jobId: 'j', nbd: { socketPath: '/x' }, disks: [], createdAt: expiresAt, expiresAt },
});

describe('view records', () => {
  it('survive a restart and are removed for good', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-vr-'));
    dirs.push(dir);
    const file = join(dir, 'sub', 'views.json');
    const a = new ViewRecordFile(file);
    expect(await a.load()).toEqual([]);
    await Promise.all([a.put(record('s1', '2026-01-01T00:00:00Z')), a.put(record('s2', '2026-01-02T00:00:00Z'))]);
    await a.delete('s1');
    const b = new ViewRecordFile(file);
    expect((await b.load()).map((r) => r.snapshotId)).toEqual(['s2']);
    // Closed (the coordinator stopping), then changed again: the journal is opened again.
    await a.close();
    await a.put(record('s3', '2026-01-03T00:00:00Z'));
    await a.close();
    expect((await new ViewRecordFile(file).load()).map((r) => r.snapshotId)).toEqual(['s2', 's3']);
  });

  it('a damaged file is a clear error, not an empty set (that would orphan views)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-vr-'));
    dirs.push(dir);
    await writeFile(join(dir, 'v.json'), '{not json');
    await expect(new ViewRecordFile(join(dir, 'v.json')).load()).rejects.toThrow(/cannot read view records/);
  });

  it('many changes: a journal line each, compacted into the snapshot; a cut-short last line is ignored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-vr-'));
    dirs.push(dir);
    const file = join(dir, 'views.json');
    const a = new ViewRecordFile(file);
    await a.load();
    // 1,500 opened at once, then all but the last 10 released: past the compaction threshold.
    await Promise.all(Array.from({ length: 1500 }, (_, i) => a.put(record(`s${i}`, '2026-01-01T00:00:00Z'))));
    for (let i = 0; i < 1490; i++) await a.delete(`s${i}`);
    const expected = Array.from({ length: 10 }, (_, i) => `s${1490 + i}`);
    expect((await new ViewRecordFile(file).load()).map((r) => r.snapshotId).sort()).toEqual(expected.sort());
    expect((await readFile(a.journal, 'utf8')).split('\n').length).toBeLessThan(1000);
    await a.close();
    // A crash while appending leaves a short last line: that change never returned, the rest stands.
    await appendFile(a.journal, '{"delete":"s14');
    expect((await new ViewRecordFile(file).load()).map((r) => r.snapshotId).sort()).toEqual(expected.sort());
    // Damage before the last line is an error.
    await writeFile(a.journal, '{oops\n{"delete":"s1490"}\n');
    await expect(new ViewRecordFile(file).load()).rejects.toThrow(/line 1/);
  });

  it('expiredRecords picks leases that ran out', () => {
    const r = [record('old', '2026-01-01T00:00:00Z'), record('new', '2026-01-03T00:00:00Z')];
    expect(expiredRecords(r, new Date('2026-01-02T00:00:00Z')).map((x) => x.snapshotId)).toEqual(['old']);
  });
});
