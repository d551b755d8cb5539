// The gateway's memory in front of a full catalogue (issue 19): starts the product's processes,
// `cairn run catalogue` on the already filled store and `cairn run gateway`, then drives the REST
// API as operators and the console would — list by VM, latest per VM (the VM list, page by
// page), search (the audit timeline by type from a position), the dashboard's calls (VMs, backup
// jobs, restore points, policies, approvals, replicas, /health, /metrics) and walks through
// many pages of restore points — from several clients at once, sampling both processes' RSS
// from /proc every 100 ms. Reports each one's RSS when ready, peak (VmHWM) and steady (after
// the drive), CPU seconds, and p50/p99 per route.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../cli/bin/cairn.js', import.meta.url));

export interface GatewayMemoryOptions {
  readonly natsUrl: string;
  readonly site: string;
  /** The catalogue's data directory (its SQLite file is `catalogue-<site>.sqlite` in it). */
  readonly dataDir: string;
  readonly postgresUrl?: string;
  /** The log position the catalogue has reached (the ready check waits for it). */
  readonly head: bigint;
  readonly vms: number;
  readonly restorePoints: number;
  /** Requests of each kind per client. */
  readonly rounds: number;
  readonly clients: number;
  readonly cwd: string;
  readonly say: (line: string) => void;
}

export interface ProcessMemory { readyMiB: number; peakMiB: number; steadyMiB: number; cpuSeconds: number }
export interface GatewayMemoryResult {
  gateway: ProcessMemory;
  catalogue: ProcessMemory;
  requests: number;
  routes: Record<string, { n: number; p50: number; p99: number; max: number }>;
}

interface Proc { readonly child: ChildProcess; readonly output: string[] }

function start(args: string[], env: Record<string, string>, cwd: string): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { ...process.env, CAIRN_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (b: Buffer) => { output.push(b.toString()); if (output.length > 200) output.shift(); };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return { child, output };
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.child.once('exit', () => r()));
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(t);
}

/** VmRSS and VmHWM (peak) in MiB, and user+system CPU seconds, from /proc. */
async function sample(pid: number): Promise<{ rss: number; hwm: number; cpu: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024, cpu: (Number(stat[11]) + Number(stat[12])) / 100 };
}

