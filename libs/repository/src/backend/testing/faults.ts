// Fault injection for tests: wraps a real Backend and misbehaves on chosen calls — fails the
// Nth write, flips a bit or cuts bytes off what a read returns, adds latency, hangs — so the
// code above the backend can be tested against the failures real storage produces.
// Test support only; never wired into production code.
import { BackendError, type Backend, type ObjectInfo } from '../backend.ts';

export type FaultOp = 'put' | 'get' | 'getRange' | 'stat' | 'exists' | 'list' | 'delete';

export type FaultAction =
  /** Throw a BackendError (transient by default). With `afterCall` the call is made first and
   *  its result dropped: a write that happened but whose answer was lost. */
  | { kind: 'error'; transient?: boolean; message?: string; afterCall?: boolean }
  /** Flip one bit (default: the middle one) of what get/getRange return. */
  | { kind: 'flipBit'; bit?: number }
  /** Return `drop` (default 1) bytes fewer than get/getRange read. */
  | { kind: 'shortRead'; drop?: number }
  /** Delay the call by `ms` before making it. */
  | { kind: 'latency'; ms: number }
  /** Never settle, until `releaseHangs()` (or close) rejects the call with a transient error. */
  | { kind: 'hang' };

export interface FaultRule {
  /** Operations the rule applies to (default all). */
  ops?: readonly FaultOp[];
  /** Keys it applies to: exact key, pattern or predicate (default all; list matches on prefix). */
  key?: string | RegExp | ((key: string) => boolean);
  /** First matching call (1-based) that misbehaves (default 1). */
  nth?: number;
  /** How many matching calls misbehave from the nth on (default: all of them). */
  times?: number;
  action: FaultAction;
}

interface ActiveRule extends FaultRule {
  seen: number;
  fired: number;
}

/** The controller of a faulty backend: add rules, inspect calls, release hangs. */
export class Faults {
  /** Every call made through the wrapper, in order (op and key or list prefix). */
  readonly calls: Array<{ op: FaultOp; key: string }> = [];
  private readonly rules: ActiveRule[] = [];
  private readonly hung = new Set<(e: Error) => void>();

  constructor(private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms))) {}

  add(rule: FaultRule): this {
    this.rules.push({ ...rule, seen: 0, fired: 0 });
    return this;
  }

  clear(): this {
    this.rules.length = 0;
    return this;
  }

  /** The nth put from now fails (transient unless said otherwise); later puts succeed. */
  failNthWrite(n: number, options: { transient?: boolean; afterCall?: boolean; key?: FaultRule['key'] } = {}): this {
    return this.add({
      ops: ['put'], nth: n, times: 1, ...(options.key !== undefined ? { key: options.key } : {}),
      action: { kind: 'error', transient: options.transient ?? true, ...(options.afterCall ? { afterCall: true } : {}) },
    });
  }

  /** Reads of matching keys come back with one bit flipped. */
  flipBitOnRead(key: FaultRule['key'], bit?: number): this {
    return this.add({ ops: ['get', 'getRange'], key, action: { kind: 'flipBit', ...(bit !== undefined ? { bit } : {}) } });
  }

  /** Reads of matching keys come back `drop` bytes short. */
  shortRead(key: FaultRule['key'], drop = 1): this {
    return this.add({ ops: ['get', 'getRange'], key, action: { kind: 'shortRead', drop } });
  }

  latency(ms: number, ops?: readonly FaultOp[]): this {
    return this.add({ ...(ops ? { ops } : {}), action: { kind: 'latency', ms } });
  }

  /** Matching calls hang: for testing timeouts. Release them with `releaseHangs()`. */
  hang(ops?: readonly FaultOp[], times?: number): this {
    return this.add({ ...(ops ? { ops } : {}), ...(times !== undefined ? { times } : {}), action: { kind: 'hang' } });
  }

  /** Matching calls fail as a timed-out request would (transient). */
  timeout(ops?: readonly FaultOp[], times?: number): this {
    return this.add({
      ...(ops ? { ops } : {}), ...(times !== undefined ? { times } : {}),
      action: { kind: 'error', transient: true, message: 'simulated timeout' },
    });
  }

  /** Rejects every hung call (call it in test cleanup so nothing stays pending). */
  releaseHangs(): void {
    for (const reject of this.hung) reject(new BackendError('hung call released by the test', true));
    this.hung.clear();
  }

  get hanging(): number {
    return this.hung.size;
  }

  /** @internal Runs one call through the rules. */
  async apply<T>(op: FaultOp, key: string, call: () => Promise<T>, post?: (result: T, action: FaultAction) => T): Promise<T> {
    // (T is never itself a promise here: every caller passes a plain result type.)
    this.calls.push({ op, key });
    const actions = this.matching(op, key);
    let after: FaultAction[] = [];
    for (const action of actions) {
      if (action.kind === 'latency') await this.sleep(action.ms);
      else if (action.kind === 'hang') await new Promise<never>((_, reject) => this.hung.add(reject));
      else if (action.kind === 'error' && !action.afterCall) throw faultError(op, key, action);
      else after = [...after, action];
    }
    let result: T = await call();
    for (const action of after) {
      if (action.kind === 'error') throw faultError(op, key, action);
      if (post) result = post(result, action);
    }
    return result;
  }

  private matching(op: FaultOp, key: string): FaultAction[] {
    const out: FaultAction[] = [];
    for (const rule of this.rules) {
      if (rule.ops && !rule.ops.includes(op)) continue;
      if (!keyMatches(rule.key, key)) continue;
      rule.seen++;
      if (rule.seen < (rule.nth ?? 1)) continue;
      if (rule.fired >= (rule.times ?? Number.POSITIVE_INFINITY)) continue;
      rule.fired++;
      out.push(rule.action);
    }
    return out;
  }
}

