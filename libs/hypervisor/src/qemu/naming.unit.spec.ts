import { describe, expect, it } from 'vitest';
import { exportName, isViewId, liveBitmapName, newViewId, objectId, overlayFileName, parseObjectId, parseOverlayFileName, parseViewBitmapName, viewBitmapName } from './naming.ts';

describe('naming', () => {
  it('round-trips every name through its parser and stays within QEMU limits', () => {
    const v = newViewId();
    expect(isViewId(v)).toBe(true);
    for (const kind of ['export', 'job', 'node'] as const) {
      const id = objectId(kind, v, 12);
      expect(id.length).toBeLessThan(32);
      expect(id).toMatch(/^[A-Za-z][A-Za-z0-9._-]*$/);
      expect(parseObjectId(kind, id)).toEqual({ viewId: v, index: 12 });
    }
    expect(parseObjectId('job', objectId('export', v, 0))).toBeUndefined();
    expect(parseOverlayFileName(overlayFileName(v, 3))).toEqual({ viewId: v, index: 3 });
    expect(parseOverlayFileName('other.qcow2')).toBeUndefined();
    const live = liveBitmapName('policy-7');
    expect(parseViewBitmapName(viewBitmapName('frozen', v, live))).toEqual({ kind: 'frozen', viewId: v, live });
    expect(parseViewBitmapName(live)).toBeUndefined();
    expect(exportName(v, 'vblk0')).toContain(v);
  });

  it('refuses chain names that could break the bitmap names', () => {
    expect(() => liveBitmapName('a.b')).toThrow(/chain/);
    expect(() => liveBitmapName('')).toThrow(/chain/);
  });
});
