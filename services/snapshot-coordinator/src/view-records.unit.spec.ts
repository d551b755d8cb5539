import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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
  });

  it('a damaged file is a clear error, not an empty set (that would orphan views)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-vr-'));
    dirs.push(dir);
    await writeFile(join(dir, 'v.json'), '{not json');
    await expect(new ViewRecordFile(join(dir, 'v.json')).load()).rejects.toThrow(/cannot read view records/);
  });

  it('expiredRecords picks leases that ran out', () => {
    const r = [record('old', '2026-01-01T00:00:00Z'), record('new', '2026-01-03T00:00:00Z')];
    expect(expiredRecords(r, new Date('2026-01-02T00:00:00Z')).map((x) => x.snapshotId)).toEqual(['old']);
  });
});
