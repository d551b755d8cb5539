// QEMU guest agent over its host-side chardev socket: freeze and thaw the guest's file systems
// around a point in time. A frozen guest stalls its applications, so a freeze never outlives
// its deadline: if the freeze answer is late, or nobody thaws in time, we thaw anyway.
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';

export class GuestAgentError extends Error {
  override readonly name = 'GuestAgentError';
}

export interface GuestAgentOptions {
  /** Deadline per agent command (default 10 s). */
  timeoutMs?: number;
}

/** One command per connection: sync (drops stale output of earlier sessions), then the command. */
export class GuestAgentClient {
  constructor(readonly socketPath: string, private readonly opts: GuestAgentOptions = {}) {}

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.opts.timeoutMs ?? 10_000): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const socket = connect(this.socketPath);
      const syncId = randomInt(1, 2 ** 31);
      let synced = false;
      let buffer = '';
      const timer = setTimeout(() => finish(new GuestAgentError(`guest agent ${command}: no answer within ${timeoutMs} ms`)), timeoutMs);
      const finish = (err: Error | undefined, value?: unknown) => {
        clearTimeout(timer);
        socket.destroy();
        if (err) reject(err); else resolve(value as T);
      };
      socket.setEncoding('latin1');
      socket.on('connect', () => {
        socket.write(Buffer.from([0xff]));
        socket.write(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: syncId } }) + '\n');
      });
      socket.on('data', (chunk: string) => {
        // guest-sync-delimited answers after a 0xFF byte; anything before it is stale.
        buffer += chunk;
        if (!synced) {
          const ff = buffer.lastIndexOf('\xff');
          if (ff < 0) { buffer = ''; return; }
          buffer = buffer.slice(ff + 1);
        }
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          let msg: { return?: unknown; error?: { class?: string; desc?: string } };
          try { msg = JSON.parse(line) as typeof msg; } catch { finish(new GuestAgentError(`guest agent: unparsable answer ${line.slice(0, 200)}`)); return; }
          if (!synced) {
            if (msg.return === syncId) {
              synced = true;
              socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
            }
            continue;
          }
          if (msg.error) finish(new GuestAgentError(`guest agent ${command}: ${msg.error.class ?? 'error'}: ${msg.error.desc ?? ''}`));
          else finish(undefined, msg.return);
          return;
        }
      });
      socket.on('error', (e) => finish(new GuestAgentError(`guest agent ${this.socketPath}: ${e.message}`)));
      socket.on('close', () => finish(new GuestAgentError(`guest agent ${command}: connection closed before the answer`)));
    });
  }
}

export interface FreezeOutcome { frozen: boolean; reason: string }

/**
 * Freeze/thaw with a dead-man switch. `freeze` thaws at once when the freeze fails or times out
 * (the agent runs commands in order, so a late freeze is followed by our thaw), and arms a
 * timer that thaws after `maxFrozenMs` if `thaw` is not called first.
 */
export class FreezeGuard {
  #timer: NodeJS.Timeout | undefined;
  #frozen = false;

  constructor(private readonly agent: GuestAgentClient, private readonly onError: (e: unknown) => void = () => undefined) {}

  get frozen(): boolean { return this.#frozen; }

  async freeze(opts: { timeoutMs?: number; maxFrozenMs?: number; thawTimeoutMs?: number } = {}): Promise<FreezeOutcome> {
    const { timeoutMs = 10_000, maxFrozenMs = 60_000, thawTimeoutMs = 10_000 } = opts;
    try {
      const count = await this.agent.execute<number>('guest-fsfreeze-freeze', undefined, timeoutMs);
      this.#frozen = true;
      this.#timer = setTimeout(() => { this.thaw(thawTimeoutMs).catch(this.onError); }, maxFrozenMs);
      this.#timer.unref();
      return { frozen: true, reason: `guest agent froze ${count} file system(s)` };
    } catch (e) {
      // The thaw gets its own, longer deadline: it must not fail for the reason the freeze did.
      await this.#thawNow(thawTimeoutMs).catch(() => this.#thawNow(thawTimeoutMs)).catch(this.onError);
      return { frozen: false, reason: `guest freeze failed, crash-consistent instead: ${(e as Error).message}` };
    }
  }

  async thaw(timeoutMs = 10_000): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#thawNow(timeoutMs);
  }

  async #thawNow(timeoutMs: number): Promise<void> {
    this.#frozen = false;
    await this.agent.execute('guest-fsfreeze-thaw', undefined, timeoutMs);
  }
}
