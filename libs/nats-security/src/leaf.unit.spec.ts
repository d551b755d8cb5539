import { describe, expect, it } from 'vitest';
import { leafPermissions, renderLeafRemote, renderLeafUsers } from './leaf.ts';
import { hubPermissions } from './permissions.ts';

describe('leafPermissions', () => {
  it('lets only replication, the hub relay reads and the hub\'s commands for the site cross the leaf link of a site', () => {
    const p = leafPermissions('a', { peers: ['b'] });
    expect(p.publish.allow).toContain('cairn.b.repl.a.>');
    // A site sends no command anywhere: it only answers the hub's CLI and gateway.
    expect(p.publish.allow.some((s) => s.includes('.cmd.') || s.startsWith('cairn.b.evt'))).toBe(false);
    expect(p.publish.allow).toEqual(expect.arrayContaining(['_INBOX_hub_admin.>', '_INBOX_hub_gateway.>']));
    expect(p.subscribe.allow).toContain('cairn.a.repl.*.>');
    expect(p.subscribe.allow).toContain('$JS.a.API.STREAM.INFO.CAIRN_EVT_A');
    // Commands reach it only for its own operator-facing services, never the coordinator's or the gateway's.
    expect(p.subscribe.allow.filter((s) => s.includes('.cmd.')).sort()).toEqual([
      'cairn.a.cmd.data-mover.>', 'cairn.a.cmd.gateway.>', 'cairn.a.cmd.replication.>', 'cairn.a.cmd.scheduler.>',
    ]);
    expect(p.subscribe.deny).toEqual(['cairn.a.cmd.gateway.RecoverAccess']);
    expect(p.subscribe.allow.some((s) => s.includes('DELETE.CAIRN') && !s.includes('CONSUMER'))).toBe(false);
  });
  it('renders hub authorization users', () => {
    const text = renderLeafUsers([{ site: 'a', user: 'site-a', password: 'x', permissions: leafPermissions('a', { peers: ['b'] }) }]);
    expect(text).toContain('{ user: "site-a", password: "x", permissions: {');
    expect(text).toContain('"cairn.b.repl.a.>", "_INBOX_b_replication.>", "_INBOX_hub_hub_relay.>"');
  });
});

describe('the hub side of leaf links', () => {
  it('leaf users may connect only as leaf nodes', () => {
    const text = renderLeafUsers([{ site: 'a', user: 'leaf-a', password: '$2b$11$x', permissions: leafPermissions('a', { peers: ['b'] }) }]);
    expect(text).toContain('allowed_connection_types: ["LEAFNODE"]');
  });
  it('the hub relay may make only the calls the sites\' leaf users let through, and append to cairn.hub.sites.*', () => {
    const relay = hubPermissions(['a', 'b'])['hub-relay'];
    const leafA = leafPermissions('a', { peers: ['b'] });
    const siteCalls = relay.publish.allow.filter((s) => s.startsWith('$JS.a.') || s.includes('CAIRN_EVT_A'));
    expect(siteCalls.sort()).toEqual(leafA.subscribe.allow.filter((s) => s.startsWith('$JS.')).sort());
    expect(relay.publish.allow).toContain('cairn.hub.sites.*');
    expect(relay.publish.allow.some((s) => s.includes('DELETE.CAIRN_EVT_HUB') || s.startsWith('cairn.a.') || s.includes('STREAM.CREATE'))).toBe(false);
    expect(relay.subscribe.allow).toEqual(['_INBOX_hub_hub_relay.>']);
    expect(hubPermissions(['a']).catalogue.subscribe.allow).toContain('cairn.hub.query.catalogue.>');
    // The hub's gateway relays the site health report (GET /v1/sites/health); the admin answers it.
    expect(hubPermissions(['a']).gateway.publish.allow).toContain('cairn.hub.query.sites.health');
    expect(hubPermissions(['a']).admin.subscribe.allow).toContain('cairn.hub.>');
  });
  it('the hub\'s CLI and gateway may send each site the commands its leaf link carries; nobody else at the hub may', () => {
    const p = hubPermissions(['a', 'b']);
    for (const who of ['admin', 'gateway'] as const) {
      expect(p[who].publish.allow).toEqual(expect.arrayContaining(['cairn.a.cmd.scheduler.*', 'cairn.b.cmd.data-mover.*', 'cairn.b.cmd.replication.*']));
      expect(p[who].publish.allow).toEqual(expect.arrayContaining(['cairn.a.cmd.gateway.RequestApproval', 'cairn.b.cmd.gateway.DecideApproval']));
      expect(p[who].publish.allow.some((s) => s.includes('.cmd.snapshot-coordinator') || s.includes('RecoverAccess') || (s.includes('.cmd.gateway') && !s.startsWith('cairn.hub.') && !/\.(RequestApproval|DecideApproval)$/.test(s)))).toBe(false);
    }
    expect(p['hub-relay'].publish.allow.some((s) => s.includes('.cmd.'))).toBe(false);
    expect(p.catalogue.publish.allow.some((s) => s.includes('.cmd.'))).toBe(false);
  });
  it('a site\'s remote: TLS with its leaf certificate and user, or plain without credentials', () => {
    const tls = renderLeafRemote('nats-leaf://hub.example:7422', { user: 'leaf-a', password: 'p_w-1', certFile: '/b/leaf.pem', keyFile: '/b/leaf-key.pem', caFile: '/b/hub-ca.pem' });
    expect(tls).toContain('"nats-leaf://leaf-a:p_w-1@hub.example:7422"');
    expect(tls).toContain('tls: { cert_file: "/b/leaf.pem", key_file: "/b/leaf-key.pem", ca_file: "/b/hub-ca.pem"');
    expect(renderLeafRemote('nats-leaf://hub.example:7422')).not.toContain('tls');
  });
});
