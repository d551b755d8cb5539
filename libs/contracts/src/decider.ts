// The decider (emmett's shape): pure decide/evolve/initialState over events. Declared once for
// the project: domain deciders (libs/jobs, the coordinator's inventory) implement it, and the
// event log's handleCommand runs it with an expected revision. Types only, no behaviour.
import type { KnownEvent } from './events/index.ts';

/** What decide() returns: an event to write, without its envelope (the handler adds it). */
export type EventDraft<E extends KnownEvent = KnownEvent> = E extends KnownEvent ? { readonly type: E['type']; readonly data: E['data'] } : never;

export interface Decider<Command, Event extends KnownEvent, State> {
  /** Pure: the events a command leads to in a state (none when there is nothing to do). Throws to refuse. */
  decide(command: Command, state: State): readonly EventDraft<Event>[];
  /** Pure: the state after an event. */
  evolve(state: State, event: Event): State;
  initialState(): State;
}
