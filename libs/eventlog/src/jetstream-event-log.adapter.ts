// The event log on NATS JetStream (the embedded default: needs nothing beyond NATS).
//
// Mapping (see docs/eventlog.md):
// - one stream per site, `CAIRN_EVT_<SITE>`, subjects `cairn.<site>.evt.>`, file storage,
//   nothing expires, deletes and purges denied;
// - one subject per aggregate stream, `cairn.<site>.evt.<category>.<streamId>`;
// - one message per event: JSON of the envelope, `Nats-Msg-Id` = event id (the server drops a
//   repeat inside the duplicate window), `Cairn-Revision` = the event's revision in its stream;
// - global position = stream sequence. Revision = the `Cairn-Revision` header, because the
//   per-subject sequence JetStream checks (`Nats-Expected-Last-Subject-Sequence`) is the
//   *stream* sequence of the subject's last message, not a count;
// - optimistic concurrency: read the subject's last message (sequence and revision), check
//   the expected revision, publish with that sequence expected. The server refuses the
//   publish if anyone wrote the subject meanwhile, so the revision header cannot fork.
//   When this client already knows the sequence of the expected revision (it wrote that
//   event, read the stream or was delivered it: subject-heads.ts), the caller gave it with the
//   revision (`expectedPosition`: a command's sender that read or wrote the stream), or the
//   stream is expected empty (sequence 0), it publishes at once expecting that sequence: one
//   round trip instead of two, with the same check by the server; a refusal falls back to the
//   read above.
// - a batch is published message by message, each expecting the previous one's sequence:
//   nobody can interleave, but it is not atomic on 2.9 (a crash leaves a prefix), and a
//   retry with the same ids completes it.
import {
  eventStreamName, eventSubject, eventSubjectFilter, streamReplicas, type CairnEvent,
} from '@cairn/contracts';
import {
  DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager, StorageType, RetentionPolicy, DiscardPolicy,
  type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg, type PubAck, type StoredMsg,
} from '@nats-io/jetstream';
import { errors as natsErrors, headers as natsHeaders, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { checkRetry, skipStored } from './append-retry.ts';
import { checkSizes, decodeRecord, encodeBatch, reportInvalid, type EncodedEvent } from './codec.ts';
import { EventLogUsageError, WrongExpectedRevisionError } from './errors.ts';
import { SubjectHeads, type SubjectHead } from './subject-heads.ts';
import { checkProvenance, eventProvenanceOf, provenanceViolation, signEvent, type EventProvenanceSettings } from './provenance.ts';
import type {
  AppendOptions, AppendResult, EventLog, EventSubscription, OnInvalidRecord, ReadAllOptions, ReadStreamOptions,
  Recorded, SubscribeOptions,
} from './event-log.port.ts';

export const REVISION_HEADER = 'Cairn-Revision';
export const EVENT_TYPE_HEADER = 'Cairn-Event-Type';
export const SCHEMA_VERSION_HEADER = 'Cairn-Schema-Version';

/** The header JetStream checks an append's per-subject expectation by; it stays with the message. */
const EXPECTED_LAST_SUBJECT_SEQUENCE = 'Nats-Expected-Last-Subject-Sequence';
/** Streams up to this many events are read back from their last message (chainBack). */
const CHAIN_LIMIT = 64;

/** What a read decodes: a consumer's message or one got by sequence. */
interface ReadMsg { readonly data: Uint8Array; readonly seq: number; readonly subject: string; readonly headers: MsgHdrs | undefined }
const storedAsRead = (m: StoredMsg): ReadMsg => ({ data: m.data, seq: m.seq, subject: m.subject, headers: m.header });

/** JetStream API error code for "wrong last sequence" (per-subject expectation failed). */
const WRONG_LAST_SEQUENCE = 10071;
/** Room kept for the headers when checking an event against the server's max payload. */
const HEADER_ALLOWANCE = 512;

export interface JetStreamEventLogOptions {
  readonly nc: NatsConnection;
  readonly site: string;
  /** JetStream domain of the site, when the connection is not local to it. */
  readonly domain?: string;
  /** How long the server remembers event ids to drop duplicate appends (default 2 min). */
  readonly duplicateWindowMs?: number;
  /** Create the stream when missing (default true). */
  readonly createStream?: boolean;
  /** Copies of the stream (default: R3 on a cluster, R1 on one server; see streamReplicas). */
  readonly replicas?: number;
  /**
   * Read every event the stream holds (`cairn.<site>.>`), not only this site's own subjects:
   * the hub's stream CAIRN_EVT_HUB also holds every site's events, copied there by the hub
   * relay on `cairn.hub.sites.<site>` (see hub-relay.adapter.ts). Appends still go to this
   * site's subjects only; a category filter cannot apply to the copied events and is ignored.
   */
  readonly allSites?: boolean;
  /**
   * Signing of appends and checking of reads (provenance.ts). Default: what was bound to the
   * connection with bindEventProvenance, else none. Not applied to a hub's `allSites` reads.
   */
  readonly provenance?: EventProvenanceSettings;
  /** Attempts of an 'any' append that keeps losing races (default 10). */
  readonly maxAnyAttempts?: number;
  /**
   * How long JetStream API calls and publishes are retried when the server does not answer
   * (restart, leader change) before the error reaches the caller (default 30 s). Every call
   * retried is idempotent: reads, and publishes carrying their event id.
   */
  readonly retryForMs?: number;
}

interface FollowState {
  readonly filter: string;
  position: bigint;
  /** The consumer starts after this position at the earliest (a history read up to it otherwise). */
  readFrom: bigint;
  stopped: boolean;
  messages?: ConsumerMessages | undefined;
  wake?: () => void;
}

/**
 * A subscription's heartbeat: two missed (~2-3 s without a message or heartbeat) and its consumer
 * is made again (nats.js's default with 5 s pulls, 2.5 s, only asks the lost consumer's info).
 */
const FOLLOW_HEARTBEAT_MS = 1_000;

/** The subscriptions' JetStream API timeout (consumer create and info; see followJs). */
const FOLLOW_CREATE_TIMEOUT_MS = 2_000;

/** JetStream's "no suitable peers for placement": the cluster cannot place a stream's replicas (yet). */
const NO_SUITABLE_PEERS = 10005;

export class JetStreamEventLog implements EventLog {
  readonly streamName: string;

  private constructor(
    readonly site: string,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly maxAnyAttempts: number,
    private readonly retryForMs: number,
    private readonly allSites = false,
    private readonly provenanceOption?: EventProvenanceSettings,
  ) {
    this.streamName = eventStreamName(site);
    this.followJs = jetstream(nc, { ...js.getOptions(), timeout: FOLLOW_CREATE_TIMEOUT_MS });
  }

  /**
   * The subscriptions' client: a shorter API timeout. After a member's loss the metadata leader
   * may still place a new (R1) consumer on it, and that create is never answered; a 5 s wait per
   * such try held a subscription 15-20 s in the cluster spec (the next try lands elsewhere).
   */
  private readonly followJs: JetStreamClient;

  /** Looked up at each use: a connection may be bound after the log was opened on it. */
  private get provenance(): EventProvenanceSettings | undefined {
    return this.provenanceOption ?? eventProvenanceOf(this.nc);
  }

  /** Last messages of subjects as this client learnt them: the sequence an append can expect without a read. */
  private readonly heads = new SubjectHeads();

  /** Refused events already reported by this client (reported once, however often read). */
  private readonly reported = new Set<string>();

  /** What reads and subscriptions take: this site's events, or every site's (hub). */
  private readFilter(category?: string): string {
    if (!this.allSites) return eventSubjectFilter(this.site, category);
    return `cairn.${this.site}.>`;
  }

  static async open(options: JetStreamEventLogOptions): Promise<JetStreamEventLog> {
    const jsOpts = options.domain ? { domain: options.domain } : {};
    const jsm = await jetstreamManager(options.nc, jsOpts);
    const js = jetstream(options.nc, jsOpts);
    const log = new JetStreamEventLog(options.site, options.nc, js, jsm, options.maxAnyAttempts ?? 10, options.retryForMs ?? 30_000, options.allSites ?? false, options.provenance);
    await log.ensureStream(options);
    return log;
  }

  private async ensureStream(options: JetStreamEventLogOptions): Promise<void> {
    const subject = eventSubjectFilter(this.site);
    try {
      const info = await this.jsm.streams.info(this.streamName);
      if (!info.config.subjects?.includes(subject)) {
        throw new Error(`stream ${this.streamName} exists but does not take ${subject} (subjects: ${info.config.subjects?.join(', ')})`);
      }
      return;
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === 10059) || options.createStream === false) throw e;
    }
    const windowNs = (options.duplicateWindowMs ?? 120_000) * 1_000_000;
    try {
      // A new cluster whose meta leader is elected but whose members have not all reported
      // their JetStream yet cannot place the replicas: asked again, as an unanswered call is
      // (CI saw it once for `cairn up --cluster 3`, right after JetStream first answered).
      await this.call(() => this.jsm.streams.add({
        name: this.streamName,
        subjects: [subject],
        storage: StorageType.File,
        retention: RetentionPolicy.Limits,
        discard: DiscardPolicy.Old,
        max_msgs: -1,
        max_bytes: -1,
        max_age: 0,
        duplicate_window: windowNs,
        num_replicas: options.replicas ?? streamReplicas(options.nc.info),
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
      }), (e) => isUnanswered(e) || (e instanceof JetStreamApiError && e.code === NO_SUITABLE_PEERS));
    } catch (e) {
      // Another process created it at the same moment: fine if it is ours.
      await this.jsm.streams.info(this.streamName).catch(() => { throw e; });
    }
  }

  /** Runs an idempotent call, again while the server does not answer (or `retryable` says so). */
  private async call<T>(fn: () => Promise<T>, retryable: (e: unknown) => boolean = isUnanswered): Promise<T> {
    const deadline = Date.now() + this.retryForMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (e) {
        if (!retryable(e) || this.nc.isClosed() || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, Math.min(1_000, 50 * 2 ** attempt)));
      }
    }
  }

  // ---- append -------------------------------------------------------------------------

  /** The append under way to each stream from this client (the next one waits for it). */
  private readonly appending = new Map<string, Promise<unknown>>();

  /**
   * Appends to one stream from this client go one at a time. nats-server before 2.9.21 may accept
   * two concurrent publishes to a clustered (R3) stream that expect the same last subject
   * sequence (nats-server#4320), so two writers that both decided on revision n could both land:
   * seen as a job completed twice in a 2,000-VM scale run with a cluster member killed. Waiting
   * here keeps the expected-revision check serial for every writer of this process; across
   * processes it takes a server with that fix.
   */
  async append(streamId: string, events: readonly CairnEvent[], options: AppendOptions): Promise<AppendResult> {
    const before = this.appending.get(streamId);
    const mine = (before ?? Promise.resolve()).catch(() => undefined).then(() => this.appendNow(streamId, events, options));
    this.appending.set(streamId, mine);
    try {
      return await mine;
    } finally {
      if (this.appending.get(streamId) === mine) this.appending.delete(streamId);
    }
  }

  private async appendNow(streamId: string, events: readonly CairnEvent[], options: AppendOptions): Promise<AppendResult> {
    // A signing client signs each event as its writer, and refuses a kind the writer may not emit.
    const signer = this.provenance?.signer;
    const encoded = encodeBatch(this.site, streamId, signer ? events.map((e) => signEvent(e, signer)) : events);
    const maxBytes = (this.nc.info?.max_payload ?? 1024 * 1024) - HEADER_ALLOWANCE;
    checkSizes(encoded, maxBytes);
    const subject = eventSubject(this.site, streamId);
    const expected = options.expectedRevision;
    // The head as known (or none, for a stream expected empty): publish expecting it, no read.
    // A position the caller learnt with the expected revision (another process's read or append)
    // is such a head too: the server checks that it is still the subject's last.
    const known = expected === 'no_stream' ? null : typeof expected === 'bigint'
      ? this.heads.at(subject, expected) ?? hintedHead(expected, options.expectedPosition) : undefined;
    if (known !== undefined) {
      try {
        return await this.publishChain(subject, encoded, known ?? undefined);
      } catch (e) {
        // Someone wrote the subject after it (or a retry of this very append): read and decide below.
        if (!(e instanceof JetStreamApiError && e.code === WRONG_LAST_SEQUENCE)) throw e;
      }
    }
    for (let attempt = 1; ; attempt++) {
      const head = await this.subjectHead(subject);
      const actual = head ? head.revision : 'no_stream';
      const matches = expected === 'any'
        || (expected === 'no_stream' && actual === 'no_stream')
        || (expected === 'stream_exists' && actual !== 'no_stream')
        || (typeof expected === 'bigint' && actual === expected)
        // What a checking reader did not see (refused events) does not make its append a conflict.
        || (actual !== 'no_stream' && await this.onlyRefusedAfter(subject, expected, head!.seq));
      let todo: readonly EncodedEvent[] = encoded;
      let from = head;
      if (!matches) {
        const retry = await checkRetry(this, streamId, expected, encoded, actual);
        if (retry.kind === 'conflict') throw new WrongExpectedRevisionError(streamId, expected, actual);
        if (retry.kind === 'done') return { nextRevision: retry.last.revision, position: retry.last.position };
        todo = retry.rest;
        from = { seq: Number(retry.last.position), revision: retry.last.revision };
      } else if (head && (expected === 'any' || expected === 'stream_exists')) {
        // No revision to recognise a repeat by: look the ids up (the duplicate window only
        // covers the last few minutes).
        const stored = await skipStored(this, streamId, encoded, head.revision);
        if (stored.rest.length === 0 && stored.last) return { nextRevision: stored.last.revision, position: stored.last.position };
        todo = stored.rest;
      }
      try {
        return await this.publishChain(subject, todo, from);
      } catch (e) {
        if (!(e instanceof JetStreamApiError && e.code === WRONG_LAST_SEQUENCE)) throw e;
        if (expected === 'any' && attempt < this.maxAnyAttempts) continue;
        const now = await this.subjectHead(subject);
        throw new WrongExpectedRevisionError(streamId, expected, now ? now.revision : 'no_stream');
      }
    }
  }

  /**
   * True when every event of the subject after revision `expected` is one a checking reader
   * refuses (forged): a writer that read the stream through this client saw the stream at
   * `expected`, and may append after the forged events without a conflict.
   */
  private async onlyRefusedAfter(subject: string, expected: AppendOptions['expectedRevision'], headSeq: number): Promise<boolean> {
    const verify = this.allSites ? undefined : this.provenance?.verify;
    if (!verify || !(typeof expected === 'bigint' || expected === 'no_stream')) return false;
    const base = expected === 'no_stream' ? -1n : expected;
    let revision = -1n;
    let after = 0;
    for await (const m of this.range(subject, 1, headSeq)) {
      revision = revisionOf(m.headers, revision);
      if (revision <= base) continue;
      after++;
      const d = decodeRecord(m.data, BigInt(m.seq), m.subject);
      if (!d.ok || checkProvenance(d.event, BigInt(m.seq), verify).ok) return false;
    }
    return after > 0;
  }

  /** Publishes events in order, each expecting the previous one as the subject's last message. */
  private async publishChain(subject: string, events: readonly EncodedEvent[], head: SubjectHead | undefined): Promise<AppendResult> {
    let seq = head?.seq ?? 0;
    let revision = head?.revision ?? -1n;
    for (const { event, bytes } of events) {
      const h = natsHeaders();
      h.set(REVISION_HEADER, String(revision + 1n));
      h.set(EVENT_TYPE_HEADER, event.type);
      h.set(SCHEMA_VERSION_HEADER, String(event.schemaVersion));
      if (event.trace) h.set('traceparent', event.trace.traceparent);
      // A publish retried after a lost answer is dropped as a duplicate by the server (which
      // checks the id before the expected sequence), so the retry is safe.
      const expected = seq;
      const ack: PubAck = await this.call(() => this.js.publish(subject, bytes, {
        msgID: event.id,
        expect: { lastSubjectSequence: expected },
        headers: h,
      }));
      if (ack.duplicate) {
        // Stored by an earlier attempt: take its place in the stream as the truth.
        const stored = await this.call(() => this.jsm.streams.getMessage(this.streamName, { seq: ack.seq }));
        revision = stored ? revisionOf(stored.header, revision) : revision + 1n;
      } else {
        revision += 1n;
      }
      seq = ack.seq;
      this.heads.note(subject, { seq, revision });
    }
    return { nextRevision: revision, position: BigInt(seq) };
  }

  /** Sequence and revision of a subject's last message (undefined: empty stream). */
  private async subjectHead(subject: string): Promise<SubjectHead | undefined> {
    return (await this.subjectLast(subject))?.head;
  }

  /** A subject's last message and its head (undefined: empty stream). */
  private async subjectLast(subject: string): Promise<{ head: SubjectHead; last: StoredMsg } | undefined> {
    const last = await this.call(() => this.jsm.streams.getMessage(this.streamName, { last_by_subj: subject }));
    if (!last) return undefined;
    const header = last.header.get(REVISION_HEADER);
    let head: SubjectHead;
    if (/^\d+$/.test(header)) head = { seq: last.seq, revision: BigInt(header) };
    else {
      // Written around this adapter (no revision header): count the subject's messages.
      const info = await this.call(() => this.jsm.streams.info(this.streamName, { subjects_filter: subject }));
      const count = info.state.subjects?.[subject] ?? 1;
      head = { seq: last.seq, revision: BigInt(count - 1) };
    }
    this.heads.note(subject, head);
    return { head, last };
  }

  /**
   * A stream's messages found from its last one backwards, each through the sequence it expected
   * of its subject when appended (`Nats-Expected-Last-Subject-Sequence`, kept with the message),
   * oldest first; undefined when the chain breaks (a message appended without the expectation)
   * or is longer than `limit`. A filtered consumer from the log's first sequence instead makes
   * nats-server 2.9 look through every message block for the subject: on a 1,000,000-event log
   * 3.5 CPU s of the server's for one short stream (issue 19: the gateway's start-up).
   */
  private async chainBack(last: StoredMsg, limit: number): Promise<StoredMsg[] | undefined> {
    // Each link must also step the stream's revision down by one, to 0 at the first message: a
    // stream whose sequences are not the ones its messages were appended with (a sourced copy)
    // could otherwise lead the walk to another message of the same subject.
    const revision = (m: StoredMsg): number | undefined => {
      const v = m.header.get(REVISION_HEADER);
      return /^\d+$/.test(v) ? Number(v) : undefined;
    };
    const chain = [last];
    for (let m = last; ;) {
      const expected = m.header.get(EXPECTED_LAST_SUBJECT_SEQUENCE);
      const r = revision(m);
      if (!/^\d+$/.test(expected) || r === undefined) return undefined;
      const previous = Number(expected);
      if (previous === 0) return r === 0 ? chain.reverse() : undefined;
      if (chain.length >= limit || previous >= m.seq) return undefined;
      const prev = await this.call(() => this.jsm.streams.getMessage(this.streamName, { seq: previous }));
      if (!prev || prev.subject !== last.subject || revision(prev) !== r - 1) return undefined;
      chain.push(prev);
      m = prev;
    }
  }

  // ---- reads --------------------------------------------------------------------------

  async *readStream(streamId: string, options: ReadStreamOptions = {}): AsyncIterable<Recorded> {
    const subject = eventSubject(this.site, streamId);
    const found = await this.subjectLast(subject);
    if (!found) return;
    const { head, last } = found;
    const from = options.fromRevision ?? 0n;
    // A short stream is read message by message back from its last one (the log's size does not
    // matter); a long one, or one whose chain breaks, through a consumer from the log's start.
    const chain = head.revision < BigInt(CHAIN_LIMIT) ? await this.chainBack(last, CHAIN_LIMIT) : undefined;
    const messages: AsyncIterable<ReadMsg> = chain ? (async function* () { yield* chain.map(storedAsRead); })() : this.range(subject, 1, head.seq);
    let count = 0;
    let revision = -1n;
    for await (const m of messages) {
      revision = revisionOf(m.headers, revision);
      if (revision < from) continue;
      if (options.maxCount !== undefined && count >= options.maxCount) return;
      const r = await this.decode(m, revision, options.onInvalid);
      if (!r) continue;
      count++;
      yield r;
    }
  }

  async lastEvent(streamId: string): Promise<Recorded | undefined> {
    const found = await this.subjectLast(eventSubject(this.site, streamId));
    return found ? this.decode(storedAsRead(found.last), found.head.revision, undefined) : undefined;
  }

  async *readAll(options: ReadAllOptions = {}): AsyncIterable<Recorded> {
    const after = options.fromPosition ?? 0n;
    if (after < 0n) throw new EventLogUsageError('readAll: fromPosition must be >= 0');
    let head = await this.headPosition();
    if (head <= after) return;
    const filter = this.readFilter(options.category);
    if (options.category !== undefined) {
      // The category's last message bounds the read (the filtered consumer waits past it otherwise).
      const last = await this.call(() => this.jsm.streams.getMessage(this.streamName, { last_by_subj: filter })).catch(() => null);
      if (!last) return;
      if (BigInt(last.seq) < head) head = BigInt(last.seq);
      if (head <= after) return;
    }
    let count = 0;
    for await (const m of this.range(filter, Number(after) + 1, Number(head))) {
      if (options.maxCount !== undefined && count >= options.maxCount) return;
      const r = await this.decode(m, revisionOf(m.headers, undefined), options.onInvalid);
      if (!r) continue;
      count++;
      yield r;
    }
  }

  /** Messages of `filter` with sequence in [start, end], through a short-lived ordered consumer. */
  private async *range(filter: string, start: number, end: number): AsyncGenerator<JsMsg> {
    const consumer = await this.call(() => this.js.consumers.get(this.streamName, {
      filter_subjects: filter,
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: start,
    }));
    const messages = await consumer.consume({ max_messages: 256, expires: 5_000 });
    try {
      for await (const m of messages) {
        if (m.seq > end) break;
        yield m;
        if (m.seq >= end || m.info.pending === 0) break;
      }
    } finally {
      await messages.close().catch(() => undefined);
      await consumer.delete().catch(() => undefined);
    }
  }

  private async decode(m: ReadMsg, revision: bigint | undefined, onInvalid: OnInvalidRecord | undefined): Promise<Recorded | undefined> {
    const d = decodeRecord(m.data, BigInt(m.seq), m.subject);
    if (!d.ok) {
      await reportInvalid(d.record, onInvalid);
      return undefined;
    }
    const position = BigInt(m.seq);
    const verify = this.allSites ? undefined : this.provenance?.verify;
    if (verify) {
      const verdict = checkProvenance(d.event, position, verify);
      if (!verdict.ok) {
        this.reportViolation(d.event, position, verdict);
        return undefined;
      }
    }
    return { event: d.event, position, revision: revision ?? -1n };
  }

  /** Records a refused event as a ProvenanceViolation (once per client) and tells the hook; the read goes on. */
  private reportViolation(event: CairnEvent, position: bigint, verdict: Extract<ReturnType<typeof checkProvenance>, { ok: false }>): void {
    const verify = this.provenance?.verify;
    if (!verify || this.reported.has(event.id)) return;
    this.reported.add(event.id);
    const violation = provenanceViolation(event, position, verdict, { site: this.site, detectedBy: verify.detectedBy });
    void this.append(violation.streamId, [violation], { expectedRevision: 'any' }).then(
      () => verify.onViolation?.(violation),
      (e: unknown) => verify.onViolation?.(violation, e),
    );
  }

  // ---- subscriptions ------------------------------------------------------------------

  subscribe(options: SubscribeOptions): EventSubscription {
    if (typeof options.from === 'bigint' && options.from < 0n) throw new EventLogUsageError('subscribe: position must be >= 0');
    const state: FollowState = {
      filter: this.readFilter(options.category),
      position: typeof options.from === 'bigint' ? options.from : 0n,
      readFrom: 0n,
      stopped: false,
    };
    const iterator = this.follow(state, options);
    return {
      get position() { return state.position; },
      async stop() {
        state.stopped = true;
        state.wake?.();
        // stop(), not close(): close() waits for the iterator to drain, and the loop may be
        // parked at a yield until its reader asks for more.
        state.messages?.stop();
      },
      [Symbol.asyncIterator]: () => iterator,
    };
  }

  /**
   * The subscription loop: an ordered consumer from `position + 1`. The client library
   * recreates it after a reconnect; if the consumer fails anyway (server restarted, consumer
   * gone), a new one starts after the last position handed over, so nothing is skipped and
   * nothing is handed over twice.
   */
  private async *follow(state: FollowState, options: SubscribeOptions): AsyncGenerator<Recorded> {
    if (options.from === 'end') state.position = await this.headPosition();
    if (options.from === 'start' && options.fewStreams && options.category !== undefined && !this.allSites) {
      yield* this.historyByStream(state, options);
    }
    let failures = 0;
    let fatal: { error: unknown } | undefined;
    while (!state.stopped) {
      let consumerDelete: (() => Promise<unknown>) | undefined;
      try {
        const consumer = await this.followJs.consumers.get(this.streamName, {
          filter_subjects: state.filter,
          deliver_policy: DeliverPolicy.StartSequence,
          opt_start_seq: Number(state.position > state.readFrom ? state.position : state.readFrom) + 1,
        });
        consumerDelete = () => consumer.delete();
        const messages = await consumer.consume({ max_messages: 256, expires: 5_000, idle_heartbeat: FOLLOW_HEARTBEAT_MS });
        state.messages = messages;
        if (state.stopped) break;
        // Two heartbeats missed: the consumer's server is gone (a member killed, often with the
        // metadata leader). The client would only ask that consumer's info again and again (it
        // recreates it only once told it is gone, which a dead member never says); a new one
        // after the last position handed over is made here instead, through the new leader.
        void (async () => {
          for await (const s of messages.status()) {
            if (s.type === 'heartbeats_missed' && s.count >= 2) {
              messages.stop();
              break;
            }
          }
        })().catch(() => undefined);
        for await (const m of messages) {
          failures = 0;
          const seq = BigInt(m.seq);
          if (seq <= state.position) continue; // redelivered after a reset: already handed over
          let recorded: Recorded | undefined;
          try {
            recorded = await this.decode(m, revisionOf(m.headers, undefined), options.onInvalid);
          } catch (e) {
            fatal = { error: e }; // an unreadable record without a hook, or the hook failed
            break;
          }
          state.position = seq;
          if (recorded && recorded.revision >= 0n && !this.allSites) this.heads.note(m.subject, { seq: m.seq, revision: recorded.revision });
          if (recorded) yield recorded;
          if (state.stopped) break;
        }
      } catch (e) {
        if (state.stopped) break;
        if (!isTransient(e)) throw e;
        failures++;
      } finally {
        // close() can wait forever on a consumer stopped before it delivered anything: bounded.
        const closing = state.messages?.close().catch(() => undefined);
        if (closing) await Promise.race([closing, new Promise((r) => setTimeout(r, 1_000).unref())]);
        state.messages = undefined;
        // Not awaited: a consumer on a dead member is never answered for (the API's 5 s timeout).
        void consumerDelete?.().catch(() => undefined);
      }
      if (fatal) throw fatal.error;
      if (!state.stopped) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(2_000, 100 * 2 ** Math.min(failures, 5)));
          state.wake = () => { clearTimeout(t); resolve(); };
        });
      }
    }
  }

  /**
   * A few-streams category's history up to the log's head, read stream by stream (readStream: a
   * direct get per event for a short stream) and handed over in log order; the subscription's
   * consumer then starts after that head. A consumer filtered to the category and started at the
   * log's first sequence makes nats-server 2.9 look through every message block for it (3.5 CPU s
   * of the server's for one category at 1,000,000 events: docs/benchmarks.md, "The gateway's
   * start-up against a large log"); listing the category's subjects walks the subject index once.
   */
  private async *historyByStream(state: FollowState, options: SubscribeOptions): AsyncGenerator<Recorded> {
    const head = await this.headPosition();
    if (head === 0n) return;
    const info = await this.call(() => this.jsm.streams.info(this.streamName, { subjects_filter: state.filter })).catch((e: unknown) => {
      if (isTransient(e)) return undefined;
      throw e;
    });
    if (!info) return;
    const prefix = state.filter.slice(0, -1); // `cairn.<site>.evt.<category>.`
    const history: Recorded[] = [];
    try {
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        if (!subject.startsWith(prefix)) continue;
        for await (const r of this.readStream(subject.slice(prefix.length), options.onInvalid ? { onInvalid: options.onInvalid } : {})) {
          if (r.position <= head) history.push(r);
        }
      }
    } catch (e) {
      // Nothing handed over yet: the consumer reads the history instead, from the log's start.
      if (isTransient(e)) return;
      throw e;
    }
    history.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
    for (const r of history) {
      if (state.stopped) return;
      state.position = r.position;
      yield r;
    }
    state.readFrom = head;
  }

  async headPosition(): Promise<bigint> {
    const info = await this.call(() => this.jsm.streams.info(this.streamName));
    return BigInt(info.state.last_seq);
  }

  async close(): Promise<void> {}
}

