// Command handling over the log: a pure decider (decide/evolve/initialState) and the one
// impure loop that reads a stream, folds it, decides, and appends at the revision it read,
// deciding again when another writer got there first.
import { context as otelContext, isSpanContextValid, trace } from '@opentelemetry/api';
import { newEvent, type Decider, type TraceContext, type CairnEvent, type EventDataMap, type EventMeta, type EventType, type KnownEvent } from '@cairn/contracts';
import { WrongExpectedRevisionError } from './errors.ts';
import type { EventAppender, EventStreamReader } from './event-log.port.ts';

export type { Decider, EventDraft } from '@cairn/contracts';

/** Folds events into a state (events of types the decider does not know are passed too). */
export function fold<Event extends KnownEvent, State>(decider: Pick<Decider<unknown, Event, State>, 'evolve' | 'initialState'>, events: Iterable<Event>): State {
  let state = decider.initialState();
  for (const e of events) state = decider.evolve(state, e);
  return state;
}

/** The W3C trace context of the span active in this call chain (none when no valid span is). */
export function activeTraceContext(): TraceContext | undefined {
  const span = trace.getSpan(otelContext.active());
  const sc = span?.spanContext();
  if (!sc || !isSpanContextValid(sc)) return undefined;
  const traceparent = `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
  const tracestate = sc.traceState?.serialize();
  return tracestate ? { traceparent, tracestate } : { traceparent };
}

export interface HandleCommandOptions {
  /**
   * Envelope fields of the new events (streamId is the handled stream). Without a `trace`, the
   * events carry the span active when the command is handled, so a job's trace continues.
   */
  readonly meta: Omit<EventMeta, 'streamId' | 'id'>;
  /** Conflicts retried before giving up (default 5). */
  readonly maxRetries?: number;
  /**
   * The stream as the caller already knows it (folded from its subscription, or vouched for by
   * the command's sender): the first attempt decides on this state and appends expecting this
   * revision, without reading the stream. Only a conflict (the stream moved on) reads it.
   */
  readonly known?: {
    readonly state: unknown; readonly revision: bigint;
    /**
     * The global position of the event at `revision`, learnt with it (see AppendOptions'
     * `expectedPosition`): the first append passes it on, so an adapter need not read the head.
     */
    readonly position?: bigint | undefined;
  };
}

export interface HandleCommandResult<State> {
  readonly events: readonly CairnEvent[];
  readonly state: State;
  /** Revision after the append (or the one read, when nothing was appended); -1n for no stream. */
  readonly revision: bigint;
  readonly position: bigint | undefined;
  /** How many times the command was decided again after a conflict. */
  readonly retries: number;
}

export async function handleCommand<Command, Event extends KnownEvent, State>(
  log: EventAppender & EventStreamReader,
  streamId: string,
  decider: Decider<Command, Event, State>,
  command: Command,
  options: HandleCommandOptions,
): Promise<HandleCommandResult<State>> {
  const maxRetries = options.maxRetries ?? 5;
  for (let attempt = 0; ; attempt++) {
    let state = decider.initialState();
    let revision = -1n;
    let position: bigint | undefined;
    if (attempt === 0 && options.known) {
      state = options.known.state as State;
      revision = options.known.revision;
      position = options.known.position;
    } else {
      for await (const r of log.readStream(streamId)) {
        state = decider.evolve(state, r.event as Event);
        revision = r.revision;
      }
    }
    const drafts = decider.decide(command, state);
    if (drafts.length === 0) return { events: [], state, revision, position: undefined, retries: attempt };
    const trace = options.meta.trace ?? activeTraceContext();
    const meta = { ...options.meta, ...(trace ? { trace } : {}), streamId };
    const events = drafts.map((d) => newEvent(d.type as EventType, d.data as EventDataMap[EventType], meta));
    try {
      const result = await log.append(streamId, events, {
        expectedRevision: revision < 0n ? 'no_stream' : revision,
        ...(revision >= 0n && position !== undefined ? { expectedPosition: position } : {}),
      });
      for (const e of events) state = decider.evolve(state, e as unknown as Event);
      return { events, state, revision: result.nextRevision, position: result.position, retries: attempt };
    } catch (e) {
      if (!(e instanceof WrongExpectedRevisionError) || attempt >= maxRetries) throw e;
    }
  }
}
