// The hub's view of a global policy at each site: the version applied (from the site's copy in
// the hub's catalogue) and the state the drift report shows.
import { describe, expect, it } from 'vitest';
import { appliedVersion, siteStatus, sitesConcerned } from './global-policies.ts';

describe('global policy drift at the hub', () => {
  it('a site runs the version of its copy; none, or a deleted copy, is no version', () => {
    expect(appliedVersion({ version: 2 }, { version: 2, deleted: false })).toBe(2);
    expect(appliedVersion({ version: 2 }, { version: 1, deleted: false })).toBe(1);
    expect(appliedVersion({ version: 2 }, undefined)).toBeNull();
    expect(appliedVersion({ version: 2 }, { version: 2, deleted: true })).toBeNull();
  });

  it('a withdrawn policy is applied where the copy is gone or never was; a live copy is behind', () => {
    expect(appliedVersion({ version: 3, withdrawn: true }, { version: 3, deleted: true })).toBe(3);
    expect(appliedVersion({ version: 3, withdrawn: true }, undefined)).toBe(3);
    expect(appliedVersion({ version: 3, withdrawn: true }, { version: 2, deleted: false })).toBe(2);
  });

  it('current, behind (with why the last offer got no answer) or refused (the site\'s reason for this version)', () => {
    expect(siteStatus('a', 2, 2, undefined)).toEqual({ site: 'a', selected: true, appliedVersion: 2, state: 'current', lastError: null, lastOfferAt: null });
    const away = { version: 2, at: Date.parse('2026-12-06T06:00:00Z'), refused: false, error: 'not answered: no responders' };
    expect(siteStatus('b', 2, 1, away)).toEqual({ site: 'b', selected: true, appliedVersion: 1, state: 'behind', lastError: 'not answered: no responders', lastOfferAt: '2026-12-06T06:00:00.000Z' });
    const refused = { version: 2, at: away.at, refused: true, error: 'unauthenticated: no signature by a person this site trusts' };
    expect(siteStatus('b', 2, 1, refused)).toMatchObject({ state: 'refused', lastError: expect.stringMatching(/no signature/) });
    // A refusal of an older version says nothing about the newest: behind.
    expect(siteStatus('b', 3, 1, refused)).toMatchObject({ state: 'behind' });
    // Current clears the last error.
    expect(siteStatus('b', 2, 2, refused)).toMatchObject({ state: 'current', lastError: null });
  });

  it('a version that no longer selects a site is applied there once its copy is deleted (or it never had one): withdrawn/not selected', () => {
    expect(appliedVersion({ version: 2 }, { version: 1, deleted: false }, false)).toBe(1);
    expect(appliedVersion({ version: 2 }, { version: 2, deleted: true }, false)).toBe(2);
    // Deleted by an earlier version (withdrawn or narrowed): nothing left to do.
    expect(appliedVersion({ version: 4 }, { version: 2, deleted: true }, false)).toBe(4);
    expect(appliedVersion({ version: 2 }, undefined, false)).toBe(2);
    expect(siteStatus('b', 2, 2, undefined, false)).toMatchObject({ site: 'b', selected: false, state: 'current' });
    expect(siteStatus('b', 2, 1, undefined, false)).toMatchObject({ selected: false, state: 'behind' });
  });

  it('concerns the sites selected and those holding a copy of an earlier version, not the others', () => {
    const tags = { a: ['eu'], b: ['us'], c: ['eu'] };
    const held = (s: string) => s === 'b';
    expect(sitesConcerned({ selector: { sites: ['a'] } }, ['c', 'b', 'a'], tags, held)).toEqual([{ site: 'a', selected: true }, { site: 'b', selected: false }]);
    expect(sitesConcerned({ selector: { tags: ['eu'] } }, ['a', 'b', 'c'], tags, () => false)).toEqual([{ site: 'a', selected: true }, { site: 'c', selected: true }]);
    expect(sitesConcerned({ selector: { all: true } }, ['b', 'a'], {}, () => false)).toEqual([{ site: 'a', selected: true }, { site: 'b', selected: true }]);
  });
});
