// Key operations reach the log even when they were done offline: the repository keeps each one in
// its key journal (`journal/keys/…`), and whoever can reach the site's log publishes the entries
// the log does not hold yet, the entry id being the event id. The CLI does it for its own act
// right away when a stack runs; the data mover does it for every entry when it starts and then
// every few minutes. The stream `repository-<id>` is read first and the append itself drops an
// id already stored (and JetStream's duplicate window catches two movers racing), so each act
// is one event however often and by whomever it is published.
import { newEvent, type KnownEvent } from '@cairn/contracts';
import type { EventAppender, EventStreamReader } from '@cairn/eventlog';
import type { KeyJournalEntry } from './key-journal.ts';
import type { KeyCustodianRole } from '../roles.ts';

export const keyEventStream = (repositoryId: string): string => `repository-${repositoryId}`;

/** The event that records one journal entry: same id, time and actor whoever builds it. */
export function keyJournalEvent(entry: KeyJournalEntry, site: string): KnownEvent {
  const meta = { site, actor: entry.actor, streamId: keyEventStream(entry.repositoryId), id: entry.id, time: entry.time };
  const common = { repositoryId: entry.repositoryId, ...(entry.host ? { host: entry.host } : {}) };
  switch (entry.act) {
    case 'init':
      return newEvent('RepositoryInitialized', {
        ...common, keyId: entry.keyId, wrapping: entry.wrapping, ...(entry.keyProvider ? { keyProvider: entry.keyProvider } : {}), chunkSize: entry.chunkSize,
      }, meta);
    case 'rotate':
      return newEvent('RepositoryKeyRotated', {
        ...common, keyId: entry.keyId, previousKeyIds: entry.previousKeyIds, wrapping: entry.wrapping,
        ...(entry.keyProvider ? { keyProvider: entry.keyProvider } : {}), openedWith: entry.openedWith,
      }, meta);
    case 'export-recovery':
      return newEvent('RecoveryKeyExported', {
        ...common, fingerprint: entry.fingerprint, openedWith: entry.openedWith, ...(entry.file ? { file: entry.file } : {}),
      }, meta);
  }
}

export interface KeyJournalLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** Appends the entries the log does not hold yet; returns the ids appended now. */
export async function publishKeyJournalEntries(
  log: EventAppender & EventStreamReader, site: string, entries: readonly KeyJournalEntry[], logger?: KeyJournalLogger,
): Promise<string[]> {
  const byStream = new Map<string, KeyJournalEntry[]>();
  for (const e of entries) {
    const s = keyEventStream(e.repositoryId);
    byStream.set(s, [...(byStream.get(s) ?? []), e]);
  }
  const appended: string[] = [];
  for (const [streamId, list] of byStream) {
    const stored = new Set<string>();
    for await (const r of log.readStream(streamId, { onInvalid: () => undefined })) stored.add(r.event.id);
    for (const entry of list) {
      if (stored.has(entry.id)) continue;
      try {
        await log.append(streamId, [keyJournalEvent(entry, site)], { expectedRevision: 'any' });
        appended.push(entry.id);
        logger?.info({ repositoryId: entry.repositoryId, entryId: entry.id, act: entry.act, actor: entry.actor.id, at: entry.time }, 'key operation recorded in the event log');
      } catch (e) {
        logger?.warn({ repositoryId: entry.repositoryId, entryId: entry.id, act: entry.act, err: (e as Error).message }, 'key operation not recorded in the event log (tried again later)');
      }
    }
  }
  return appended;
}

/**
 * Publishes a repository's key journal: the entries not in the log yet. Objects in the journal
 * that fail their MAC check (edited, or written without the keys) are not trusted: each is
 * logged as a warning with its object key (once per key in `warned`).
 */
export async function publishKeyJournal(
  log: EventAppender & EventStreamReader, site: string, repository: Pick<KeyCustodianRole, 'keyJournal' | 'repositoryId'>, logger?: KeyJournalLogger,
  /** Object keys already warned about (each is logged once). */
  warned: Set<string> = new Set(),
): Promise<string[]> {
  const { entries, invalid } = await repository.keyJournal();
  for (const bad of invalid) {
    if (warned.has(bad.key)) continue;
    warned.add(bad.key);
    logger?.warn({ repositoryId: repository.repositoryId, object: bad.key, reason: bad.reason }, 'key journal object ignored: not a valid entry of this repository');
  }
  return publishKeyJournalEntries(log, site, entries, logger);
}
