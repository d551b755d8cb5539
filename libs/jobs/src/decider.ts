// The decider shape, declared once in contracts (`Decider`, `EventDraft`); `Draft` is the name
// the domain code here uses for a draft event.
export type { Decider, EventDraft as Draft } from '@cairn/contracts';
