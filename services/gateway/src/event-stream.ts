// The console's live feed, as pure rules: which events a caller's roles may see, how an event
// becomes a server-sent-events frame, and where a (re)connecting client resumes. The frame's
// `id` is the event's global log position, so a browser's automatic `Last-Event-ID` after a
// reconnect (a gateway restart, a network cut) resumes exactly after the last event it showed.
import { allows, type Role } from '@cairn/contracts';

/**
 * Streams of people, tokens, access decisions, approvals and repository keys: administrators
 * and auditors see them; operators and restore operators see the backup and restore work.
 */
const RESTRICTED_CATEGORIES: ReadonlySet<string> = new Set(['user', 'token', 'access', 'approval', 'repository']);

export function streamCategoryOf(streamId: string): string {
  const dash = streamId.indexOf('-');
  return dash < 0 ? streamId : streamId.slice(0, dash);
}

export function eventVisibleTo(roles: readonly Role[], event: { streamId: string }): boolean {
  if (!allows(roles, 'read')) return false;
  if (roles.includes('administrator') || roles.includes('auditor')) return true;
  return !RESTRICTED_CATEGORIES.has(streamCategoryOf(event.streamId));
}

/** One SSE frame; `data` is JSON on a single line (JSON.stringify never emits a raw newline). */
export function sseFrame(frame: { id?: string; event?: string; data: unknown }): string {
  let out = '';
  if (frame.event) out += `event: ${frame.event}\n`;
  if (frame.id !== undefined) out += `id: ${frame.id}\n`;
  return `${out}data: ${JSON.stringify(frame.data, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n\n`;
}

export class ResumeError extends Error {
  override readonly name = 'ResumeError';
}

/**
 * Where the stream starts: after `Last-Event-ID` (a reconnect), else after `?after=` (a page
 * that already shows events up to there), else at the log's head (only what happens next).
 */
export function resumeFrom(lastEventId: unknown, after: unknown): bigint | 'head' {
  const given = typeof lastEventId === 'string' && lastEventId.trim() !== '' ? lastEventId.trim() : typeof after === 'string' && after !== '' ? after : undefined;
  if (given === undefined) return 'head';
  if (!/^\d{1,19}$/.test(given)) throw new ResumeError(`resume position ${JSON.stringify(given.slice(0, 40))} is not a log position (a non-negative integer)`);
  return BigInt(given);
}