async function waitFor<T>(what: string, p: Proc, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    if (p.child.exitCode !== null) throw new Error(`${what}: the process exited (${p.child.exitCode}): ${p.output.join('').slice(-2000)}`);
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`${what}: not ready after ${ms} ms: ${p.output.join('').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const pct = (xs: number[], p: number) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0; };
const r2 = (x: number) => Math.round(x * 100) / 100;
const r1 = (x: number) => Math.round(x * 10) / 10;

export async function measureGatewayMemory(o: GatewayMemoryOptions): Promise<GatewayMemoryResult> {
  const token = randomBytes(24).toString('hex');
  const common = ['--nats', o.natsUrl, '--site', o.site];
  const catalogue = start(['run', 'catalogue', ...common, '--data', o.dataDir, ...(o.postgresUrl ? ['--postgres', o.postgresUrl] : [])], {}, o.cwd);
  let gateway: Proc | undefined;
  const samples = new Map<string, number[]>();
  try {
    // One after the other: the first start may (re)build the CLI's bundle.
    await waitFor('catalogue', catalogue, async () => (/catalogue running/.test(catalogue.output.join('')) ? true : undefined), 600_000);
    gateway = start(['run', 'gateway', ...common, '--data', `${o.dataDir}-gateway`, '--port', '0'], { CAIRN_API_TOKEN: token }, o.cwd);
    const gw = gateway;
    const url = await waitFor('gateway', gw, async () => /gateway listening on (\S+)/.exec(gw.output.join(''))?.[1], 600_000);
    const get = async (path: string): Promise<unknown> => {
      const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const body = await res.text();
      if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${body.slice(0, 300)}`);
      return res.headers.get('content-type')?.includes('json') ? JSON.parse(body) : {};
    };
    // Ready: the catalogue answers through the gateway at the log's head.
    await waitFor('catalogue', catalogue, async () => {
      const m = await (await fetch(`${url}/metrics`)).text();
      const at = /^cairn_catalogue_position(?:\{[^}]*\})? (\d+)/m.exec(m)?.[1];
      return at !== undefined && BigInt(at) >= o.head ? true : undefined;
    }, 600_000);
    const gwPid = gw.child.pid!;
    const catPid = catalogue.child.pid!;
    const ready = { gateway: await sample(gwPid), catalogue: await sample(catPid) };
    o.say(`  gateway ready at ${url}: RSS gateway ${Math.round(ready.gateway.rss)} MiB, catalogue ${Math.round(ready.catalogue.rss)} MiB`);

    const timed = async (route: string, path: string) => {
      const s = performance.now();
      const body = await get(path);
      const list = samples.get(route) ?? [];
      list.push(performance.now() - s);
      samples.set(route, list);
      return body as { items?: unknown[]; next?: string | null };
    };
    // Cursors through the whole VM list (latest per VM, 100 a page), walked once first.
    const vmCursors: string[] = [];
    let after: string | null | undefined;
    do {
      const page = await timed('GET /v1/vms?limit=100 (latest per VM)', `/v1/vms?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      after = page.next;
      if (after) vmCursors.push(after);
    } while (after);

    let rand = 19;
    const next = () => { rand = (rand * 1664525 + 1013904223) >>> 0; return rand / 2 ** 32; };
    const dashboard = [
      ['dashboard: GET /v1/vms (1,000)', '/v1/vms'], ['dashboard: GET /v1/jobs?kind=backup&limit=500', '/v1/jobs?kind=backup&limit=500'],
      ['dashboard: GET /v1/restore-points?limit=500', '/v1/restore-points?limit=500'], ['dashboard: GET /v1/policies', '/v1/policies'],
      ['dashboard: GET /v1/approvals?status=pending', '/v1/approvals?status=pending'], ['dashboard: GET /v1/replicas?limit=500', '/v1/replicas?limit=500'],
      ['dashboard: GET /health', '/health'], ['dashboard: GET /metrics (catalogue.stats)', '/metrics'],
    ] as const;
    let peak = { gateway: ready.gateway.hwm, catalogue: ready.catalogue.hwm };
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [g, c] = await Promise.all([sample(gwPid), sample(catPid)]).catch(() => [{ hwm: 0 }, { hwm: 0 }]);
        peak = { gateway: Math.max(peak.gateway, g.hwm), catalogue: Math.max(peak.catalogue, c.hwm) };
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const client = async (c: number) => {
      for (let i = 0; i < o.rounds; i++) {
        const vm = `vm${Math.floor(next() * o.vms)}`;
        await timed('GET /v1/restore-points?vmId&limit=100 (list by VM)', `/v1/restore-points?vmId=${vm}&limit=100`);
        const cursor = vmCursors.length ? vmCursors[Math.floor(next() * vmCursors.length)]! : undefined;
        await timed('GET /v1/vms?limit=100 (latest per VM)', `/v1/vms?limit=100${cursor ? `&after=${encodeURIComponent(cursor)}` : ''}`);
        await timed('GET /v1/audit?type&afterPosition&limit=100 (search)', `/v1/audit?type=RestorePointCommitted&afterPosition=${Math.floor(next() * Number(o.head))}&limit=100`);
        await timed('GET /v1/audit?correlationId (search)', `/v1/audit?correlationId=j${Math.floor(next() * o.restorePoints)}`);
        if (i % 10 === c % 10) for (const [route, path] of dashboard) await timed(route, path);
      }
      // Then a walk through 50 pages of 1,000 restore points (newest first, by cursor).
      let walk: string | null | undefined;
      for (let p = 0; p < 50; p++) {
        const page = await timed('walk: GET /v1/restore-points?limit=1000&after', `/v1/restore-points?limit=1000${walk ? `&after=${encodeURIComponent(walk)}` : ''}`);
        walk = page.next;
        if (!walk) break;
      }
    };
    try {
      await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
    } catch (e) {
      const tail = (p: Proc) => `exit ${p.child.exitCode ?? p.child.signalCode ?? 'running'}: ${p.output.join('').slice(-3000)}`;
      throw new Error(`${(e as Error).message}\n gateway ${tail(gw)}\n catalogue ${tail(catalogue)}`, { cause: e });
    } finally {
      sampling = false;
      await sampler;
    }
    await new Promise((r) => setTimeout(r, 5000));
    const end = { gateway: await sample(gwPid), catalogue: await sample(catPid) };
    const mem = (k: 'gateway' | 'catalogue'): ProcessMemory => ({
      readyMiB: Math.round(ready[k].rss), peakMiB: Math.round(Math.max(peak[k], end[k].hwm)), steadyMiB: Math.round(end[k].rss), cpuSeconds: r1(end[k].cpu),
    });
    const routes = Object.fromEntries([...samples].map(([route, ms]) => [route, { n: ms.length, p50: r2(pct(ms, 50)), p99: r2(pct(ms, 99)), max: r2(Math.max(...ms)) }]));
    return { gateway: mem('gateway'), catalogue: mem('catalogue'), requests: [...samples.values()].reduce((n, l) => n + l.length, 0), routes };
  } finally {
    if (gateway) await stop(gateway);
    await stop(catalogue);
  }
}
