// The key journal: one small object per key operation (`journal/keys/<time>-<entry id>`), written
// by the repository itself whenever it is created, its keys are re-wrapped or its recovery key is
// exported. Those acts run wherever the repository is opened, offline too, so the journal is
// what makes sure none of them is lost: the data mover publishes every entry to the site's event
// log with the entry id as the event id (once, whoever publishes first). An entry holds who, when,
// where and which key object, never a secret; it carries a MAC under a key derived from the id
// key, so nobody without the repository's keys can add or alter one unnoticed.
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { Backend } from '../backend/backend.ts';
import { canonicalJson } from '../format/canonical-json.ts';
import type { MasterKeys } from './master-keys.ts';

export const KEY_JOURNAL_PREFIX = 'journal/keys/';

const KeyActor = Type.Object({
  kind: Type.Union([Type.Literal('user'), Type.Literal('service')]),
  id: Type.String({ minLength: 1, maxLength: 256 }),
}, { additionalProperties: false });
export type KeyActor = Static<typeof KeyActor>;

const Wrapping = Type.Union([Type.Literal('passphrase'), Type.Literal('key-provider')]);
const OpenedWithSchema = Type.Union([Type.Literal('passphrase'), Type.Literal('key-provider'), Type.Literal('recovery-key')]);
export type KeyWrapping = Static<typeof Wrapping>;
export type OpenedWith = Static<typeof OpenedWithSchema>;

const KeyIdSchema = Type.String({ pattern: '^[0-9a-f]{8,64}$' });
const Base = {
  version: Type.Literal(1),
  /** A UUID: the id of the event that records the act. */
  id: Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' }),
  time: Type.String({ minLength: 20, maxLength: 40 }),
  repositoryId: Type.String({ minLength: 1, maxLength: 200 }),
  actor: KeyActor,
  host: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
};

const EntrySchema = Type.Union([
  Type.Object({
    ...Base, act: Type.Literal('init'), keyId: KeyIdSchema, wrapping: Wrapping,
    keyProvider: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })), chunkSize: Type.Integer({ minimum: 1 }),
  }, { additionalProperties: false }),
  Type.Object({
    ...Base, act: Type.Literal('rotate'), keyId: KeyIdSchema, previousKeyIds: Type.Array(KeyIdSchema, { maxItems: 256 }), wrapping: Wrapping,
    keyProvider: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })), openedWith: OpenedWithSchema,
  }, { additionalProperties: false }),
  Type.Object({
    ...Base, act: Type.Literal('export-recovery'), fingerprint: Type.String({ pattern: '^[0-9a-f]{16}$' }), openedWith: OpenedWithSchema,
    file: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
  }, { additionalProperties: false }),
]);
/** One key operation as the journal records it. */
export type KeyJournalEntry = Static<typeof EntrySchema>;
type Distribute<T> = T extends unknown ? Omit<T, 'version' | 'id' | 'time' | 'repositoryId' | 'actor' | 'host'> : never;
/** What the caller of an act knows; id, time, host and the repository id are filled in. */
export type KeyAct = Distribute<KeyJournalEntry>;

/** Who and where, for an act recorded in the journal. Default: the OS user (or $CAIRN_USER) on this host. */
export interface KeyActContext {
  readonly actor?: KeyActor;
  readonly host?: string;
}

/** A journal object that is not a valid entry of this repository (damaged, or written without its keys). */
export interface InvalidJournalObject {
  readonly key: string;
  readonly reason: string;
}

export function defaultKeyActor(): KeyActor {
  const fromEnv = process.env['CAIRN_USER'];
  if (fromEnv) return { kind: 'user', id: fromEnv.slice(0, 256) };
  try {
    return { kind: 'user', id: userInfo().username || 'unknown' };
  } catch {
    return { kind: 'user', id: 'unknown' };
  }
}

