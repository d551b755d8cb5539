// An event log in process memory: same contract as the real adapters (it runs the same
// suite), for unit tests of deciders and projections and for tools that need no server.
import type { CairnEvent, KnownEvent } from '@cairn/contracts';
import { checkRetry, skipStored } from './append-retry.ts';
import { checkSizes, decodeRecord, encodeBatch, reportInvalid } from './codec.ts';
import { EventLogUsageError, WrongExpectedRevisionError } from './errors.ts';
import type {
  AppendOptions, AppendResult, EventLog, EventSubscription, ReadAllOptions, ReadStreamOptions, Recorded, SubscribeOptions,
} from './event-log.port.ts';
import { streamCategory } from '@cairn/contracts';

export interface StoredRecord {
  readonly position: bigint;
  readonly streamId: string;
  readonly revision: bigint;
  readonly eventId: string | undefined;
  readonly payload: Uint8Array;
}

/** The records themselves, kept apart from the log so a test can look at (or damage) them. */
export class InMemoryEventStore {
  readonly records: StoredRecord[] = [];
  private readonly listeners = new Set<() => void>();

  /** Adds a record as is, without any check (a writer that bypasses the log). */
  appendRaw(streamId: string, payload: Uint8Array, eventId?: string): StoredRecord {
    const revision = BigInt(this.records.filter((r) => r.streamId === streamId).length);
    const record = { position: BigInt(this.records.length + 1), streamId, revision, eventId, payload };
    this.records.push(record);
    for (const l of this.listeners) l();
    return record;
  }

  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export class InMemoryEventLog implements EventLog {
  constructor(
    readonly site: string,
    readonly store = new InMemoryEventStore(),
    /** Largest encoded event accepted (default: what a default nats-server takes). */
    private readonly maxEventBytes = 1024 * 1024 - 512,
  ) {}

  async append(streamId: string, events: readonly CairnEvent[], options: AppendOptions): Promise<AppendResult> {
    const encoded = encodeBatch(this.site, streamId, events);
    checkSizes(encoded, this.maxEventBytes);
    const stream = this.store.records.filter((r) => r.streamId === streamId);
    const last = stream.at(-1);
    const actual = last ? last.revision : 'no_stream';
    const { expectedRevision: expected } = options;
    let todo = encoded;
    const matches = expected === 'any'
      || (expected === 'no_stream' && actual === 'no_stream')
      || (expected === 'stream_exists' && actual !== 'no_stream')
      || (typeof expected === 'bigint' && actual === expected);
    if (!matches) {
      const retry = await checkRetry(this, streamId, expected, encoded, actual);
      if (retry.kind === 'conflict') throw new WrongExpectedRevisionError(streamId, expected, actual);
      if (retry.kind === 'done') return { nextRevision: retry.last.revision, position: retry.last.position };
      todo = [...retry.rest];
      // The check awaited: make sure nobody wrote the stream meanwhile.
      const now = this.store.records.filter((r) => r.streamId === streamId).at(-1)?.revision ?? 'no_stream';
      if (now !== actual) throw new WrongExpectedRevisionError(streamId, expected, now);
    } else if (last && (expected === 'any' || expected === 'stream_exists')) {
      const stored = await skipStored(this, streamId, encoded, last.revision);
      if (stored.rest.length === 0 && stored.last) return { nextRevision: stored.last.revision, position: stored.last.position };
      todo = [...stored.rest];
    }
    let result: AppendResult | undefined;
    for (const { event, bytes } of todo) {
      const r = this.store.appendRaw(streamId, bytes, event.id);
      result = { nextRevision: r.revision, position: r.position };
    }
    return result!;
  }

  async *readStream(streamId: string, options: ReadStreamOptions = {}): AsyncIterable<Recorded> {
    const from = options.fromRevision ?? 0n;
    let count = 0;
    for (const r of this.store.records.filter((x) => x.streamId === streamId && x.revision >= from)) {
      if (options.maxCount !== undefined && count >= options.maxCount) return;
      const d = decodeRecord(r.payload, r.position, r.streamId);
      if (!d.ok) {
        await reportInvalid(d.record, options.onInvalid);
        continue;
      }
      count++;
      yield { event: d.event, position: r.position, revision: r.revision };
    }
  }

  async lastEvent(streamId: string): Promise<Recorded | undefined> {
    let last: Recorded | undefined;
    for await (const r of this.readStream(streamId)) last = r;
    return last;
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<Recorded> {
    const head = this.store.records.length;
    let count = 0;
    for (let i = Number(options.fromPosition ?? 0n); i < head; i++) {
      if (options.maxCount !== undefined && count >= options.maxCount) return;
      const r = this.store.records[i]!;
      if (options.category !== undefined && streamCategory(r.streamId) !== options.category) continue;
      const d = decodeRecord(r.payload, r.position, r.streamId);
      if (!d.ok) {
        await reportInvalid(d.record, options.onInvalid);
        continue;
      }
      count++;
      yield { event: d.event, position: r.position, revision: r.revision };
    }
  }

  subscribe(options: SubscribeOptions): EventSubscription {
    const store = this.store;
    let position = options.from === 'start' ? 0n : options.from === 'end' ? BigInt(store.records.length) : options.from;
    if (position < 0n) throw new EventLogUsageError('subscribe: position must be >= 0');
    let stopped = false;
    let wake: (() => void) | undefined;
    const unlisten = store.onAppend(() => wake?.());
    const matches = (streamId: string) => options.category === undefined || streamCategory(streamId) === options.category;
    async function* run(): AsyncGenerator<Recorded> {
      try {
        while (!stopped) {
          const r = store.records[Number(position)];
          if (!r) {
            await new Promise<void>((resolve) => { wake = resolve; });
            continue;
          }
          position = r.position;
          if (!matches(r.streamId)) continue;
          const d = decodeRecord(r.payload, r.position, r.streamId);
          if (!d.ok) {
            await reportInvalid(d.record, options.onInvalid);
            continue;
          }
          yield { event: d.event as KnownEvent, position: r.position, revision: r.revision };
        }
      } finally {
        unlisten();
      }
    }
    const iterator = run();
    return {
      get position() { return position; },
      async stop() {
        stopped = true;
        wake?.();
        unlisten();
      },
      [Symbol.asyncIterator]: () => iterator,
    };
  }

  async headPosition(): Promise<bigint> {
    return BigInt(this.store.records.length);
  }

  async close(): Promise<void> {}
}
