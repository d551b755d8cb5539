// libvirt through `virsh` (libvirt-clients): one child process per call, the connection URI
// always given, credentials only through libvirt's own auth file (LIBVIRT_AUTH_FILE), never
// on the command line. Errors keep libvirt's message so callers can tell a broken checkpoint
// from a missing domain.
import { execFile, spawn, type ChildProcess } from 'node:child_process';

export class VirshError extends Error {
  override readonly name = 'VirshError';
  constructor(readonly args: readonly string[], readonly stderr: string, readonly code: number | string | null) {
    super(`virsh ${args.join(' ')}: ${stderr.trim().replace(/^error: /gm, '').replace(/\s*\n\s*/g, '; ') || `exit ${String(code)}`}`);
  }
}

export interface VirshOptions {
  /** libvirt connection URI: qemu:///system, qemu+ssh://host/system, qemu+tls://host/system. */
  readonly uri: string;
  /** A libvirt auth.conf (credentials for qemu+tls/qemu+tcp SASL), passed as LIBVIRT_AUTH_FILE. */
  readonly credentialsFile?: string;
  /** Deadline per call (default 60 s). */
  readonly timeoutMs?: number;
  /** The virsh binary (default `virsh` on PATH). */
  readonly binary?: string;
}

export class Virsh {
  constructor(readonly opts: VirshOptions) {
    if (!/^[a-z0-9+]+:\/\/[^\s]*$/i.test(opts.uri)) throw new Error(`not a libvirt URI: ${JSON.stringify(opts.uri)}`);
  }

  #env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C' };
    if (this.opts.credentialsFile) env['LIBVIRT_AUTH_FILE'] = this.opts.credentialsFile;
    delete env['LIBVIRT_DEFAULT_URI'];
    return env;
  }

  /** Runs one virsh command; resolves its stdout. */
  run(args: readonly string[], timeoutMs = this.opts.timeoutMs ?? 60_000): Promise<string> {
    const all = ['-q', '-c', this.opts.uri, ...args];
    return new Promise((resolve, reject) => {
      execFile(this.opts.binary ?? 'virsh', all, { env: this.#env(), timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20, encoding: 'utf8' },
        (err, stdout, stderr) => {
          if (err) {
            const timedOut = (err as NodeJS.ErrnoException & { killed?: boolean }).killed;
            reject(new VirshError(args, timedOut ? `no answer within ${timeoutMs} ms` : stderr || err.message, (err as { code?: number | string }).code ?? null));
          } else resolve(stdout);
        });
    });
  }

  /** A long-running virsh (e.g. `event --loop`): the caller reads its stdout and kills it. */
  spawn(args: readonly string[]): ChildProcess {
    return spawn(this.opts.binary ?? 'virsh', ['-q', '-c', this.opts.uri, ...args], { env: this.#env(), stdio: ['ignore', 'pipe', 'pipe'] });
  }
}
