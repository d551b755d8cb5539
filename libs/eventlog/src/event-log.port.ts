// The event log port: what every Cairn service may assume about the log, whichever adapter
// (JetStream, KurrentDB, in-memory) stores it. Written down here, next to the interface.
//
// - Streams are per aggregate (`job-<id>`). A stream's events have revisions 0, 1, 2, ...
//   with no holes; `expectedRevision` is the revision of the stream's last event (or
//   'no_stream' for an empty stream). A stream that was never written reads as empty: it is
//   not an error, so a decider folds it to its initial state.
// - Every event has a global position, strictly increasing in append order across the whole
//   log of the site (not necessarily contiguous). `readAll`/`subscribe` deliver events in
//   position order; `fromPosition` is exclusive.
// - Appends validate each event against its schema before anything is written; reads
//   validate and upcast to the current schema version. A record that cannot be read (bad
//   JSON, unknown type, a version newer than this build) is never skipped silently: it goes
//   to `onInvalid` when given, and otherwise the read throws InvalidRecordError. The record
//   stays in the log either way.
// - An append retried with the same event ids (after a timeout, a crash) stores each event
//   once and returns the same result.
// - A batch of events in one append is all-or-nothing from the point of view of other
//   writers (nobody can interleave), but a crash can leave a prefix written on JetStream;
//   repeating the append with the same events completes it. Readers may see the prefix.
import type { KnownEvent, RecordedEvent, CairnEvent } from '@cairn/contracts';
import type { InvalidRecord } from './errors.ts';

export type ExpectedRevision = bigint | 'no_stream' | 'any' | 'stream_exists';

export interface AppendOptions {
  readonly expectedRevision: ExpectedRevision;
  /**
   * The global position of the stream's event at `expectedRevision`, when the caller learnt the
   * two together from the log (one `Recorded`, one append's result), possibly in another process
   * that sent them along. An adapter may check the revision by it without reading the stream
   * (JetStream: the publish expects this sequence as the subject's last); when the stream moved
   * on, the append is refused or read as without it. Never a position from anywhere else: a
   * position paired with another revision would give the new events wrong revisions.
   */
  readonly expectedPosition?: bigint;
}

export interface AppendResult {
  /** Revision of the last event written: the `expectedRevision` of the next append. */
  readonly nextRevision: bigint;
  /** Global position of the last event written. */
  readonly position: bigint;
}

/** Called with a record that could not be read; the read goes on after it returns. */
export type OnInvalidRecord = (record: InvalidRecord) => void | Promise<void>;

export interface ReadStreamOptions {
  /** First revision to return (inclusive, default 0). */
  readonly fromRevision?: bigint;
  readonly maxCount?: number;
  readonly onInvalid?: OnInvalidRecord;
}

export interface ReadAllOptions {
  /** Return events after this position (exclusive; default 0n = from the beginning). */
  readonly fromPosition?: bigint;
  readonly maxCount?: number;
  /** Only streams of this category (`notifyroute`, ...): JetStream reads only its subjects. */
  readonly category?: string;
  readonly onInvalid?: OnInvalidRecord;
}

export interface SubscribeOptions {
  /** After this position (exclusive), from the first event ('start'), or only new ones ('end'). */
  readonly from: bigint | 'start' | 'end';
  /** Only streams of this category (`job`, `vm`, ...). */
  readonly category?: string;
  /**
   * The category holds few streams (users, tokens, approvals: tens to thousands) in a log that
   * may hold millions of events: an adapter may read a history from 'start' stream by stream
   * instead of looking through the whole log for the category. Same events, same order.
   */
  readonly fewStreams?: boolean;
  readonly onInvalid?: OnInvalidRecord;
}

export type Recorded = RecordedEvent<KnownEvent>;

/**
 * A live subscription: history first, then new events as they are appended, without gap or
 * duplicate, across reconnects of the underlying client. Iterate it once.
 */
export interface EventSubscription extends AsyncIterable<Recorded> {
  /** Position of the last event delivered (0n before the first). */
  readonly position: bigint;
  /** Ends the iteration (the pending `next()` resolves as done) and releases resources. */
  stop(): Promise<void>;
}

// Role interfaces: a consumer depends on the one it needs.
export interface EventAppender {
  append(streamId: string, events: readonly CairnEvent[], options: AppendOptions): Promise<AppendResult>;
}

export interface EventStreamReader {
  readStream(streamId: string, options?: ReadStreamOptions): AsyncIterable<Recorded>;
  /**
   * The stream's last event alone, in one read (undefined: the stream is empty), checked as
   * readStream checks each; optional: an adapter without a cheaper way than readStream leaves it out.
   */
  lastEvent?(streamId: string): Promise<Recorded | undefined>;
}

export interface EventLogReader {
  readAll(options?: ReadAllOptions): AsyncIterable<Recorded>;
}

export interface EventSubscriber {
  subscribe(options: SubscribeOptions): EventSubscription;
}

/** The whole port, as adapters implement it. */
export interface EventLog extends EventAppender, EventStreamReader, EventLogReader, EventSubscriber {
  /** The site whose log this is; events of other sites are refused on append. */
  readonly site: string;
  /** Position of the last event in the log now (0n when empty). */
  headPosition(): Promise<bigint>;
  /** Releases what the adapter opened (not the connection it was given). */
  close(): Promise<void>;
}
