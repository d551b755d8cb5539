import { describe, expect, it } from 'vitest';
import type { PolicyView } from '@cairn/catalogue-client';
import { CliError } from '../cli-error.ts';
import { editedPolicy } from './policy-options.ts';

const view: PolicyView = {
  policyId: 'p1', name: 'nightly', selector: { names: ['web'] },
  schedule: { cron: '0 2 * * *', timezone: 'UTC', window: { start: '22:00', end: '06:00' } },
  retention: { last: 7, daily: 7, weekly: 4, monthly: 6, yearly: 0 },
  repository: 'default', keyRef: 'default', priority: 100,
  immutable: true, bandwidthBytesPerSec: 20 * 1024 * 1024, quiesce: 'required', fileIndex: false, rpoMinutes: 600,
  site: 'a', version: 3, createdAt: '2026-12-01T00:00:00.000Z', updatedAt: '2026-12-02T00:00:00.000Z', deletedAt: null, pausedAt: null,
};

describe('policy edit', () => {
  it('changes only what it is told: quiesce, file index, RPO, immutability, bandwidth and window stay', () => {
    const body = editedPolicy(view, { cron: '0 3 * * *', keepLast: '9' });
    // The site a view names (the hub's catalogue lists every site's) is not part of the policy sent back.
    const { version: _v, createdAt: _c, updatedAt: _u, deletedAt: _d, pausedAt: _p, site: _s, ...fields } = view;
    expect(body).toEqual({ ...fields, schedule: { ...view.schedule, cron: '0 3 * * *' }, retention: { ...view.retention, last: 9 } });
  });

  it('sets quiesce and RPO when told, and "none" removes the bandwidth limit, the window and the RPO', () => {
    expect(editedPolicy(view, { quiesce: 'off', rpo: '60' })).toMatchObject({ quiesce: 'off', rpoMinutes: 60, immutable: true });
    const cleared = editedPolicy(view, { bandwidth: 'none', window: 'none', rpo: 'none' });
    expect(cleared).not.toHaveProperty('bandwidthBytesPerSec');
    expect(cleared).not.toHaveProperty('rpoMinutes');
    expect(cleared.schedule).toEqual({ cron: '0 2 * * *', timezone: 'UTC' });
    expect(cleared.quiesce).toBe('required');
  });

  it('a new selector replaces the old one', () => {
    expect(editedPolicy(view, { tag: ['prod'] }).selector).toEqual({ tags: ['prod'] });
  });

  it('bad values are usage errors and change nothing', () => {
    for (const o of [{ quiesce: 'sometimes' }, { rpo: '0' }, { keepLast: '-1' }, { bandwidth: '1B' }, { window: '22-06' }]) {
      expect(() => editedPolicy(view, o)).toThrow(CliError);
    }
    expect(view.quiesce).toBe('required');
  });
});
