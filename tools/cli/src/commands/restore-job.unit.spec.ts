// The restore follower's end without reading the whole stream (restore-job.ts): the events pushed
// on the stream's subject stand for it only when they follow the first read without a gap, no
// revision came twice with different events, the connection never dropped, and the stream's last
// event (one read) is the ending event pushed; otherwise the follower reads the stream.
import { describe, expect, it } from 'vitest';
import type { KnownEvent } from '@cairn/contracts';
import { handleCommand, InMemoryEventLog, type EventLog } from '@cairn/eventlog';
import { restoreDecider, type RestoreCommand } from '@cairn/jobs';
import { PushedRestoreEvents, stateFromPushes } from './restore-job.ts';

const SITE = 'site-a';
const ENDINGS: ReadonlySet<string> = new Set(['RestoreCompleted', 'RestoreFailed']);
const actor = { kind: 'service' as const, id: 'data-mover' };
const STREAM = 'restore-r-1';
const subject = `cairn.${SITE}.evt.restore.${STREAM}`;

/** A restore's whole life in a log: requested, started, one disk written, completed (revisions 0–3). */
async function restoreLog(end: RestoreCommand = { kind: 'complete', durationMs: 5 }): Promise<{ log: InMemoryEventLog; events: KnownEvent[] }> {
  const log = new InMemoryEventLog(SITE);
  const commands: RestoreCommand[] = [
    { kind: 'request', data: { restoreId: 'r-1', restorePointId: 'rp-1', repository: 'default', target: { kind: 'file', disk: 'disk0', path: '/tmp/r.raw', format: 'raw', overwrite: false }, ownTarget: true } },
    { kind: 'start', worker: 'w-1', plan: { source: 'local', sourceLocation: '/repo', disks: [{ disk: 'disk0', path: '/tmp/r.raw', partialPath: '/tmp/r.raw.part', format: 'raw', sizeBytes: 1024 }] } },
    { kind: 'diskWritten', disk: 'disk0', sizeBytes: 1024, actorPath: '/tmp/r.raw' },
    end,
  ];
  for (const c of commands) await handleCommand(log, STREAM, restoreDecider, c, { meta: { site: SITE, actor, correlationId: 'r-1', causationId: null } });
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(STREAM)) events.push(r.event);
  return { log, events };
}

const bytes = (e: KnownEvent): Uint8Array => new TextEncoder().encode(JSON.stringify(e));

describe('PushedRestoreEvents', () => {
  it('the read and the pushes after it, without a gap, make the stream up to the ending event', async () => {
    const { log, events } = await restoreLog();
    expect(events.map((e) => e.type)).toEqual(['RestoreRequested', 'RestoreStarted', 'DiskRestored', 'RestoreCompleted']);
    const p = new PushedRestoreEvents();
    // The subscription is made before the read: a push of an event the read returns too changes nothing.
    p.push(bytes(events[1]!), '1', subject);
    p.read({ events: events.slice(0, 2), revision: 1 });
    p.push(bytes(events[2]!), '2', subject);
    expect(p.ending(ENDINGS)).toBeUndefined();
    p.push(bytes(events[3]!), '3', subject);
    expect(p.ending(ENDINGS)).toBe(3);
    expect(p.through(3)?.map((e) => e.id)).toEqual(events.map((e) => e.id));
    const st = await stateFromPushes(log, 'r-1', p);
    expect(st?.status).toBe('completed');
    expect(st?.written.has('disk0')).toBe(true);
  });

  it('a gap, two events at one revision, a dropped connection or a read that skipped one: the stream is read instead', async () => {
    const { events } = await restoreLog();
    const base = { events: events.slice(0, 2), revision: 1 };
    const gap = new PushedRestoreEvents();
    gap.read(base);
    gap.push(bytes(events[3]!), '3', subject);
    expect(gap.through(3)).toBeUndefined();

    // A publish JetStream refused still reaches the subscribers, with the revision it asked for.
    const twice = new PushedRestoreEvents();
    twice.read(base);
    twice.push(bytes(events[2]!), '2', subject);
    twice.push(bytes({ ...events[2]!, id: 'another' } as KnownEvent), '2', subject);
    twice.push(bytes(events[3]!), '3', subject);
    expect(twice.through(3)).toBeUndefined();

    const contradicts = new PushedRestoreEvents();
    contradicts.read(base);
    contradicts.push(bytes({ ...events[1]!, id: 'another' } as KnownEvent), '1', subject);
    contradicts.push(bytes(events[2]!), '2', subject);
    contradicts.push(bytes(events[3]!), '3', subject);
    expect(contradicts.through(3)).toBeUndefined();

    const dropped = new PushedRestoreEvents();
    dropped.read(base);
    dropped.push(bytes(events[2]!), '2', subject);
    dropped.spoil();
    dropped.push(bytes(events[3]!), '3', subject);
    expect(dropped.through(3)).toBeUndefined();

    const skipped = new PushedRestoreEvents();
    skipped.read({ events: [events[0]!], revision: 1 });
    skipped.push(bytes(events[2]!), '2', subject);
    skipped.push(bytes(events[3]!), '3', subject);
    expect(skipped.through(3)).toBeUndefined();

    const noRevision = new PushedRestoreEvents();
    noRevision.read(base);
    noRevision.push(bytes(events[2]!), undefined, subject);
    noRevision.push(bytes(events[3]!), '3', subject);
    expect(noRevision.through(3)).toBeUndefined();
  });

  it('an ending event pushed but not the stream\'s last record (refused, or not stored yet) is not believed', async () => {
    const { log, events } = await restoreLog();
    const p = new PushedRestoreEvents();
    p.read({ events: events.slice(0, 2), revision: 1 });
    p.push(bytes(events[2]!), '2', subject);
    // RestoreFailed pushed at revision 3, while the stream holds RestoreCompleted there.
    const failed = (await restoreLog({ kind: 'fail', code: 'failed', reason: 'another writer' })).events[3]!;
    expect(failed.type).toBe('RestoreFailed');
    p.push(bytes(failed), '3', subject);
    expect(p.through(3)).toHaveLength(4);
    expect(await stateFromPushes(log, 'r-1', p)).toBeUndefined();
    // An event log that cannot read the last event alone: the stream is read.
    const { lastEvent: _unused, ...withoutLast } = log as unknown as Record<string, unknown>;
    void _unused;
    const plain = { ...withoutLast, readStream: log.readStream.bind(log) } as unknown as EventLog;
    const ok = new PushedRestoreEvents();
    ok.read({ events: events.slice(0, 3), revision: 2 });
    ok.push(bytes(events[3]!), '3', subject);
    expect(await stateFromPushes(plain, 'r-1', ok)).toBeUndefined();
    expect((await stateFromPushes(log, 'r-1', ok))?.status).toBe('completed');
  });
});
