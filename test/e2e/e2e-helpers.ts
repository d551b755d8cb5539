// Helpers for end-to-end tests: the `cairn` CLI as a child process, waiting on the catalogue,
// and checking a restored image against the demo VM's write log.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CatalogueClient, type JobDetail, type JobView } from '@cairn/catalogue-client';
import { BackendError, type Backend } from '@cairn/repository';
import { startVcsim, waitFor, type Harness, type Vcsim } from '@cairn/testing';
import { VmwareAdapter } from '@cairn/hypervisor';
import { DEMO_BLOCK, demoBaseBlock, matchWritePrefix, type DemoWrite } from '@cairn/cli';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CAIRN = join(ROOT, 'tools', 'cli', 'bin', 'cairn.js');

export interface CliResult { readonly code: number; readonly stdout: string; readonly stderr: string }

/** Runs `cairn <args>` with the Node running the tests; never throws on a non-zero exit. */
export function cli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CAIRN, ...args], { cwd: ROOT, env: { ...process.env, CAIRN_LOG_LEVEL: 'warn', ...env } });
    let stdout = ''; let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

export async function jobsWhere(catalogue: CatalogueClient, pred: (j: JobView) => boolean): Promise<JobView[]> {
  const { items } = await catalogue.query('job.list', { limit: 500 });
  return items.filter(pred);
}

export async function waitForJobEnd(catalogue: CatalogueClient, jobId: string, timeoutMs = 120_000): Promise<JobDetail> {
  return waitFor(async () => {
    const j = await catalogue.query('job.get', { jobId }).catch(() => undefined);
    return j && ['completed', 'failed', 'cancelled'].includes(j.state) ? j : undefined;
  }, { timeoutMs, intervalMs: 200, what: `job ${jobId} to end` });
}

/**
 * The restored raw image equals the demo disk after exactly a prefix of its writes. `base` is
 * the disk as created (the demo's own base unless the test prepared the disk itself).
 */
export async function checkRestoredDemoImage(
  file: string, writes: readonly DemoWrite[], base: (offset: number) => Buffer = demoBaseBlock,
): Promise<{ ok: boolean; prefix?: number; reason?: string }> {
  const image = await readFile(file);
  const read = (offset: number) => image.subarray(offset, offset + DEMO_BLOCK);
  const r = matchWritePrefix(read, base, writes);
  if (!r.ok) return { ok: false, reason: r.reason };
  // Blocks never written must still be the base.
  const written = new Set(writes.map((w) => w.offset));
  for (let off = 0; off < image.length; off += DEMO_BLOCK) {
    if (!written.has(off) && !read(off).equals(base(off))) return { ok: false, reason: `unwritten block at ${off} changed` };
  }
  return { ok: true, prefix: r.prefix };
}

/** A backend that runs `before(key)` ahead of every put (to fail or slow chosen writes). */
export function interceptPuts(inner: Backend, before: (key: string) => Promise<void> | void): Backend {
  return {
    location: inner.location,
    async put(key, data, options) {
      await before(key);
      return inner.put(key, data, options);
    },
    get: (key) => inner.get(key),
    getRange: (key, offset, length) => inner.getRange(key, offset, length),
    stat: (key) => inner.stat(key),
    exists: (key) => inner.exists(key),
    list: (prefix) => inner.list(prefix),
    delete: (key) => inner.delete(key),
    flush: (group) => inner.flush(group),
    ...(inner.removeDebris ? { removeDebris: (ms: number) => inner.removeDebris!(ms) } : {}),
    ...(inner.close ? { close: () => inner.close!() } : {}),
  };
}

/** A backend whose writes of some keys fail with a permanent error while `failing()` says so. */
export function faultyBackend(inner: Backend, failing: (key: string) => boolean): Backend {
  return interceptPuts(inner, (key) => {
    if (failing(key)) throw new BackendError(`injected fault: ${inner.location} refuses to store ${key}`, false, key);
  });
}

/** A job's events once `type` is among them. */
export async function waitForJobEvent(catalogue: CatalogueClient, jobId: string, type: string, timeoutMs = 120_000): Promise<JobDetail> {
  return waitFor(async () => {
    const j = await catalogue.query('job.get', { jobId }).catch(() => undefined);
    return j?.events.some((e) => e.type === type) ? j : undefined;
  }, { timeoutMs, intervalMs: 200, what: `${type} in job ${jobId}` });
}

/** Pids of processes whose command line contains `text` (e.g. a QEMU by its QMP socket path). */
export async function pidsOf(text: string): Promise<number[]> {
  const out = await new Promise<string>((resolve) => {
    execFile('pgrep', ['-f', '--', text], (_e, stdout) => resolve(String(stdout)));
  });
  return out.split('\n').filter(Boolean).map(Number).filter((p) => p !== process.pid);
}

export interface ServiceProcess {
  readonly pid: number;
  readonly name: string;
  /** Its stdout so far (pino JSON lines and the "running" line). */
  output(): string;
  /** Resolves once it printed "<service> running". */
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  kill(signal?: NodeJS.Signals): void;
}

/** `cairn run <service>` as a separate process (Node 24), so a test can SIGKILL it. */
export function runService(name: string, args: readonly string[], env: Record<string, string> = {}, opts: { readyTimeoutMs?: number } = {}): ServiceProcess {
  const child = spawn(process.execPath, [CAIRN, ...args], { cwd: ROOT, env: { ...process.env, CAIRN_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = ''; let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const ready = waitFor(() => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited before it ran: ${stderr.trim()}`);
    return / running \(site /.test(stdout) || undefined;
  }, { timeoutMs: opts.readyTimeoutMs ?? 60_000, intervalMs: 100, what: `${name} to run` }).then(() => undefined);
  ready.catch(() => undefined);
  return {
    pid: child.pid!,
    name,
    output: () => stdout,
    ready,
    exited,
    kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** A gateway call with a bearer token: status and the JSON body (`{}` when empty). */
export async function gatewayCall(baseUrl: string, token: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${baseUrl}${path}`, {
    method, headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
}

/** SHA-256 of a file, streamed. */
export async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file)) h.update(b as Buffer);
  return h.digest('hex');
}

/**
 * govmomi's vCenter simulator for one spec (stopped when it ends): its credentials and CA written
 * into `dataDir` as the files `cairn hypervisor add vmware --credentials --ca` takes, and the
 * test's own vSphere session (`probe`: fills disks, watches snapshots), closed before the simulator.
 */
export async function vcsimWithProbe(h: Harness, dataDir: string): Promise<{ sim: Vcsim; credentials: string; ca: string; probe: VmwareAdapter }> {
  const sim = await startVcsim();
  h.onClose(() => sim.stop());
  const credentials = join(dataDir, 'vcenter.json');
  await writeFile(credentials, JSON.stringify({ username: sim.username, password: sim.password }), { mode: 0o600 });
  const ca = join(dataDir, 'vcenter-ca.pem');
  await writeFile(ca, sim.caPem);
  const probe = await VmwareAdapter.connect({
    url: sim.url, credentials: { username: sim.username, password: sim.password }, tls: { caPem: sim.caPem },
    nbdSocket: join(dataDir, 'probe.sock'), stateFile: join(dataDir, 'probe.json'),
  });
  h.onClose(() => probe.close());
  return { sim, credentials, ca, probe };
}
