import { describe, expect, it } from 'vitest';
import { checkpointName, isBrokenCheckpointError, parseCheckpointName, planLibvirtBackup, type ChainRecord } from './checkpoint-plan.ts';

const disks = [{ target: 'vda', source: '/img/a.qcow2', format: 'qcow2' }, { target: 'vdb', source: '/img/b.qcow2', format: 'qcow2' }];
const record: ChainRecord = { checkpoint: 'cairn.p1.vaaaaaaaaaaa', domainUuid: 'u1', disks: { vda: '/img/a.qcow2', vdb: '/img/b.qcow2' } };
const base = { chain: 'p1', viewId: 'vbbbbbbbbbbb', requested: 'auto' as const, domainUuid: 'u1', disks, record, checkpoints: new Map([[record.checkpoint, ['vda', 'vdb']]]) };

describe('planLibvirtBackup', () => {
  it('is incremental against the recorded checkpoint when everything matches', () => {
    const p = planLibvirtBackup(base);
    expect(p.checkpoint).toBe('cairn.p1.vbbbbbbbbbbb');
    expect(p.disks.map((d) => [d.mode, d.since])).toEqual([['incremental', record.checkpoint], ['incremental', record.checkpoint]]);
  });
  it('is full with the reason on a first backup, a lost checkpoint, a redefined domain, a broken bitmap', () => {
    expect(planLibvirtBackup({ ...base, record: undefined }).disks[0]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/first backup/) });
    expect(planLibvirtBackup({ ...base, checkpoints: new Map() }).disks[1]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/is gone/) });
    expect(planLibvirtBackup({ ...base, domainUuid: 'u2' }).disks[0]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/redefined \(UUID u1 is now u2\)/) });
    expect(planLibvirtBackup({ ...base, broken: 'missing or broken bitmap' }).disks[0]).toMatchObject({ mode: 'full', reason: expect.stringMatching(/broken/) });
  });
  it('decides per disk: a replaced or newly attached disk is full, the others stay incremental', () => {
    const p = planLibvirtBackup({ ...base, disks: [disks[0]!, { ...disks[1]!, source: '/img/new.qcow2' }, { target: 'vdc', source: '/img/c.qcow2', format: 'qcow2' }] });
    expect(p.disks.map((d) => d.mode)).toEqual(['incremental', 'full', 'full']);
    expect(p.disks[1]!.reason).toMatch(/vdb was replaced \(\/img\/b.qcow2 is now \/img\/new.qcow2\)/);
    expect(p.disks[2]!.reason).toMatch(/not in checkpoint/);
  });
  it('raw disks are always full and get no bitmap; a requested full still records the checkpoint', () => {
    const p = planLibvirtBackup({ ...base, disks: [{ target: 'vda', source: '/img/a.raw', format: 'raw' }] });
    expect(p.disks[0]).toMatchObject({ mode: 'full', bitmap: false, reason: expect.stringMatching(/raw disk/) });
    expect(planLibvirtBackup({ ...base, requested: 'full' }).disks.every((d) => d.mode === 'full' && d.bitmap && d.reason === 'full backup requested')).toBe(true);
  });
  it('names checkpoints by chain and view, and recognises libvirt\'s broken-bitmap refusal', () => {
    expect(parseCheckpointName(checkpointName('p-1_x', 'vccccccccccc'))).toEqual({ chain: 'p-1_x', viewId: 'vccccccccccc' });
    expect(parseCheckpointName('manual-snap')).toBeUndefined();
    expect(() => checkpointName('a.b', 'vccccccccccc')).toThrow();
    expect(isBrokenCheckpointError("checkpoint inconsistent: missing or broken bitmap 'c3' for disk 'vda'")).toBe(true);
    expect(isBrokenCheckpointError('Domain not found')).toBe(false);
  });
});
