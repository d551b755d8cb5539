// One libguestfs appliance, driven through `guestfish --listen` / `--remote`: the appliance
// starts once (20-75 s under TCG on a loaded host) and then answers each command in a few
// milliseconds, so a browsing session keeps it warm. Drives are attached read-only; nothing is
// ever mounted on the host kernel.
import { execFile, spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';

export interface ApplianceOptions {
  /** Appliance memory (MiB): bounds each session's footprint. Default 384. */
  readonly memoryMiB?: number;
  /**
   * Run the appliance under TCG. Default on: KVM inside nested virtualisation aborted QEMU on
   * the hosts this was built on; set CAIRN_GUESTFS_KVM=1 where KVM works.
   */
  readonly forceTcg?: boolean;
}

/** libguestfs refused a command; the message is libguestfs' own, without its prefix. */
export class GuestfishError extends Error {
  constructor(readonly command: string, message: string) {
    super(message);
    this.name = 'GuestfishError';
  }
  get notFound(): boolean {
    return /No such file or directory/.test(this.message);
  }
}

function environment(o: ApplianceOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LIBGUESTFS_BACKEND: 'direct' };
  const tcg = o.forceTcg ?? process.env.CAIRN_GUESTFS_KVM !== '1';
  if (tcg) env.LIBGUESTFS_BACKEND_SETTINGS = 'force_tcg';
  delete env.GUESTFISH_PID;
  return env;
}

/** A drive for the appliance: a local image file or an NBD URI (`nbd:///<export>?socket=<path>`). */
export interface ApplianceDrive {
  readonly uri: string;
}

export class Guestfish {
  private closed = false;

  private queue: Promise<unknown> = Promise.resolve();

  private constructor(readonly pid: number, private readonly env: NodeJS.ProcessEnv, private readonly server: ServerOutput) {}

  /**
   * Starts the server process and boots the appliance with the drives attached read-only. An
   * appliance that does not come up is started once more (under a loaded host a TCG boot can
   * fail where the next one works); a second failure is thrown with libguestfs' reason.
   */
  static async launch(drives: readonly ApplianceDrive[], o: ApplianceOptions = {}): Promise<Guestfish> {
    try {
      return await Guestfish.launchOnce(drives, o);
    } catch (e) {
      if (!(e instanceof GuestfishError) || e.command !== 'launch') throw e;
      return Guestfish.launchOnce(drives, o);
    }
  }

