import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, open, stat, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';

export interface NatsServerOptions {
  /** Directory for the config, JetStream store and log. Created if missing. */
  dir: string;
  /** Client port; a free one is picked when omitted. Kept across restarts. */
  port?: number;
  host?: string;
  serverName?: string;
  /** Enable JetStream (default true), optionally in a domain (one per site). */
  jetstream?: boolean;
  domain?: string;
  /** Extra config text appended verbatim (accounts, authorization, tls, leafnodes, cluster…). */
  extraConfig?: string;
  /** Max payload in bytes (server default 1 MiB). */
  maxPayload?: number;
  /** Path of the nats-server binary (default: from PATH). */
  binary?: string;
  /** URL scheme clients should use (tls:// when the extra config enables TLS). */
  scheme?: 'nats' | 'tls';
  /**
   * Run the server in its own process group, so a Ctrl-C to the terminal reaches only its
   * parent, which stops the server in order (`cairn up`). Default false.
   */
  ownProcessGroup?: boolean;
  /** Told when the server exits other than through stop() or kill() (a crash, a kill from outside). */
  onUnexpectedExit?: (exit: { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly pid: number | undefined }) => void;
}

export interface NatsServerProcess {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly pid: number | undefined;
  /** Graceful stop (SIGTERM, then SIGKILL after a grace period). */
  stop(): Promise<void>;
  /** Kill with a signal and wait for exit (e.g. SIGKILL for crash tests). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Start again on the same port and store (after stop or kill). */
  start(): Promise<void>;
  /**
   * Rewrites the config with `extraConfig` (or the current one) and has the running server
   * reload it (SIGHUP). Resolves once the server logged the reload; rejects with the server's
   * reason when it refused it — it then keeps its previous config, and so does the config file.
   */
  reload(extraConfig?: string): Promise<void>;
}

/** A TCP port that was free a moment ago on the loopback interface. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

function renderConfig(o: Required<Pick<NatsServerOptions, 'host'>> & NatsServerOptions & { port: number; storeDir: string }): string {
  const lines = [
    `host: ${JSON.stringify(o.host)}`,
    `port: ${o.port}`,
    `server_name: ${JSON.stringify(o.serverName ?? `cairn-${o.port}`)}`,
  ];
  if (o.maxPayload) lines.push(`max_payload: ${o.maxPayload}`);
  if (o.jetstream !== false) {
    lines.push('jetstream {', `  store_dir: ${JSON.stringify(o.storeDir)}`);
    if (o.domain) lines.push(`  domain: ${JSON.stringify(o.domain)}`);
    lines.push('}');
  }
  if (o.extraConfig) lines.push(o.extraConfig);
  return lines.join('\n') + '\n';
}

export async function startNatsServer(options: NatsServerOptions): Promise<NatsServerProcess> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? (await freePort(host));
  const storeDir = join(options.dir, 'jetstream');
  const configFile = join(options.dir, 'nats-server.conf');
  const logFile = join(options.dir, 'nats-server.log');
  await mkdir(storeDir, { recursive: true });
  let current: NatsServerOptions = { ...options };
  // 0600: the extra config may hold a secret (a site's leaf password in its hub remote).
  const writeConfig = async (o: NatsServerOptions) => {
    await writeFile(configFile, renderConfig({ ...o, host, port, storeDir }), { mode: 0o600 });
    await chmod(configFile, 0o600);
  };
  await writeConfig(current);
  const binary = options.binary ?? 'nats-server';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  /** Set by stop() and kill(): the exit that follows is not unexpected. */
  let deliberate = false;

  async function start(): Promise<void> {
    if (child && child.exitCode === null && child.signalCode === null) return;
    const proc = spawn(binary, ['-c', configFile, '-l', logFile], { stdio: ['ignore', 'ignore', 'pipe'], ...(options.ownProcessGroup ? { detached: true } : {}) });
    child = proc;
    deliberate = false;
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    let spawnError: Error | undefined;
    proc.once('error', (e) => { spawnError = e; });
    exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
      if (!deliberate && child === proc) options.onUnexpectedExit?.({ code, signal, pid: proc.pid });
      resolve();
    }));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`cannot start ${binary}: ${spawnError.message} (install the Debian package nats-server)`);
      if (proc.exitCode !== null) throw new Error(`nats-server exited with code ${proc.exitCode}: ${stderr.trim()} (see ${logFile})`);
      if (await canConnect(host, port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    proc.kill('SIGKILL');
    throw new Error(`nats-server did not listen on ${host}:${port} within 15 s (see ${logFile})`);
  }

  async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    deliberate = true;
    child.kill(signal);
    await exited;
  }

  async function stop(): Promise<void> {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    deliberate = true;
    const timer = setTimeout(() => child?.kill('SIGKILL'), 5_000);
    child.kill('SIGTERM');
    await exited;
    clearTimeout(timer);
  }

  let reloading: Promise<unknown> = Promise.resolve();
  async function reloadNow(extraConfig: string | undefined): Promise<void> {
    if (!child || child.exitCode !== null || child.signalCode !== null || !child.pid) throw new Error('nats-server is not running');
    const previous = current;
    const next: NatsServerOptions = extraConfig === undefined ? current : { ...current, extraConfig };
    const from = await stat(logFile).then((x) => x.size, () => 0);
    await writeConfig(next);
    child.kill('SIGHUP');
    // nats-server answers a reload signal only in its log: "Reloaded server configuration" or
    // "Failed to reload server configuration: <why>" (2.9).
    const deadline = Date.now() + 15_000;
    let outcome: { ok: true } | { ok: false; why: string } | undefined;
    while (!outcome && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      const text = await readFrom(logFile, from);
      const failed = /Failed to reload server configuration: ?(.*)/.exec(text);
      if (failed) outcome = { ok: false, why: failed[1]!.trim() };
      else if (text.includes('Reloaded server configuration')) outcome = { ok: true };
      else if (child.exitCode !== null || child.signalCode !== null) outcome = { ok: false, why: `nats-server exited (see ${logFile})` };
    }
    if (outcome?.ok) { current = next; return; }
    await writeConfig(previous);
    throw new Error(`nats-server did not reload its config: ${outcome ? outcome.why : `no answer within 15 s (see ${logFile})`}; it keeps the previous one`);
  }

  await start();
  return {
    url: `${options.scheme ?? 'nats'}://${host}:${port}`,
    port,
    storeDir,
    configFile,
    logFile,
    get pid() { return child?.pid; },
    stop,
    kill,
    start,
    reload(extraConfig?: string) {
      const run = reloading.then(() => reloadNow(extraConfig));
      reloading = run.catch(() => undefined);
      return run;
    },
  };
}

async function readFrom(file: string, offset: number): Promise<string> {
  const f = await open(file, 'r').catch(() => undefined);
  if (!f) return '';
  try {
    const { size } = await f.stat();
    if (size <= offset) return '';
    const buf = Buffer.alloc(size - offset);
    await f.read(buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    await f.close();
  }
}
