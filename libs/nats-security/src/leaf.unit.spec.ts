import { describe, expect, it } from 'vitest';
import { leafPermissions, renderLeafUsers } from './leaf.ts';

describe('leafPermissions', () => {
  it('lets only replication and the hub relay reads cross the leaf link of a site', () => {
    const p = leafPermissions('a', { peers: ['b'] });
    expect(p.publish.allow).toContain('cairn.b.repl.a.>');
    expect(p.publish.allow.some((s) => s.startsWith('cairn.b.cmd') || s.startsWith('cairn.b.evt'))).toBe(false);
    expect(p.subscribe.allow).toContain('cairn.a.repl.*.>');
    expect(p.subscribe.allow).toContain('$JS.a.API.STREAM.INFO.CAIRN_EVT_A');
    expect(p.subscribe.allow.some((s) => s.includes('.cmd.') || s.includes('DELETE.CAIRN') && !s.includes('CONSUMER'))).toBe(false);
  });
  it('renders hub authorization users', () => {
    const text = renderLeafUsers([{ site: 'a', user: 'site-a', password: 'x', permissions: leafPermissions('a', { peers: ['b'] }) }]);
    expect(text).toContain('{ user: "site-a", password: "x", permissions: {');
    expect(text).toContain('"cairn.b.repl.a.>", "_INBOX_b_replication.>", "_INBOX_hub_hub_relay.>"');
  });
});
