// Given/when/then for any decider (emmett's DeciderSpecification): given the events a stream
// holds, when a command is decided, then these events are drafted, or nothing, or a refusal.
// Pure, framework-neutral (node:assert), so every decider's unit spec reads the same way.
import { deepStrictEqual, throws } from 'node:assert/strict';
import type { Decider, EventDraft, KnownEvent } from '@cairn/contracts';

export interface DeciderThen<Event extends KnownEvent> {
  /** Exactly these drafts, in order. */
  then(expected: readonly EventDraft<Event>[]): void;
  /** Nothing to do (a repeat, or a fact already recorded). */
  thenNothing(): void;
  /** Refused: the error matches (a class, a message pattern, or a predicate). */
  thenRefuses(expected: RegExp | (new (...args: never[]) => Error) | ((e: unknown) => boolean)): void;
}

export function deciderSpec<Command, Event extends KnownEvent, State>(decider: Decider<Command, Event, State>) {
  return {
    given(events: readonly Event[]) {
      return {
        when(command: Command): DeciderThen<Event> {
          const decide = () => {
            let state = decider.initialState();
            for (const e of events) state = decider.evolve(state, e);
            return decider.decide(command, state);
          };
          return {
            then: (expected) => deepStrictEqual(decide(), expected),
            thenNothing: () => deepStrictEqual(decide(), []),
            thenRefuses: (expected) => throws(decide, expected as never),
          };
        },
      };
    },
  };
}
