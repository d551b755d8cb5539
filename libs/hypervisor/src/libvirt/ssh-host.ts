// The libvirt host behind a `qemu+ssh://` URI, reached with the same SSH identity libvirt's
// own transport uses (the URI's user, port, `keyfile`, `known_hosts`, `no_verify`): commands
// on the host (the scratch directory, leftovers) and the forward of a view's NBD unix socket
// to a local one, so the data mover reads it as it reads a local libvirt's (encrypted and
// authenticated by SSH, no port opened on the host). No password is ever passed: the key is
// read from its file by ssh, and BatchMode refuses any prompt.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';

export interface SshTarget {
  readonly host: string;
  readonly user?: string;
  readonly port?: number;
  /** Private key file (libvirt's `keyfile` URI parameter). */
  readonly keyfile?: string;
  /** known_hosts file (libvirt's `known_hosts`); else the user's. */
  readonly knownHosts?: string;
  /** libvirt's `no_verify=1`: the host key is not checked. */
  readonly noVerify: boolean;
}

/** The SSH side of a `qemu+ssh://` URI; undefined for any other transport. */
export function sshTargetOf(uri: string): SshTarget | undefined {
  let u: URL;
  try { u = new URL(uri); } catch { return undefined; }
  if (!/^[a-z0-9]+\+ssh:$/i.test(u.protocol)) return undefined;
  if (!u.hostname) throw new Error("a qemu+ssh URI names the host (qemu+ssh://user@host/system)");
  if (u.password) throw new Error(`qemu+ssh://${u.username ? `${u.username}@` : ""}${u.host}: no password in the URI; give a key file (?keyfile=...) instead`);
  const q = u.searchParams;
  const port = u.port ? Number(u.port) : undefined;
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    ...(u.username ? { user: decodeURIComponent(u.username) } : {}),
    ...(port ? { port } : {}),
    ...(q.get('keyfile') ? { keyfile: q.get('keyfile')! } : {}),
    ...(q.get('known_hosts') ? { knownHosts: q.get('known_hosts')! } : {}),
    noVerify: q.get('no_verify') === '1',
  };
}

/** ssh options for a target (never a secret: the key stays in its file). */
export function sshOptions(t: SshTarget): string[] {
  const o = ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=20', '-o', 'ServerAliveInterval=15'];
  if (t.port) o.push('-p', String(t.port));
  if (t.user) o.push('-l', t.user);
  if (t.keyfile) o.push('-i', t.keyfile, '-o', 'IdentitiesOnly=yes');
  if (t.noVerify) o.push('-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR');
  else if (t.knownHosts) o.push('-o', `UserKnownHostsFile=${t.knownHosts}`, '-o', 'StrictHostKeyChecking=yes');
  return o;
}

/** One word for the remote shell. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

export class SshHost {
  constructor(readonly target: SshTarget) {}

  /** Runs a command on the host (words quoted here); resolves its stdout. */
  run(words: readonly string[], timeoutMs = 60_000): Promise<string> {
    return this.sh(words.map(shellQuote).join(' '), timeoutMs);
  }

  /** Runs a shell script on the host. */
  sh(script: string, timeoutMs = 60_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile('ssh', [...sshOptions(this.target), '-T', this.target.host, script], { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          if (err) reject(new Error(`ssh ${this.target.host}: ${(stderr || err.message).trim()}`));
          else resolve(stdout);
        });
    });
  }

  /**
   * Forwards the host's unix socket `remote` to the local `local` (ssh -L, its own process
   * group, so it outlives a coordinator restart like the view does). Resolves once the local
   * socket exists; the caller stops it by pid.
   */
  async forward(local: string, remote: string, timeoutMs = 30_000): Promise<ChildProcess> {
    const child = spawn('ssh', [
      ...sshOptions(this.target), '-N', '-T', '-o', 'ExitOnForwardFailure=yes', '-o', 'StreamLocalBindUnlink=yes',
      '-L', `${local}:${remote}`, this.target.host,
    ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`ssh forward of ${remote} from ${this.target.host} ended: ${stderr.trim() || `exit ${String(child.exitCode)}`}`);
      if ((await stat(local).catch(() => undefined))?.isSocket()) break;
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error(`ssh forward of ${remote} from ${this.target.host} did not come up within ${timeoutMs} ms: ${stderr.trim()}`); }
      await new Promise((r) => setTimeout(r, 50));
    }
    child.stderr!.destroy();
    child.unref();
    return child;
  }
}
