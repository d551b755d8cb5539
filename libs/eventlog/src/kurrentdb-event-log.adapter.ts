// The event log on KurrentDB / EventStoreDB (`@eventstore/db-client`), for sites that run one.
//
// Mapping (see docs/eventlog.md):
// - Cairn stream `job-42` = KurrentDB stream `job-42` (so `$ce-job` category streams work);
// - one KurrentDB event per Cairn event: event id = Cairn event id, event type = Cairn type,
//   data = the whole envelope as JSON, metadata = `$correlationId`/`$causationId` and the
//   schema version (KurrentDB conventions, for its own tools);
// - revision = KurrentDB stream revision; global position = commit position in `$all`
//   (appends here never use explicit transactions, so commit and prepare positions agree);
// - an append is one atomic KurrentDB append with the expected revision;
// - a database shared by several sites is partitioned by the envelope's `site`: reads of
//   the whole log return this site's events only.
// Services still consume events from NATS: the relay (kurrentdb-relay.adapter.ts) republishes
// `$all` there.
import {
  ANY, BACKWARDS, END, NO_STREAM, START, STREAM_EXISTS, StreamNotFoundError, WrongExpectedVersionError,
  excludeSystemEvents, jsonEvent, streamNameFilter,
  type AllStreamResolvedEvent, type AppendExpectedRevision, type EventStoreDBClient, type JSONType, type ReadPosition,
} from '@eventstore/db-client';
import { assertToken, streamCategory, type CairnEvent } from '@cairn/contracts';
import { checkRetry, skipStored } from './append-retry.ts';
import { checkSizes, decodeValue, encodeBatch, reportInvalid, type EncodedEvent } from './codec.ts';
import { EventLogUsageError, WrongExpectedRevisionError } from './errors.ts';
import type {
  AppendOptions, AppendResult, EventLog, EventSubscription, ExpectedRevision, OnInvalidRecord, ReadAllOptions,
  ReadStreamOptions, Recorded, SubscribeOptions,
} from './event-log.port.ts';

export interface KurrentDbEventLogOptions {
  readonly client: EventStoreDBClient;
  readonly site: string;
  /**
   * Largest encoded event accepted. Default: what a default nats-server takes, because the
   * relay republishes every event as one NATS message.
   */
  readonly maxEventBytes?: number;
}

/** A recorded event as the client library returns it (JSON data parsed, or raw bytes). */
interface StoredEvent {
  readonly streamId: string;
  readonly revision: bigint;
  readonly data: unknown;
  readonly position?: { readonly commit: bigint } | undefined;
}

export class KurrentDbEventLog implements EventLog {
  readonly site: string;
  private readonly client: EventStoreDBClient;
  private readonly maxEventBytes: number;

  constructor(options: KurrentDbEventLogOptions) {
    this.client = options.client;
    this.site = options.site;
    this.maxEventBytes = options.maxEventBytes ?? 1024 * 1024 - 512;
  }

  async append(streamId: string, events: readonly CairnEvent[], options: AppendOptions): Promise<AppendResult> {
    assertToken(streamId, 'stream id');
    const encoded = encodeBatch(this.site, streamId, events);
    checkSizes(encoded, this.maxEventBytes);
    const expected = options.expectedRevision;
    let todo: readonly EncodedEvent[] = encoded;
    const head = expected === 'any' || expected === 'stream_exists' ? await this.streamHead(streamId) : undefined;
    if (head !== undefined) {
      // KurrentDB's own idempotence is best effort for ANY: look the ids up.
      const stored = await skipStored(this, streamId, encoded, head);
      if (stored.rest.length === 0 && stored.last) return { nextRevision: stored.last.revision, position: stored.last.position };
      todo = stored.rest;
    }
    try {
      return await this.write(streamId, todo, toKurrent(expected));
    } catch (e) {
      if (!(e instanceof WrongExpectedVersionError)) throw e;
      const actual = typeof e.actualVersion === 'bigint' ? e.actualVersion : 'no_stream';
      // A retry whose first part (or all) was stored by an earlier attempt.
      const retry = await checkRetry(this, streamId, expected, encoded, actual);
      if (retry.kind === 'conflict') throw new WrongExpectedRevisionError(streamId, expected, actual);
      if (retry.kind === 'done') return { nextRevision: retry.last.revision, position: retry.last.position };
      try {
        return await this.write(streamId, retry.rest, retry.last.revision);
      } catch (again) {
        if (!(again instanceof WrongExpectedVersionError)) throw again;
        throw new WrongExpectedRevisionError(streamId, expected, typeof again.actualVersion === 'bigint' ? again.actualVersion : 'no_stream');
      }
    }
  }

  /** Revision of a stream's last event (undefined: no stream). */
  private async streamHead(streamId: string): Promise<bigint | undefined> {
    try {
      for await (const r of this.client.readStream(streamId, { direction: BACKWARDS, fromRevision: END, maxCount: 1 })) {
        if (r.event) return r.event.revision;
      }
    } catch (e) {
      if (!(e instanceof StreamNotFoundError)) throw e;
    }
    return undefined;
  }

