// How a consumer checks a decoded message before its handler sees it. A failed check is not
// retried (the bytes will not change): the message is dead-lettered with the problems.
import type { TSchema, Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { InvalidEventError, validateEvent, type KnownEvent } from '@cairn/contracts';
import type { DeadLetterReason } from './delivery-policy.ts';

export interface Problem {
  readonly path: string;
  readonly message: string;
}

export type Validation<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: DeadLetterReason; readonly problems: readonly Problem[] };

export type MessageValidator<T = unknown> = (raw: unknown) => Validation<T>;

const MAX_PROBLEMS = 20;

/** Cairn events: envelope and data checked for their type and version, then upcast. */
export const eventMessages: MessageValidator<KnownEvent> = (raw) => {
  try {
    return { ok: true, value: validateEvent(raw) };
  } catch (e) {
    if (e instanceof InvalidEventError) {
      const reason: DeadLetterReason = e.code === 'malformed_json' ? 'malformed_json' : e.code;
      return { ok: false, reason, problems: e.problems };
    }
    throw e;
  }
};

/**
 * Cairn events as `eventMessages`, except that one this build cannot read comes as null
 * instead of being dead-lettered: for followers that leave unreadable records to the
 * catalogue and the audit to report.
 */
export const readableEvents: MessageValidator<KnownEvent | null> = (raw) => {
  const checked = eventMessages(raw);
  return checked.ok ? checked : { ok: true, value: null };
};

/** Messages of one TypeBox schema (work items and other non-event payloads). */
export function schemaMessages<S extends TSchema>(schema: S): MessageValidator<Static<S>> {
  const check = TypeCompiler.Compile(schema);
  return (raw) => {
    if (check.Check(raw)) return { ok: true, value: raw as Static<S> };
    const problems: Problem[] = [];
    for (const e of check.Errors(raw)) {
      problems.push({ path: e.path, message: e.message });
      if (problems.length >= MAX_PROBLEMS) break;
    }
    return { ok: false, reason: 'schema_mismatch', problems };
  };
}

/**
 * Messages carrying `schemaVersion`, one schema per version: a version this build does not
 * know is `unknown_version` (a newer producer; upgrade this consumer, then replay).
 */
export function versionedMessages<S extends TSchema>(versions: Readonly<Record<number, S>>): MessageValidator<Static<S>> {
  const checks = new Map<number, MessageValidator<Static<S>>>();
  for (const [v, schema] of Object.entries(versions)) checks.set(Number(v), schemaMessages(schema));
  const known = [...checks.keys()].sort((a, b) => a - b).join(', ');
  return (raw) => {
    const version = typeof raw === 'object' && raw !== null ? (raw as { schemaVersion?: unknown }).schemaVersion : undefined;
    const check = typeof version === 'number' ? checks.get(version) : undefined;
    if (!check) {
      return {
        ok: false,
        reason: 'unknown_version',
        problems: [{ path: '/schemaVersion', message: `schemaVersion ${JSON.stringify(version)} is not one of ${known}` }],
      };
    }
    return check(raw);
  };
}

/** Any JSON value (the handler checks it itself). */
export const anyJson: MessageValidator<unknown> = (raw) => ({ ok: true, value: raw });
