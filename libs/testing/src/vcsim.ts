// Test fixture: govmomi's vCenter simulator (vcsim), built from the Debian packages golang-go
// and golang-github-vmware-govmomi-dev (tools/ci/install-debian-packages.sh) on first use and
// cached under tmp/ by the hash of our ten-line main (libs/testing/vcsim/main.go). Each start
// gets its own temp dir (the simulator keeps its datastore files there) and is removed by stop().
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', 'vcsim', 'main.go');
const GOPATH = '/usr/share/gocode';

export interface Vcsim {
  /** SDK endpoint without credentials, e.g. https://127.0.0.1:41573/sdk. */
  readonly url: string;
  /** The simulator's login (any user/password is accepted; these are the defaults). */
  readonly username: string;
  readonly password: string;
  /** PEM of the simulator's self-signed certificate (pass as the CA, or pin its thumbprint). */
  readonly caPem: string;
  /** SHA-1 thumbprint of that certificate, as vSphere prints it (AA:BB:…). */
  readonly thumbprint: string;
  /** The simulator's temp dir; its datastores live below it. */
  readonly dir: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

/** Builds the simulator once per source hash; returns the binary's path. */
export async function buildVcsim(): Promise<string> {
  const source = await readFile(SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'cairn-vcsim-build');
  const binary = join(dir, `vcsim-${hash}`);
  try { await access(binary); return binary; } catch { /* build it */ }
  try { await access(join(GOPATH, 'src/github.com/vmware/govmomi/simulator')); } catch {
    throw new Error(`govmomi's simulator is not under ${GOPATH}: install golang-go and golang-github-vmware-govmomi-dev (tools/ci/install-debian-packages.sh)`);
  }
  await mkdir(dir, { recursive: true });
  const partial = `${binary}.${process.pid}.tmp`;
  await run('go', ['build', '-o', partial, SOURCE], {
    env: { ...process.env, GOPATH, GO111MODULE: 'off', GOCACHE: join(dir, 'gocache') },
    timeout: 600_000, maxBuffer: 16 << 20,
  }).catch((e: Error & { stderr?: string }) => { throw new Error(`building vcsim failed: ${e.stderr ?? e.message}`); });
  await rename(partial, binary);
  return binary;
}

/** Starts a simulator (VPX model: one datacenter, hosts, a cluster, four VMs on LocalDS_0). */
export async function startVcsim(): Promise<Vcsim> {
  const binary = await buildVcsim();
  const dir = await mkdtemp(join(tmpdir(), 'cairn-vmware-vcsim-'));
  const cert = join(dir, 'vcsim.crt');
  const key = join(dir, 'vcsim.key');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=cairn-vmware-vcsim', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert]);
  const child = spawn(binary, [cert, key], { env: { ...process.env, TMPDIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  // CAIRN_VCSIM_LOG=1 shows the simulator's own log (its faults and panics) on stderr.
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); if (process.env['CAIRN_VCSIM_LOG']) process.stderr.write(d); });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`vcsim did not start within 60 s: ${stderr}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); resolve(out.slice(0, nl)); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`vcsim exited with ${code}: ${stderr}`)); });
  });
  const printed = JSON.parse(line) as { url: string };
  const url = new URL(printed.url);
  const username = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  url.username = ''; url.password = '';
  const caPem = await readFile(cert, 'utf8');
  const { X509Certificate } = await import('node:crypto');
  const thumbprint = new X509Certificate(caPem).fingerprint;
  return {
    url: url.toString(), username, password, caPem, thumbprint, dir, process: child,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
