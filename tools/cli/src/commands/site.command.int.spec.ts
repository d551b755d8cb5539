// `cairn site init` end to end: the CLI creates the site CA, certificates, nkeys and the
// nats-server config (secrets 0600, only public keys in the config), is idempotent, and signs
// with the operator's CA when given one.
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';
import { createCertificateAuthority, SERVICE_IDENTITIES } from '@cairn/nats-security';

const CLI = resolve(fileURLToPath(new URL('../../bin/cairn.js', import.meta.url)));

function cairn(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 120_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('cairn site init', () => {
  const h = useHarness();

  it('creates the CA, certificates, nkeys and config; secrets are 0600 and stay out of the config; a second run changes nothing', async () => {
    const dir = join(await h.tmpDir('cairn-site-init-'), 'security');
    const r = await cairn(['--site', 'site-a', '--json', 'site', 'init', '--dir', dir, '--host', 'nats.site-a.example', '127.0.0.1']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { identities: string[]; ca: string; permissions: Record<string, unknown> };
    expect(out.identities.sort()).toEqual([...SERVICE_IDENTITIES, 'admin'].sort());
    expect(out.ca).toBe('CN=Cairn site-a CA');

    const server = new X509Certificate(await readFile(join(dir, 'server.pem')));
    expect(server.subjectAltName).toContain('DNS:nats.site-a.example');
    expect(server.checkIssued(new X509Certificate(await readFile(join(dir, 'ca.pem'))))).toBe(true);
    const config = await readFile(join(dir, 'nats-security.conf'), 'utf8');
    expect(config).toContain('verify: true');
    for (const id of SERVICE_IDENTITIES) {
      const seed = (await readFile(join(dir, 'identities', `${id}.nk`), 'utf8')).trim();
      expect(seed).toMatch(/^SU/);
      expect(config).not.toContain(seed);
      expect((await stat(join(dir, 'identities', `${id}.nk`))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, 'identities', `${id}-key.pem`))).mode & 0o777).toBe(0o600);
      expect(new X509Certificate(await readFile(join(dir, 'identities', `${id}.pem`))).subject).toBe(`CN=${id}@site-a`);
    }
    expect((await stat(join(dir, 'ca-key.pem'))).mode & 0o777).toBe(0o600);

    const again = await cairn(['--site', 'site-a', 'site', 'init', '--dir', dir]);
    expect(again.code, again.stderr).toBe(0);
    expect(await readFile(join(dir, 'nats-security.conf'), 'utf8')).toBe(config);
    const other = await cairn(['--site', 'site-b', 'site', 'init', '--dir', dir]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/holds the security material of site site-a/);
  }, 180_000);

  it("signs with the operator's CA and never copies its key", async () => {
    const base = await h.tmpDir('cairn-site-init-ca-');
    const ca = await createCertificateAuthority(base, 'Operator Root');
    const dir = join(base, 'security');
    const r = await cairn(['--site', 'site-b', 'site', 'init', '--dir', dir, '--ca-cert', ca.cert, '--ca-key', ca.key]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('CN=Operator Root');
    await expect(stat(join(dir, 'ca-key.pem'))).rejects.toThrow();
    await expect(stat(join(base, 'ca.srl'))).rejects.toThrow(); // nothing written beside the operator's CA
    const issuer = new X509Certificate(await readFile(ca.cert));
    expect(new X509Certificate(await readFile(join(dir, 'identities', 'data-mover.pem'))).checkIssued(issuer)).toBe(true);
  }, 180_000);
});
