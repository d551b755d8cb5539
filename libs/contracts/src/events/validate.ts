// Validation of events crossing a process boundary: envelope and data checked against the
// schema of the declared type and version, then old versions upcast to the current one.
// Every failure is an InvalidEventError listing what is wrong; nothing is coerced silently.
import '../formats.ts';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { envelopeSchema, type CairnEvent } from '../envelope.ts';
import { streamCategory } from '../subjects.ts';
import { EVENT_SCHEMAS, dataSchema, isEventType, latestVersion, type EventDefinition } from './registry.ts';
import type { KnownEvent } from './event-types.ts';

export type InvalidEventCode =
  | 'malformed_json'
  | 'not_an_object'
  | 'unknown_type'
  | 'unknown_version'
  | 'schema_mismatch'
  | 'wrong_stream'
  | 'upcast_failed';

export interface EventProblem {
  /** JSON pointer into the event (`/data/jobId`), `` for the whole value. */
  readonly path: string;
  readonly message: string;
}

export class InvalidEventError extends Error {
  override readonly name = 'InvalidEventError';
  constructor(
    readonly code: InvalidEventCode,
    readonly problems: readonly EventProblem[],
    /** What is known of the event, to report it (all may be absent for garbage). */
    readonly meta: { readonly id?: string; readonly type?: string; readonly schemaVersion?: number } = {},
  ) {
    const what = [meta.type && `${meta.type}${meta.schemaVersion ? ` v${meta.schemaVersion}` : ''}`, meta.id && `id ${meta.id}`]
      .filter(Boolean).join(', ');
    const list = problems.slice(0, 5).map((p) => `${p.path || '(event)'}: ${p.message}`).join('; ');
    super(`invalid event${what ? ` (${what})` : ''} [${code}]: ${list}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}`);
  }
}

const MAX_PROBLEMS = 20;
/**
 * Checks of one type and version run interpreted (Value.Check, same rules as the compiled
 * check) until this many, then the schema is compiled: compiling costs ~1-2 ms a schema (far
 * more cold), so a short-lived reader (the CLI reading a job's stream: a few events of many
 * types) skips it, while a long-lived one compiles what it sees often.
 */
const COMPILE_AFTER = 8;

interface Checker {
  readonly schema: TSchema;
  uses: number;
  compiled?: TypeCheck<TSchema>;
}
const checks = new Map<string, Checker>();

function checker(type: string, version: number, data: TSchema): Checker {
  const key = `${type}.v${version}`;
  let check = checks.get(key);
  if (!check) {
    check = { schema: envelopeSchema(type, version, data), uses: 0 };
    checks.set(key, check);
  }
  return check;
}

/**
 * A long-lived process (the stack's services) compiles each type's check once it is quiet
 * after the type's first use, instead of on its (COMPILE_AFTER+1)th use: that use falls inside
 * a job (a fresh stack's first incremental compiled its nine job event types while it ran). A
 * type first used while the wait runs starts it again, so the types a job meets together are
 * compiled together, `delayMs` after the last of them (in a long full, while its transfer
 * runs). Off by default: a short-lived CLI keeps the interpreted tier.
 */
interface IdleCompile { readonly delayMs: number; readonly queue: Set<Checker>; timer?: ReturnType<typeof setTimeout> }
let idle: IdleCompile | undefined;

/** Compiles event checks `delayMs` after the last type first seen (see IdleCompile). */
export function compileEventChecksWhenIdle(delayMs = 1000): void {
  idle ??= { delayMs, queue: new Set() };
}

/** Compiles the checks waiting for a quiet spell now; how many. */
export function compileQueuedEventChecks(): number {
  if (!idle) return 0;
  clearTimeout(idle.timer);
  idle.timer = undefined;
  let n = 0;
  for (const check of idle.queue) {
    check.compiled ??= TypeCompiler.Compile(check.schema);
    n++;
  }
  idle.queue.clear();
  return n;
}

function passes(check: Checker, value: unknown): boolean {
  if (!check.compiled) {
    if (++check.uses > COMPILE_AFTER) check.compiled = TypeCompiler.Compile(check.schema);
    else if (idle && !idle.queue.has(check)) {
      idle.queue.add(check);
      clearTimeout(idle.timer);
      idle.timer = setTimeout(compileQueuedEventChecks, idle.delayMs);
      idle.timer.unref();
    }
  }
  return check.compiled ? check.compiled.Check(value) : Value.Check(check.schema, value);
}

