// Warm browsing sessions, one per (restore point, disk): opened on first use, reused while
// used, closed after an idle timeout, bounded in number (the least recently used idle session
// makes room; when all are busy the caller is told to come back). Memory per session is
// bounded by the appliance size (ApplianceOptions.memoryMiB).
import type { BrowseSession } from './browse-session.ts';

export interface SessionPoolOptions {
  readonly idleMs: number;
  readonly maxSessions: number;
}

export class PoolFullError extends Error {
  constructor(max: number) {
    super(`all ${max} browsing sessions are in use; try again when one ends`);
    this.name = 'PoolFullError';
  }
}

interface Slot {
  session?: BrowseSession;
  opening?: Promise<BrowseSession>;
  busy: number;
  lastUsed: number;
  timer?: NodeJS.Timeout;
}

export class SessionPool {
  private readonly slots = new Map<string, Slot>();
  private launches = 0;
  /** Order of use (a clock could tie within a millisecond). */
  private tick = 0;

  constructor(private readonly o: SessionPoolOptions, private readonly onClose: (key: string, why: 'idle' | 'evicted' | 'shutdown' | 'failed') => void = () => undefined) {}

  /** Appliances started since this pool was made. */
  get started(): number { return this.launches; }

  keys(): string[] { return [...this.slots.keys()]; }

  sessions(): BrowseSession[] {
    return [...this.slots.values()].flatMap((s) => (s.session ? [s.session] : []));
  }

  /** Runs `fn` with the session for `key`, opening it with `open` when there is none. */
  async use<T>(key: string, open: () => Promise<BrowseSession>, fn: (s: BrowseSession) => Promise<T>): Promise<T> {
    let slot = this.slots.get(key);
    if (slot?.session && !slot.session.alive()) {
      await this.drop(key, 'failed');
      slot = undefined;
    }
    if (!slot) {
      // Reserved before anything is awaited, so concurrent first users share one opening.
      slot = { busy: 0, lastUsed: ++this.tick };
      this.slots.set(key, slot);
      this.launches++;
      const s = slot;
      s.opening = this.makeRoom(key).then(open).then((session) => { s.session = session; s.opening = undefined; return session; },
        (e: unknown) => { if (this.slots.get(key) === s) this.slots.delete(key); throw e; });
    }
    clearTimeout(slot.timer);
    slot.busy++;
    try {
      const session = slot.session ?? (await slot.opening!);
      return await fn(session);
    } finally {
      slot.busy--;
      slot.lastUsed = ++this.tick;
      if (slot.busy === 0 && this.slots.get(key) === slot) this.arm(key, slot);
    }
  }

  private arm(key: string, slot: Slot): void {
    clearTimeout(slot.timer);
    slot.timer = setTimeout(() => {
      if (slot.busy === 0) void this.drop(key, 'idle');
    }, this.o.idleMs);
    slot.timer.unref?.();
  }

  private async makeRoom(reserved: string): Promise<void> {
    if (this.slots.size <= this.o.maxSessions) return;
    const idle = [...this.slots.entries()].filter(([k, s]) => k !== reserved && s.busy === 0 && s.session).sort((a, b) => a[1].lastUsed - b[1].lastUsed)[0];
    if (!idle) throw new PoolFullError(this.o.maxSessions);
    await this.drop(idle[0], 'evicted');
  }

  /** Closes one session (a caller is done with it, or it failed). */
  async drop(key: string, why: 'idle' | 'evicted' | 'shutdown' | 'failed' = 'shutdown'): Promise<void> {
    const slot = this.slots.get(key);
    if (!slot) return;
    this.slots.delete(key);
    clearTimeout(slot.timer);
    const session = slot.session ?? (await slot.opening?.catch(() => undefined));
    await session?.close();
    this.onClose(key, why);
  }

  async close(): Promise<void> {
    await Promise.all([...this.slots.keys()].map((k) => this.drop(k, 'shutdown')));
  }
}
