// QMP client: one QEMU monitor over a Unix socket. Handles the greeting and capability
// negotiation, numbers commands so late answers after a timeout are ignored, fans out
// asynchronous events, and (optionally) reconnects when the monitor goes away.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { QmpConnectionError, QmpError, QmpTimeoutError } from './qmp-errors.ts';

export interface QmpEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  readonly timestamp: { seconds: number; microseconds: number };
}

export interface QmpClientOptions {
  /** Deadline for connect + greeting + qmp_capabilities (default 5 s). */
  connectTimeoutMs?: number;
  /** Default deadline of a command (default 30 s). */
  commandTimeoutMs?: number;
  /** Reconnect after the connection is lost; commands issued meanwhile wait for it. */
  reconnect?: { delayMs?: number; maxDelayMs?: number } | false;
  /** How long a command waits for a lost monitor to come back before failing (default 5 s). */
  reconnectWaitMs?: number;
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

type Events = {
  event: [QmpEvent];
  disconnected: [Error];
  reconnected: [];
};

export class QmpClient extends EventEmitter<Events> {
  #socket: Socket | undefined;
  #connected: Promise<void> | undefined;
  #closed = false;
  #nextId = 1;
  #pending = new Map<string, Pending>();
  #greeting: QmpGreeting | undefined;
  readonly #wakers = new Set<() => void>();
  readonly #opts: Required<Pick<QmpClientOptions, 'connectTimeoutMs' | 'commandTimeoutMs'>> & QmpClientOptions;

  private constructor(readonly path: string, opts: QmpClientOptions) {
    super();
    this.setMaxListeners(0);
    this.#opts = { connectTimeoutMs: 5_000, commandTimeoutMs: 30_000, ...opts };
  }

  /** Connects, reads the greeting and leaves capability negotiation mode. */
  static async connect(path: string, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const client = new QmpClient(path, opts);
    client.#connected = client.#open();
    await client.#connected;
    return client;
  }

  get greeting(): QmpGreeting | undefined { return this.#greeting; }
  get isConnected(): boolean { return this.#socket !== undefined && !this.#socket.destroyed && this.#greeting !== undefined; }

  /** Runs a command; resolves with its `return` value, rejects with QmpError/QmpTimeoutError/QmpConnectionError. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.#closed) throw new QmpConnectionError(`QMP ${this.path}: client closed`);
    const timeoutMs = opts.timeoutMs ?? this.#opts.commandTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    if (!this.isConnected) {
      // While reconnecting, wait a little for the monitor to come back (a QEMU restart), but
      // not the whole command deadline: a QEMU that is gone should fail a job at once.
      const waitMs = Math.min(timeoutMs, this.#opts.reconnectWaitMs ?? 5_000);
      try {
        await withTimeout(this.#connected ?? Promise.reject(new QmpConnectionError('not connected')), waitMs, command);
      } catch (e) {
        if (e instanceof QmpTimeoutError) throw new QmpConnectionError(`QMP ${this.path}: QEMU is not answering (connection lost ${waitMs} ms or more ago, still reconnecting)`);
        throw e;
      }
    }
    return this.#send<T>(command, args, Math.max(1, deadline - Date.now()));
  }

  /**
   * Resolves with the first event named `name` (or any of the names) matching `predicate` within
   * `timeoutMs`. Listening starts at the call, so create the promise before sending the command
   * that causes the event.
   */
  waitForEvent(name: string | readonly string[], predicate: (data: Record<string, unknown>) => boolean = () => true, timeoutMs = this.#opts.commandTimeoutMs): Promise<QmpEvent> {
    const names = typeof name === 'string' ? [name] : name;
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (!names.includes(e.event)) return;
        let ok: boolean;
        try { ok = predicate(e.data); } catch (err) { cleanup(); reject(err as Error); return; }
        if (ok) { cleanup(); resolve(e); }
      };
      const timer = setTimeout(() => { cleanup(); reject(new QmpTimeoutError(`event ${names.join('|')}`, timeoutMs)); }, timeoutMs);
      const cleanup = () => { clearTimeout(timer); this.off('event', onEvent); };
      this.on('event', onEvent);
    });
  }

