// `sync --file-system <root>` through one long-lived `sh` per repository instead of a spawn of
// `sync` from this process per call. Spawning from a large Node process (the embedded stack,
// a data mover: hundreds of MiB mapped) forks it on the main thread, tens of milliseconds of
// CPU each (docs/benchmarks.md); the shell is small, so its fork of `sync` costs next to
// nothing. Each request carries this process's PATH, so `sync` is looked up as execFile would.
// The shell exits when its stdin closes (close(), or this process's exit).
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

type Shell = ChildProcessByStdio<Writable, Readable, null>;

/** One line per request (the PATH); one line back: the exit code, then stderr on one line. */
const SCRIPT = 'set -f; while IFS= read -r p; do e=$(PATH="$p" sync --file-system "$1" 2>&1 >/dev/null); printf \'%s %s\\n\' "$?" "$(echo $e)"; done';

export interface SyncfsOutcome {
  /** Exit code of `sync` (127: not found). */
  readonly code: number;
  readonly stderr: string;
}

export class SyncfsHelper {
  private child?: Shell;
  /** Settles when the current shell has exited. */
  private exited: Promise<void> = Promise.resolve();
  private readonly waiting: Array<{ resolve: (o: SyncfsOutcome) => void; reject: (e: Error) => void }> = [];
  private out = '';

  constructor(private readonly root: string) {}

  /** Runs `sync --file-system` on the root once; rejects only when the shell itself fails. */
  run(): Promise<SyncfsOutcome> {
    const child = this.child ?? this.start();
    return new Promise<SyncfsOutcome>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      // Keeps this process alive while a sync is outstanding (the shell is unref'd otherwise).
      (child.stdout as unknown as Socket).ref();
      child.stdin.write(`${process.env['PATH'] ?? ''}\n`);
    });
  }

  /** Ends the shell (it exits at the end of its input, after answering what it was asked) and waits for its exit. */
  async close(): Promise<void> {
    this.child?.stdin.end();
    this.child = undefined;
    await this.exited;
  }

  private start(): Shell {
    const child = spawn('/bin/sh', ['-c', SCRIPT, 'cairn-syncfs', this.root], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child = child;
    this.exited = new Promise<void>((resolve) => { child.on('close', () => resolve()); child.on('error', () => resolve()); });
    child.unref();
    (child.stdout as unknown as Socket).unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => {
      this.out += s;
      for (let nl = this.out.indexOf('\n'); nl >= 0; nl = this.out.indexOf('\n')) {
        const line = this.out.slice(0, nl);
        this.out = this.out.slice(nl + 1);
        const space = line.indexOf(' ');
        this.waiting.shift()?.resolve({ code: Number(line.slice(0, space)), stderr: line.slice(space + 1) });
      }
      if (this.waiting.length === 0) (child.stdout as unknown as Socket).unref();
    });
    const fail = (e: Error): void => {
      if (this.child === child) this.child = undefined;
      for (const w of this.waiting.splice(0)) w.reject(e);
    };
    child.on('error', fail);
    child.on('exit', (code, signal) => fail(new Error(`the sync helper shell exited (${signal ?? code})`)));
    child.stdin.on('error', () => undefined); // an exited shell: reported by 'exit'
    return child;
  }
}