  private static async launchOnce(drives: readonly ApplianceDrive[], o: ApplianceOptions): Promise<Guestfish> {
    const env = environment(o);
    const args = ['--listen', '--ro', '--format=raw'];
    for (const d of drives) args.push('-a', d.uri);
    // The forked server inherits our pipes and writes its errors there (a remote client only
    // gets an exit status): keep reading them for the server's whole life.
    const server = new ServerOutput();
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('guestfish', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      p.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
      p.stderr.on('data', (b: Buffer) => server.add(b.toString()));
      p.on('error', reject);
      p.on('exit', (code) => {
        if (code !== 0) return reject(new GuestfishError('launch', server.text.trim() || `guestfish exited with ${code}`));
        const check = (tries: number) => {
          if (/GUESTFISH_PID=\d+/.test(stdout) || tries === 0) resolve(stdout);
          else setTimeout(() => check(tries - 1), 50);
        };
        check(100);
      });
    });
    const m = /GUESTFISH_PID=(\d+)/.exec(out);
    if (!m) throw new GuestfishError('launch', `guestfish --listen printed no PID: ${out.trim()}`);
    const g = new Guestfish(Number(m[1]), env, server);
    try {
      await g.run(['set-memsize', String(o.memoryMiB ?? 384)]);
      await g.run(['set-smp', '1']);
      const mark = server.end;
      await g.run(['run']);
      // `-run` does not end the server when the boot fails, and its reason may reach stderr
      // after the client returned: ask for the appliance's pid (only a launched one has one).
      if (!/^\d+$/.test((await g.run(['get-pid']).catch(() => '')).trim())) {
        const reason = /libguestfs: error: (?:[\w-]+: )?(.*)/.exec(server.since(mark))?.[1]?.trim();
        throw new GuestfishError('launch', `the appliance did not start: ${reason ?? 'no reason given by libguestfs'}`);
      }
    } catch (e) {
      await g.close();
      throw e instanceof GuestfishError && e.command === 'run' ? new GuestfishError('launch', e.message) : e;
    }
    return g;
  }

  /**
   * Runs one command (or several joined by `:`) in the appliance. Each is prefixed with `-`
   * so that a failing command does not end the server; the failure is read from stderr.
   */
  async run(command: readonly string[]): Promise<string> {
    return this.batch([command]);
  }

  /** Commands run one at a time (the server serves one client at a time anyway). */
  async batch(commands: readonly (readonly string[])[]): Promise<string> {
    const next = this.queue.then(() => this.batchNow(commands));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async batchNow(commands: readonly (readonly string[])[]): Promise<string> {
    const name = commands[0]?.[0] ?? '';
    if (this.closed) throw new GuestfishError(name, 'the appliance of this session is closed');
    const args = [`--remote=${this.pid}`, '--'];
    commands.forEach((c, i) => {
      if (i > 0) args.push(':');
      args.push(`-${c[0]}`, ...c.slice(1));
    });
    const mark = this.server.end;
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile('guestfish', args, { env: this.env, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' }, (err, out, stderr) => {
        if (err) return reject(new GuestfishError(name, (stderr || err.message).trim()));
        resolve(out);
      });
    });
    // The server wrote any error before it answered the client; let the loop read it.
    await new Promise((r) => setTimeout(r, 25));
    const failure = /libguestfs: error: (?:[\w-]+: )?(.*)/.exec(this.server.since(mark));
    if (failure) throw new GuestfishError(name, failure[1]!.trim());
    if (!this.alive()) throw new GuestfishError(name, `the appliance ended: ${this.server.since(mark).trim() || 'no message'}`);
    return stdout;
  }

  /** Whether the server process still runs. */
  alive(): boolean {
    try { process.kill(this.pid, 0); return true; } catch { return false; }
  }

  /** Resident memory of the server and its appliance (QEMU), in bytes. */
  async rssBytes(): Promise<number> {
    let total = 0;
    for (const pid of [this.pid, ...(await childPids(this.pid))]) {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
      const kb = /VmRSS:\s+(\d+) kB/.exec(status);
      if (kb) total += Number(kb[1]) * 1024;
    }
    return total;
  }

  /** Shuts the appliance down; kills the server if it does not go in time. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const children = await childPids(this.pid);
    await new Promise<void>((resolve) => {
      execFile('guestfish', [`--remote=${this.pid}`, '--', 'exit'], { env: this.env, timeout: 30_000 }, () => resolve());
    });
    for (let i = 0; i < 100 && [this.pid, ...children].some(alive); i++) await new Promise((r) => setTimeout(r, 100));
    for (const pid of [this.pid, ...children]) if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
}

/** What the server printed (its errors), the last 64 KiB of it, read by position. */
class ServerOutput {
  private buf = '';
  private start = 0;
  add(t: string): void {
    this.buf += t;
    if (this.buf.length > 128 * 1024) { const cut = this.buf.length - 64 * 1024; this.buf = this.buf.slice(cut); this.start += cut; }
  }
  get end(): number { return this.start + this.buf.length; }
  since(pos: number): string { return this.buf.slice(Math.max(0, pos - this.start)); }
  get text(): string { return this.buf; }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

async function childPids(parent: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === parent) out.push(Number(name));
  }
  return out;
}

/** Processes on this host that are libguestfs appliances (QEMU started by libguestfs). */
export async function runningAppliances(): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.startsWith('/usr/bin/qemu-system') && cmd.includes('guestfs')) out.push(Number(name));
  }
  return out;
}
