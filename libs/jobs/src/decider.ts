// The decider shape (decide/evolve/initialState) the event log's command handler folds and
// runs; declared here so domain code depends on no adapter (structurally the same type).
import type { KnownEvent } from '@cairn/contracts';

/** An event to write, without its envelope. */
export type Draft<E extends KnownEvent = KnownEvent> = E extends KnownEvent ? { readonly type: E['type']; readonly data: E['data'] } : never;

export interface Decider<Command, Event extends KnownEvent, State> {
  decide(command: Command, state: State): readonly Draft<Event>[];
  evolve(state: State, event: Event): State;
  initialState(): State;
}