export type FaultyBackend = Backend & { readonly faults: Faults; close(): Promise<void> };

/** Wraps `inner`; with no rules it behaves exactly like `inner`. */
export function withFaults(inner: Backend, faults: Faults = new Faults()): FaultyBackend {
  const corrupt = (data: Uint8Array, action: FaultAction): Uint8Array => {
    if (action.kind === 'flipBit') {
      if (data.length === 0) return data;
      const copy = Uint8Array.from(data);
      const bit = (action.bit ?? Math.floor((data.length * 8) / 2)) % (data.length * 8);
      copy[bit >> 3] = (copy[bit >> 3] as number) ^ (1 << (bit & 7));
      return copy;
    }
    if (action.kind === 'shortRead') return data.slice(0, Math.max(0, data.length - (action.drop ?? 1)));
    return data;
  };
  return {
    faults,
    location: inner.location,
    put: (key, data, opts) => faults.apply('put', key, () => inner.put(key, data, opts)),
    get: (key) => faults.apply('get', key, () => inner.get(key), corrupt),
    getRange: (key, offset, length) => faults.apply('getRange', key, () => inner.getRange(key, offset, length), corrupt),
    stat: (key) => faults.apply('stat', key, () => inner.stat(key)),
    exists: (key) => faults.apply('exists', key, () => inner.exists(key)),
    delete: (key) => faults.apply('delete', key, () => inner.delete(key)),
    async *list(prefix: string): AsyncIterable<ObjectInfo> {
      // Faults hit the start of the listing (the first page request).
      const it = await faults.apply('list', prefix, async () => inner.list(prefix)[Symbol.asyncIterator]());
      try {
        for (;;) {
          const step = await it.next();
          if (step.done) return;
          yield step.value;
        }
      } finally {
        await it.return?.();
      }
    },
    flush: (group) => inner.flush(group),
    ...(inner.removeDebris ? { removeDebris: (ms: number) => inner.removeDebris!(ms) } : {}),
    async close() {
      faults.releaseHangs();
      await inner.close?.();
    },
  };
}

function keyMatches(pattern: FaultRule['key'], key: string): boolean {
  if (pattern === undefined) return true;
  if (typeof pattern === 'string') return pattern === key;
  if (pattern instanceof RegExp) return pattern.test(key);
  return pattern(key);
}

function faultError(op: FaultOp, key: string, action: Extract<FaultAction, { kind: 'error' }>): BackendError {
  return new BackendError(`injected fault on ${op} ${key}: ${action.message ?? 'simulated failure'}`, action.transient ?? true, key);
}
