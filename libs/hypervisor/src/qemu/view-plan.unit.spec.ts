import { describe, expect, it } from 'vitest';
import { planDisk, type BitmapState } from './view-plan.ts';

const v = 'vabcdefghijk';
const bm = (over: Partial<BitmapState> = {}): BitmapState => ({ name: 'cairn-p1', recording: true, persistent: true, busy: false, granularity: 65536, count: 0, ...over });
const plan = (bitmaps: BitmapState[], requested: 'auto' | 'full' = 'auto', format = 'qcow2') => planDisk({ node: 'd0', format, bitmaps, requested, chain: 'p1', viewId: v });

describe('planDisk', () => {
  it('raw disk: always full, no bitmap touched', () => {
    expect(plan([], 'auto', 'raw')).toEqual({ mode: 'full', reason: expect.stringMatching(/^raw disk: no persistent dirty bitmap/), pre: [], actions: [] });
  });

  it('first backup: full, creates the live bitmap and the fresh marker in the transaction', () => {
    const p = plan([]);
    expect(p.mode).toBe('full');
    expect(p.reason).toMatch(/no dirty bitmap cairn-p1 yet/);
    expect(p.pre).toEqual([]);
    expect(p.actions.map((a) => a.data['name'])).toEqual(['cairn-p1', `cairn.fresh.${v}.cairn-p1`]);
    expect(p.actions[0]!.data).toMatchObject({ persistent: true, granularity: 65536 });
  });

  it('inconsistent bitmap (QEMU killed): removed first, recreated, full with the reason', () => {
    const p = plan([bm({ inconsistent: true })]);
    expect(p.mode).toBe('full');
    expect(p.reason).toMatch(/inconsistent \(QEMU stopped uncleanly\)/);
    expect(p.pre).toEqual([{ command: 'block-dirty-bitmap-remove', args: { node: 'd0', name: 'cairn-p1' } }]);
  });

  it('usable bitmap: frozen copy, merge, clear; incremental exports the frozen copy', () => {
    const p = plan([bm({ count: 3 })]);
    const frozen = `cairn.frozen.${v}.cairn-p1`;
    expect(p).toMatchObject({ mode: 'incremental', exportBitmap: frozen });
    expect(p.actions.map((a) => a.type)).toEqual(['block-dirty-bitmap-add', 'block-dirty-bitmap-merge', 'block-dirty-bitmap-clear']);
    expect(p.actions[0]!.data).toMatchObject({ name: frozen, disabled: true, persistent: true });
  });

  it('full requested with a usable bitmap: still hands over the changes (so a failure merges them back)', () => {
    const p = plan([bm()], 'full');
    expect(p).toMatchObject({ mode: 'full', reason: 'full backup requested' });
    expect(p.exportBitmap).toBeUndefined();
    expect(p.actions).toHaveLength(3);
  });

  it('a disabled bitmap is recreated; a busy one is refused', () => {
    expect(plan([bm({ recording: false })]).reason).toMatch(/not recording/);
    expect(() => plan([bm({ busy: true })])).toThrow(/busy/);
  });
});
