// Builds the envelope of a new event at the current version of its type.
import { randomUUID } from 'node:crypto';
import type { Actor, TraceContext } from '../envelope.ts';
import { latestVersion, type EventDataMap, type EventType } from './registry.ts';
import type { EventOf } from './event-types.ts';

/** What the writer knows about the context of an event. */
export interface EventMeta {
  readonly site: string;
  readonly actor: Actor;
  readonly streamId: string;
  /** The job (or request) this belongs to; defaults to the stream id. */
  readonly correlationId?: string;
  readonly causationId?: string | null;
  readonly trace?: TraceContext;
  /** Fixed id/time, for tests and for idempotent re-emission. */
  readonly id?: string;
  readonly time?: Date | string;
}

export function newEvent<K extends EventType>(type: K, data: EventDataMap[K], meta: EventMeta): EventOf<K> {
  const time = meta.time === undefined ? new Date().toISOString() : typeof meta.time === 'string' ? meta.time : meta.time.toISOString();
  return {
    id: meta.id ?? randomUUID(),
    type,
    schemaVersion: latestVersion(type),
    time,
    site: meta.site,
    actor: meta.actor,
    streamId: meta.streamId,
    correlationId: meta.correlationId ?? meta.streamId,
    causationId: meta.causationId ?? null,
    ...(meta.trace ? { trace: meta.trace } : {}),
    data,
  };
}
