// Leaf links with real nats-servers: a hub (mutual TLS on the leaf listener, one user per site
// with leafPermissions) and sites A and B as leaf nodes. Only replication crosses.
import { join } from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { freePort } from '@cairn/nats-server';
import { createCertificateAuthority, issueCertificate } from './pki.ts';
import { leafPermissions, renderLeafUsers } from './leaf.ts';

const h = useHarness();

describe('leaf links to the hub (mutual TLS, per-site leaf permissions)', () => {
  it('carries replication between A and B, nothing else, and refuses a leaf without a valid certificate', async () => {
    const dir = await h.tmpDir();
    const ca = await createCertificateAuthority(dir, 'Cairn hub CA');
    const hubCert = await issueCertificate(ca, dir, { commonName: 'leaf.hub', kind: 'server', fileName: 'hub-leaf' });
    await mkdir(join(dir, 'rogue'));
    const rogueCa = await createCertificateAuthority(join(dir, 'rogue'), 'rogue CA');
    const leafPort = await freePort();
    const users = renderLeafUsers(['a', 'b'].map((site) => ({
      site, user: `site-${site}`, password: `pw-${site}`, permissions: leafPermissions(site, { peers: site === 'a' ? ['b'] : ['a'] }),
    })));
    const hub = await h.nats({
      domain: 'hub', serverName: 'hub',
      extraConfig: [
        'authorization {', '  users: [', users, '    { user: "hub", password: "pw-hub" }', '  ]', '}',
        'leafnodes {', '  host: "127.0.0.1"', `  port: ${leafPort}`,
        `  tls { cert_file: ${JSON.stringify(hubCert.cert)}, key_file: ${JSON.stringify(hubCert.key)}, ca_file: ${JSON.stringify(ca.cert)}, verify: true, timeout: 5 }`,
        '}',
      ].join('\n'),
    });
    const site = async (name: string, user: string, password: string, cert?: { cert: string; key: string }) => {
      const tls = cert ? `cert_file: ${JSON.stringify(cert.cert)}, key_file: ${JSON.stringify(cert.key)}, ` : '';
      return h.nats({
        domain: name, serverName: name,
        extraConfig: `leafnodes {\n  reconnect: 1\n  remotes: [ { urls: [ "nats-leaf://${user}:${password}@127.0.0.1:${leafPort}" ], tls: { ${tls}ca_file: ${JSON.stringify(ca.cert)} } } ]\n}`,
      });
    };
    const natsA = await site('a', 'site-a', 'pw-a', await issueCertificate(ca, dir, { commonName: 'leaf.a', kind: 'client', fileName: 'leaf-a' }));
    const natsB = await site('b', 'site-b', 'pw-b', await issueCertificate(ca, dir, { commonName: 'leaf.b', kind: 'client', fileName: 'leaf-b' }));
    const natsNoCert = await site('n', 'site-a', 'pw-a');
    const natsRogue = await site('r', 'site-a', 'pw-a', await issueCertificate(rogueCa, join(dir, 'rogue'), { commonName: 'leaf.a', kind: 'client', fileName: 'leaf-r' }));

    const replA = await connect({ servers: natsA.url, inboxPrefix: '_INBOX_a_replication' });
    const otherA = await connect({ servers: natsA.url });
    const b = await connect({ servers: natsB.url });
    h.onClose(() => Promise.all([replA.close(), otherA.close(), b.close()]));
    const got: string[] = [];
    const subjects = ['cairn.b.repl.a.put', 'cairn.b.cmd.scheduler.x', 'cairn.b.evt.x', 'cairn.b.repl.c.put'];
    for (const s of subjects) b.subscribe(s, { callback: (_e, m) => { got.push(m.subject); if (m.reply) m.respond('ok'); } });
    await b.flush();

    // Replication A→B answers once the leaf links carry B's interest (bounded retries, no timing assertion).
    let answer: string | undefined;
    for (let i = 0; i < 60 && !answer; i++) {
      answer = await replA.request('cairn.b.repl.a.put', 'x', { timeout: 500 }).then((m) => m.string(), () => undefined);
    }
    expect(answer).toBe('ok');
    // Another inbox at A gets no answer: the hub does not forward it to A.
    await expect(otherA.request('cairn.b.repl.a.put', 'x', { timeout: 1000 })).rejects.toThrow();
    got.length = 0;
    for (const s of subjects) otherA.publish(s, 'x');
    await otherA.flush();
    await replA.request('cairn.b.repl.a.put', 'marker', { timeout: 5000 });
    expect(got.filter((s) => s !== 'cairn.b.repl.a.put')).toEqual([]);

    // Leaf remotes without a certificate, or with one from another CA, are refused in the hub's TLS handshake.
    let refusals = 0;
    for (let i = 0; i < 60 && refusals < 2; i++) {
      refusals = (await readFile(hub.logFile, 'utf8')).match(/TLS leafnode handshake error/g)?.length ?? 0;
      if (refusals < 2) await new Promise((res) => setTimeout(res, 250));
    }
    expect(refusals).toBeGreaterThanOrEqual(2);
    expect(await readFile(natsNoCert.logFile, 'utf8')).toContain('Leafnode connection closed');
    expect(await readFile(natsRogue.logFile, 'utf8')).toContain('Leafnode connection closed');
  });
});