  /** Events as an async iterator (buffered from the call on); ends when the client is closed or `signal` aborts. */
  async *events(signal?: AbortSignal): AsyncGenerator<QmpEvent> {
    const queue: QmpEvent[] = [];
    let wake: (() => void) | undefined;
    const onEvent = (e: QmpEvent) => { queue.push(e); wake?.(); };
    const onAbort = () => wake?.();
    this.on('event', onEvent);
    signal?.addEventListener('abort', onAbort);
    try {
      while (!this.#closed && !signal?.aborted) {
        const next = queue.shift();
        if (next) { yield next; continue; }
        await new Promise<void>((r) => { wake = r; this.#wakers.add(r); });
        if (wake) this.#wakers.delete(wake);
        wake = undefined;
      }
    } finally {
      this.off('event', onEvent);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Closes the connection for good; pending commands fail with QmpConnectionError. */
  async close(): Promise<void> {
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = undefined;
    this.#failPending(new QmpConnectionError(`QMP ${this.path}: client closed`));
    for (const wake of this.#wakers) wake();
    if (socket && !socket.destroyed) {
      await new Promise<void>((resolve) => { socket.once('close', () => resolve()); socket.end(); setTimeout(() => { socket.destroy(); resolve(); }, 500).unref(); });
    }
  }

  #send<T>(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<T> {
    const socket = this.#socket;
    if (!socket || socket.destroyed) return Promise.reject(new QmpConnectionError(`QMP ${this.path}: not connected`));
    const id = `c${this.#nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      socket.write(JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id }) + '\n');
    });
  }

  #open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const socket = connect(this.path);
      let buffer = '';
      let greeted = false;
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new QmpTimeoutError(`connect ${this.path}`, this.#opts.connectTimeoutMs));
      }, this.#opts.connectTimeoutMs);
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          let msg: Record<string, unknown>;
          try { msg = JSON.parse(line) as Record<string, unknown>; } catch {
            socket.destroy(new QmpConnectionError(`QMP ${this.path}: unparsable line from QEMU: ${line.slice(0, 200)}`));
            return;
          }
          if (!greeted && 'QMP' in msg) {
            greeted = true;
            this.#socket = socket;
            this.#greeting = msg['QMP'] as QmpGreeting;
            this.#send('qmp_capabilities', undefined, this.#opts.connectTimeoutMs).then(
              () => { clearTimeout(timer); resolve(); },
              (err: Error) => { clearTimeout(timer); socket.destroy(); reject(err); },
            );
            continue;
          }
          this.#dispatch(msg);
        }
      });
      socket.on('error', (err) => {
        if (!greeted) { clearTimeout(timer); reject(new QmpConnectionError(`QMP ${this.path}: ${err.message}`, { cause: err })); }
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (!greeted) { reject(new QmpConnectionError(`QMP ${this.path}: closed before greeting`)); return; }
        if (this.#socket === socket) this.#lost();
      });
    });
  }

  #dispatch(msg: Record<string, unknown>): void {
    if (typeof msg['event'] === 'string') {
      this.emit('event', {
        event: msg['event'],
        data: (msg['data'] as Record<string, unknown> | undefined) ?? {},
        timestamp: (msg['timestamp'] as QmpEvent['timestamp'] | undefined) ?? { seconds: 0, microseconds: 0 },
      });
      return;
    }
    const id = typeof msg['id'] === 'string' ? msg['id'] : undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (!pending || id === undefined) return; // an answer after its timeout: dropped on purpose
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in msg) {
      const e = (msg['error'] ?? {}) as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, e.class ?? 'GenericError', e.desc ?? 'unknown error'));
    } else {
      pending.resolve(msg['return']);
    }
  }

  #lost(): void {
    this.#socket = undefined;
    this.#greeting = undefined;
    const err = new QmpConnectionError(`QMP ${this.path}: connection lost`);
    this.#failPending(err);
    this.emit('disconnected', err);
    if (this.#closed || !this.#opts.reconnect) {
      this.#connected = Promise.reject(err);
      this.#connected.catch(() => undefined);
      return;
    }
    const { delayMs = 200, maxDelayMs = 5_000 } = this.#opts.reconnect;
    this.#connected = (async () => {
      for (let delay = delayMs; !this.#closed; delay = Math.min(maxDelayMs, delay * 2)) {
        await new Promise((r) => setTimeout(r, delay).unref());
        if (this.#closed) break;
        try {
          await this.#open();
          this.emit('reconnected');
          return;
        } catch { /* QEMU not back yet: keep trying */ }
      }
      throw new QmpConnectionError(`QMP ${this.path}: client closed`);
    })();
    this.#connected.catch(() => undefined);
  }

  #failPending(err: Error): void {
    for (const p of this.#pending.values()) { clearTimeout(p.timer); p.reject(err); }
    this.#pending.clear();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new QmpTimeoutError(what, ms)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e as Error); });
  });
}
