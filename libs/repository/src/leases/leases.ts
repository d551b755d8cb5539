// The GC safety protocol's two kinds of lease (see docs/repository.md, "Garbage collection"):
// a writer holds `pending/<writer id>` while it may rely on existing chunks; a sweeper holds
// `gc/sweep` while it deletes. Each side writes its own lease first and then looks for the
// other's, so at least one of two racing parties always sees the other and backs off.
// Leases are refreshed by a heartbeat; one not refreshed within its `leaseMs` is stale
// (a crashed process) and ignored.
import { hostname } from 'node:os';
import { type Backend, NotFoundError } from '../backend/backend.ts';
import { RepositoryBusyError } from '../errors.ts';
import { GC_GENERATION_KEY, GC_SWEEP_KEY, PENDING_PREFIX, pendingKey } from '../format/layout.ts';
import { randomId } from '../format/ids.ts';

interface LeaseBody {
  readonly holder: string;
  readonly host: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly heartbeatAt: string;
  readonly leaseMs: number;
}

export interface LeaseTiming {
  readonly leaseMs: number;
  readonly pollMs: number;
  /** How long to wait for the other side before giving up. */
  readonly waitMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function encode(body: LeaseBody): Uint8Array {
  return Buffer.from(JSON.stringify(body));
}

/**
 * A lease object is live when its last heartbeat (object mtime or body) is younger than its
 * lease. Read first, stat only when it is there: most looks find no sweep, and one failed read
 * is all they cost.
 */
export async function isLive(backend: Backend, key: string, now: number): Promise<boolean> {
  let body: Partial<LeaseBody>;
  let mtime: number;
  try {
    const bytes = await backend.get(key);
    const info = await backend.stat(key);
    mtime = info.mtime.getTime();
    try { body = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<LeaseBody>; } catch { body = {}; }
  } catch (e) {
    if (e instanceof NotFoundError) return false;
    throw e;
  }
  const beat = Math.max(mtime, Date.parse(body.heartbeatAt ?? '') || 0);
  const leaseMs = typeof body.leaseMs === 'number' ? body.leaseMs : 10 * 60_000;
  return now - beat < leaseMs;
}

/** A held lease: heartbeats until released. */
export class Lease {
  private timer?: NodeJS.Timeout;
  private failure?: Error;
  private beating: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly backend: Backend,
    readonly key: string,
    private readonly body: LeaseBody,
  ) {}

  start(): void {
    // Refresh at a quarter of the lease so one or two missed beats do not lose it.
    this.timer = setInterval(() => {
      const beat = { ...this.body, heartbeatAt: new Date().toISOString() };
      this.beating = this.beating
        .then(() => this.backend.put(this.key, encode(beat)))
        .catch((e: unknown) => { this.failure ??= e as Error; });
    }, Math.max(50, Math.floor(this.body.leaseMs / 4)));
    this.timer.unref();
  }

  /** A heartbeat failed: the lease may be gone (assertHeld throws). */
  get lost(): boolean {
    return this.failure !== undefined;
  }

  /** Throws when a heartbeat failed or the lease object was removed (declared stale by GC). */
  async assertHeld(): Promise<void> {
    if (this.failure) throw new Error(`lease ${this.key} lost: ${this.failure.message}`, { cause: this.failure });
    if (!(await this.backend.exists(this.key))) throw new Error(`lease ${this.key} was removed (it was considered stale)`);
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await this.beating; // a heartbeat landing after the delete would resurrect the lease
    await this.backend.delete(this.key);
  }
}

function newBody(holder: string, leaseMs: number): LeaseBody {
  const now = new Date().toISOString();
  return { holder, host: hostname(), pid: process.pid, startedAt: now, heartbeatAt: now, leaseMs };
}

/** The GC generation: bumped after each sweep so cached chunk listings know they are stale. */
export async function readGeneration(backend: Backend): Promise<string> {
  try {
    return Buffer.from(await backend.get(GC_GENERATION_KEY)).toString('utf8');
  } catch (e) {
    if (e instanceof NotFoundError) return 'none';
    throw e;
  }
}

export async function bumpGeneration(backend: Backend): Promise<void> {
  await backend.put(GC_GENERATION_KEY, Buffer.from(`${new Date().toISOString()}-${randomId(4)}`));
}

/**
 * Takes a writer lease: writes `pending/<id>`, then checks for a live sweep. When one runs,
 * withdraws (so the sweeper is not kept waiting for us), waits and tries again.
 */
export async function acquireWriterLease(backend: Backend, timing: LeaseTiming): Promise<Lease> {
  const writerId = `${Date.now().toString(36)}-${randomId(6)}`;
  const key = pendingKey(writerId);
  const deadline = Date.now() + timing.waitMs;
  for (;;) {
    const body = newBody(writerId, timing.leaseMs);
    await backend.put(key, encode(body));
    if (!(await isLive(backend, GC_SWEEP_KEY, Date.now()))) {
      const lease = new Lease(backend, key, body);
      lease.start();
      return lease;
    }
    await backend.delete(key);
    if (Date.now() > deadline) throw new RepositoryBusyError(`a garbage collection sweep has held ${backend.location} for longer than ${timing.waitMs} ms`);
    await sleep(timing.pollMs);
  }
}

/** Live writer leases; stale ones (crashed writers) are removed on the way. */
export async function liveWriters(backend: Backend, now = Date.now()): Promise<string[]> {
  const live: string[] = [];
  for await (const o of backend.list(PENDING_PREFIX)) {
    if (await isLive(backend, o.key, now)) live.push(o.key);
    else await backend.delete(o.key);
  }
  return live;
}

/**
 * Takes the sweep lease and waits until no writer holds a lease. Returns undefined (and
 * holds nothing) when writers are still running after `timing.waitMs`.
 */
export async function acquireSweepLease(backend: Backend, timing: LeaseTiming): Promise<Lease | undefined> {
  if (await isLive(backend, GC_SWEEP_KEY, Date.now())) throw new RepositoryBusyError(`another garbage collection is sweeping ${backend.location}`);
  const body = newBody(`gc-${randomId(6)}`, timing.leaseMs);
  await backend.put(GC_SWEEP_KEY, encode(body));
  const lease = new Lease(backend, GC_SWEEP_KEY, body);
  lease.start();
  const deadline = Date.now() + timing.waitMs;
  for (;;) {
    if ((await liveWriters(backend)).length === 0) return lease;
    if (Date.now() > deadline) {
      await lease.release();
      return undefined;
    }
    await sleep(timing.pollMs);
  }
}