function problemsOf(check: Checker, value: unknown): EventProblem[] {
  const out: EventProblem[] = [];
  for (const e of Value.Errors(check.schema, value)) {
    out.push({ path: e.path, message: e.message });
    if (out.length >= MAX_PROBLEMS) break;
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses JSON bytes or text into a validated, upcast event. */
export function parseEvent(payload: Uint8Array | string): KnownEvent {
  let raw: unknown;
  try {
    raw = JSON.parse(typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8'));
  } catch (e) {
    throw new InvalidEventError('malformed_json', [{ path: '', message: `not JSON: ${(e as Error).message}` }]);
  }
  return validateEvent(raw);
}

/**
 * Checks an event exactly as declared (type and schemaVersion), without upcasting.
 * Writers use this: an event is stored in the version it was written in.
 */
export function checkEvent(raw: unknown): CairnEvent {
  if (!isRecord(raw)) {
    throw new InvalidEventError('not_an_object', [{ path: '', message: `expected an object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}` }]);
  }
  const meta = {
    ...(typeof raw.id === 'string' ? { id: raw.id } : {}),
    ...(typeof raw.type === 'string' ? { type: raw.type } : {}),
    ...(typeof raw.schemaVersion === 'number' ? { schemaVersion: raw.schemaVersion } : {}),
  };
  const { type, schemaVersion } = raw;
  if (typeof type !== 'string') {
    throw new InvalidEventError('unknown_type', [{ path: '/type', message: 'missing event type' }], meta);
  }
  if (!isEventType(type)) {
    throw new InvalidEventError('unknown_type', [{ path: '/type', message: `unknown event type ${JSON.stringify(type)}` }], meta);
  }
  if (typeof schemaVersion !== 'number' || !Number.isInteger(schemaVersion) || schemaVersion < 1) {
    throw new InvalidEventError('unknown_version', [{ path: '/schemaVersion', message: 'schemaVersion must be an integer >= 1' }], meta);
  }
  const latest = latestVersion(type);
  const data = dataSchema(type, schemaVersion);
  if (!data) {
    throw new InvalidEventError('unknown_version', [{
      path: '/schemaVersion',
      message: `${type} v${schemaVersion} is newer than this build knows (latest v${latest}); upgrade this service`,
    }], meta);
  }
  const check = checker(type, schemaVersion, data);
  if (!passes(check, raw)) throw new InvalidEventError('schema_mismatch', problemsOf(check, raw), meta);
  const event = raw as unknown as CairnEvent;
  const def: EventDefinition = EVENT_SCHEMAS[type];
  const category = streamCategory(event.streamId);
  if (!def.categories.includes(category)) {
    throw new InvalidEventError('wrong_stream', [{
      path: '/streamId',
      message: `${type} belongs in a stream of category ${def.categories.join(' or ')}, not ${category}`,
    }], meta);
  }
  return event;
}

/**
 * Lifts an event checked at its declared version to the current version of its type,
 * one upcaster at a time (v1 -> v2 -> ...). The result is checked against the current schema.
 */
export function upcast(event: CairnEvent): KnownEvent {
  if (!isEventType(event.type)) {
    throw new InvalidEventError('unknown_type', [{ path: '/type', message: `unknown event type ${JSON.stringify(event.type)}` }], event);
  }
  const def: EventDefinition = EVENT_SCHEMAS[event.type];
  const latest = def.history.length + 1;
  if (event.schemaVersion === latest) return event as KnownEvent;
  if (event.schemaVersion > latest || event.schemaVersion < 1) {
    throw new InvalidEventError('unknown_version', [{ path: '/schemaVersion', message: `${event.type} has no version ${event.schemaVersion} (latest v${latest})` }], event);
  }
  let data: unknown = event.data;
  try {
    for (let v = event.schemaVersion; v < latest; v++) {
      data = (def.history[v - 1]!.upcast as (d: unknown) => unknown)(data);
    }
  } catch (e) {
    throw new InvalidEventError('upcast_failed', [{ path: '/data', message: (e as Error).message }], event);
  }
  const lifted = { ...event, schemaVersion: latest, data };
  const check = checker(event.type, latest, def.latest);
  if (!passes(check, lifted)) throw new InvalidEventError('upcast_failed', problemsOf(check, lifted), event);
  // A signature covers the event as written: keep that form for whoever verifies it.
  if (event.provenance) asWritten.set(lifted, event);
  return lifted as KnownEvent;
}

const asWritten = new WeakMap<object, CairnEvent>();

/** The event as its writer signed it: itself, or the stored version it was upcast from on read. */
export function writtenForm(event: CairnEvent): CairnEvent {
  return asWritten.get(event) ?? event;
}

/** Validates an event of any known version and returns it at the current version. */
export function validateEvent(raw: unknown): KnownEvent {
  return upcast(checkEvent(raw));
}
