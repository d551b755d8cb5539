// libvirt's domain events (defined, undefined, started, stopped, device added or removed…)
// from one long-running `virsh event --loop --all`, restarted with backoff if it exits, so
// the inventory follows libvirt as it changes rather than on the next poll.
import { EventEmitter } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Virsh } from './virsh.ts';

interface Logger { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }

export interface DomainEvent { readonly domain: string; readonly event: string; readonly detail: string }

/** `event 'lifecycle' for domain 'web-1': Started Booted` -> {domain, event, detail}. */
export function parseEventLine(line: string): DomainEvent | undefined {
  const m = /^(?:\S+ \S+: )?event '([^']+)' for domain '?([^':]+)'?: ?(.*)$/.exec(line.trim());
  return m ? { event: m[1]!, domain: m[2]!, detail: m[3] ?? '' } : undefined;
}

export class DomainEventWatcher extends EventEmitter<{ event: [DomainEvent] }> {
  #child: ChildProcess | undefined;
  #stopped = true;
  #backoffMs = 1000;
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly virsh: Virsh, private readonly log: Logger) { super(); }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#spawn();
  }

  #spawn(): void {
    if (this.#stopped) return;
    const child = this.virsh.spawn(['event', '--loop', '--all']);
    this.#child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = parseEventLine(line);
      if (e) { this.#backoffMs = 1000; this.emit('event', e); }
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.once('exit', (code) => {
      this.#child = undefined;
      if (this.#stopped) return;
      this.log.warn({ code, err: stderr.trim().slice(-500) }, 'libvirt event stream ended: restarting');
      this.#timer = setTimeout(() => this.#spawn(), this.#backoffMs);
      this.#backoffMs = Math.min(this.#backoffMs * 2, 60_000);
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    const c = this.#child;
    if (c && c.exitCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    }
  }
}