  private async write(streamId: string, events: readonly EncodedEvent[], expectedRevision: AppendExpectedRevision): Promise<AppendResult> {
    const data = events.map(({ event }) => jsonEvent({
      id: event.id,
      type: event.type,
      data: event as unknown as JSONType,
      metadata: { $correlationId: event.correlationId, $causationId: event.causationId, schemaVersion: event.schemaVersion },
    }));
    const result = await this.client.appendToStream(streamId, data, { expectedRevision });
    let position = result.position?.commit;
    if (position === undefined) {
      // An idempotent repeat may come back without a position: read it.
      for await (const r of this.readStream(streamId, { fromRevision: result.nextExpectedRevision, maxCount: 1, onInvalid: () => undefined })) position = r.position;
    }
    return { nextRevision: result.nextExpectedRevision, position: position ?? 0n };
  }

  async *readStream(streamId: string, options: ReadStreamOptions = {}): AsyncIterable<Recorded> {
    assertToken(streamId, 'stream id');
    const reading = this.client.readStream(streamId, {
      fromRevision: options.fromRevision ?? START,
      ...(options.maxCount !== undefined ? { maxCount: options.maxCount } : {}),
    });
    try {
      for await (const resolved of reading) {
        if (!resolved.event) continue;
        const r = await this.decode(resolved.event, options.onInvalid);
        if (r) yield r;
      }
    } catch (e) {
      if (e instanceof StreamNotFoundError) return; // never written: reads as empty
      throw e;
    }
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<Recorded> {
    const after = options.fromPosition ?? 0n;
    if (after < 0n) throw new EventLogUsageError('readAll: fromPosition must be >= 0');
    const head = await this.headPosition();
    if (head <= after) return;
    let count = 0;
    const from: ReadPosition = after === 0n ? START : { commit: after, prepare: after };
    for await (const resolved of this.client.readAll({ fromPosition: from })) {
      const e = resolved.event;
      if (!e?.position || e.streamId.startsWith('$')) continue;
      if (e.position.commit <= after) continue;
      if (e.position.commit > head) return;
      if (options.maxCount !== undefined && count >= options.maxCount) return;
      const r = await this.decode(e, options.onInvalid);
      if (!r || r.event.site !== this.site) continue;
      if (options.category !== undefined && streamCategory(r.event.streamId) !== options.category) continue;
      count++;
      yield r;
    }
  }

  subscribe(options: SubscribeOptions): EventSubscription {
    if (typeof options.from === 'bigint' && options.from < 0n) throw new EventLogUsageError('subscribe: position must be >= 0');
    const state = { position: typeof options.from === 'bigint' ? options.from : 0n, stopped: false, stop: undefined as (() => Promise<void>) | undefined };
    const iterator = this.follow(state, options);
    return {
      get position() { return state.position; },
      async stop() {
        state.stopped = true;
        await state.stop?.();
      },
      [Symbol.asyncIterator]: () => iterator,
    };
  }

  /** Catch-up subscription to `$all`, resubscribed after the last position when it fails. */
  private async *follow(
    state: { position: bigint; stopped: boolean; stop: (() => Promise<void>) | undefined },
    options: SubscribeOptions,
  ): AsyncGenerator<Recorded> {
    if (options.from === 'end') state.position = await this.headPosition();
    const filter = options.category !== undefined
      ? streamNameFilter({ prefixes: [`${assertToken(options.category, 'category')}-`] })
      : excludeSystemEvents();
    let failures = 0;
    let fatal: { error: unknown } | undefined;
    while (!state.stopped) {
      const fromPosition: ReadPosition = state.position === 0n ? START : { commit: state.position, prepare: state.position };
      const subscription = this.client.subscribeToAll({ fromPosition, filter });
      state.stop = () => subscription.unsubscribe();
      try {
        for await (const resolved of subscription as AsyncIterable<AllStreamResolvedEvent>) {
          failures = 0;
          const e = resolved.event;
          if (!e?.position || e.streamId.startsWith('$') || e.position.commit <= state.position) continue;
          let r: Recorded | undefined;
          try {
            r = await this.decode(e, options.onInvalid);
          } catch (error) {
            fatal = { error }; // an unreadable record without a hook, or the hook failed
            break;
          }
          state.position = e.position.commit;
          if (r && r.event.site === this.site) yield r;
          if (state.stopped) break;
        }
      } catch {
        if (state.stopped) break;
        failures++;
      } finally {
        await subscription.unsubscribe().catch(() => undefined);
      }
      if (fatal) throw fatal.error;
      if (!state.stopped) await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** Math.min(failures, 5))));
    }
  }

  async headPosition(): Promise<bigint> {
    for await (const resolved of this.client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1 })) {
      return resolved.event?.position?.commit ?? resolved.commitPosition ?? 0n;
    }
    return 0n;
  }

  async close(): Promise<void> {}

  private async decode(e: StoredEvent, onInvalid: OnInvalidRecord | undefined): Promise<Recorded | undefined> {
    const position = e.position?.commit ?? 0n;
    const d = decodeValue(e.data, position, e.streamId);
    if (!d.ok) {
      await reportInvalid(d.record, onInvalid);
      return undefined;
    }
    return { event: d.event, position, revision: e.revision };
  }
}

function toKurrent(expected: ExpectedRevision): AppendExpectedRevision {
  if (expected === 'no_stream') return NO_STREAM;
  if (expected === 'any') return ANY;
  if (expected === 'stream_exists') return STREAM_EXISTS;
  return expected;
}