const macKey = (idKey: Uint8Array): Buffer => createHmac('sha256', idKey).update('cairn/key-journal-mac/v1').digest();
const macOf = (idKey: Uint8Array, entry: KeyJournalEntry): Buffer => createHmac('sha256', macKey(idKey)).update(canonicalJson(entry)).digest();

/** `journal/keys/20261125T030102123Z-<uuid>`: lists in time order. */
export function journalEntryKey(entry: Pick<KeyJournalEntry, 'time' | 'id'>): string {
  return `${KEY_JOURNAL_PREFIX}${entry.time.replace(/[-:.]/g, '')}-${entry.id}`;
}

/**
 * Keyed fingerprint of the recovery key (16 hex digits): the same for the same master keys,
 * and without the keys nobody can tell which key it belongs to or learn anything of it.
 */
export function recoveryKeyFingerprint(keys: MasterKeys): string {
  return createHmac('sha256', Buffer.concat([keys.dataKey, keys.idKey])).update('cairn/recovery-key-fingerprint/v1').digest('hex').slice(0, 16);
}

export function newJournalEntry(repositoryId: string, act: KeyAct, context: KeyActContext = {}, now = new Date()): KeyJournalEntry {
  let host = context.host;
  if (host === undefined) {
    try { host = hostname(); } catch { host = undefined; }
  }
  const entry = {
    version: 1, id: randomUUID(), time: now.toISOString(), repositoryId, actor: context.actor ?? defaultKeyActor(),
    ...(host ? { host: host.slice(0, 256) } : {}), ...act,
  } as KeyJournalEntry;
  if (!Value.Check(EntrySchema, entry)) {
    const first = [...Value.Errors(EntrySchema, entry)][0];
    throw new TypeError(`invalid key journal entry: ${first?.path ?? '?'} ${first?.message ?? ''}`);
  }
  return entry;
}

/** Writes one entry (never replaces one). */
export async function writeJournalEntry(backend: Backend, idKey: Uint8Array, entry: KeyJournalEntry): Promise<string> {
  const key = journalEntryKey(entry);
  const body = { ...entry, mac: macOf(idKey, entry).toString('hex') };
  await backend.put(key, Buffer.from(JSON.stringify(body, null, 2) + '\n'), { ifNotExists: true });
  return key;
}

function parseEntry(key: string, bytes: Uint8Array, idKey: Uint8Array, repositoryId: string): KeyJournalEntry | string {
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return 'not valid JSON';
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a journal entry';
  const { mac, ...entry } = raw as Record<string, unknown>;
  if (typeof mac !== 'string' || !/^[0-9a-f]{64}$/.test(mac)) return 'no MAC';
  if (!Value.Check(EntrySchema, entry)) return 'not a journal entry';
  const want = macOf(idKey, entry);
  if (!timingSafeEqual(Buffer.from(mac, 'hex'), want)) return 'its MAC does not match (edited, or written without the repository\'s keys)';
  if (entry.repositoryId !== repositoryId) return `it belongs to repository ${entry.repositoryId}`;
  if (journalEntryKey(entry) !== key) return 'its name does not match its id and time';
  return entry;
}

/** Every entry in time order, and the objects that are not valid entries of this repository. */
export async function readKeyJournal(
  backend: Backend, idKey: Uint8Array, repositoryId: string,
): Promise<{ entries: KeyJournalEntry[]; invalid: InvalidJournalObject[] }> {
  const keys: string[] = [];
  for await (const o of backend.list(KEY_JOURNAL_PREFIX)) keys.push(o.key);
  keys.sort();
  const entries: KeyJournalEntry[] = [];
  const invalid: InvalidJournalObject[] = [];
  for (const key of keys) {
    const parsed = parseEntry(key, await backend.get(key), idKey, repositoryId);
    if (typeof parsed === 'string') invalid.push({ key, reason: parsed });
    else entries.push(parsed);
  }
  return { entries, invalid };
}