/** Opens the site's JetStream event log, creating its stream when missing. */
export function createJetStreamEventLog(options: JetStreamEventLogOptions): Promise<JetStreamEventLog> {
  return JetStreamEventLog.open(options);
}

/** The head an append's caller vouched for (`expectedPosition` with its revision), if it gave one that can be a sequence. */
function hintedHead(revision: bigint, position: bigint | undefined): SubjectHead | undefined {
  if (position === undefined || position < 1n || position > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return { seq: Number(position), revision };
}

function revisionOf(h: MsgHdrs | undefined, previous: bigint | undefined): bigint {
  const v = h?.get(REVISION_HEADER);
  if (v && /^\d+$/.test(v)) return BigInt(v);
  return previous === undefined ? -1n : previous + 1n;
}

/** The server did not answer (yet): worth asking again. */
function isUnanswered(e: unknown): boolean {
  return e instanceof natsErrors.TimeoutError
    || e instanceof natsErrors.NoRespondersError
    || (e instanceof natsErrors.RequestError && e.isNoResponders())
    // JetStream not (yet) enabled after a restart; the class is not exported, so by name.
    || (e instanceof Error && e.name === 'JetStreamNotEnabled');
}

function isTransient(e: unknown): boolean {
  // Validation and programming errors end the subscription; anything from the connection
  // or the server (timeouts, consumer/stream gone, disconnects) is retried.
  return !(e instanceof TypeError || e instanceof RangeError || e instanceof EventLogUsageError);
}
