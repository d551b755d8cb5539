// NATS subject and stream names. Every subject starts with `cairn.<site>` so that sites joined
// through leaf nodes never see each other's traffic by accident (interest crosses leaf links).
//
//   events    cairn.<site>.evt.<category>.<streamId>    (category = streamId before the first '-')
//   commands  cairn.<site>.cmd.<service>.<name>          (request/reply)
//   progress  cairn.<site>.progress.<jobId>              (plain publish, not logged)
//   work      cairn.<site>.work.<queue>                  (JetStream work queue)
//   files     cairn.<site>.filestream.<streamId>         (request/reply: pull the next chunk of a file download)
//   stream    CAIRN_EVT_<SITE>                           (one event stream per site)
//   replication  cairn.<target>.repl.<source>.<op>       (request/reply, source site -> target site)

export class InvalidSubjectError extends Error {
  override readonly name = 'InvalidSubjectError';
  constructor(message: string, readonly value: string) {
    super(message);
  }
}

const ROOT = 'cairn';
const SITE = /^[a-z0-9][a-z0-9-]{0,62}$/;
// A token may not be empty, nor contain the separator, the wildcards or whitespace.
const BAD_TOKEN_CHARS = /[.*>\s]/u;

export function isValidToken(token: string): boolean {
  return token.length > 0 && !BAD_TOKEN_CHARS.test(token);
}

/** Throws InvalidSubjectError unless `token` can stand as one subject token. */
export function assertToken(token: string, what: string): string {
  if (typeof token !== 'string' || !isValidToken(token)) {
    throw new InvalidSubjectError(
      `${what} ${JSON.stringify(token)} is not a valid subject token (non-empty, no '.', '*', '>' or whitespace)`,
      String(token),
    );
  }
  return token;
}

/** Throws InvalidSubjectError unless `site` is a site name (lowercase letters, digits, '-'). */
export function assertSite(site: string): string {
  if (typeof site !== 'string' || !SITE.test(site)) {
    throw new InvalidSubjectError(`site ${JSON.stringify(site)} is not a site name (^[a-z0-9][a-z0-9-]{0,62}$)`, String(site));
  }
  return site;
}

/** The category of a stream: the part of its id before the first '-' (`job-42` -> `job`). */
export function streamCategory(streamId: string): string {
  assertToken(streamId, 'stream id');
  const dash = streamId.indexOf('-');
  if (dash <= 0 || dash === streamId.length - 1) {
    throw new InvalidSubjectError(`stream id ${JSON.stringify(streamId)} must look like <category>-<id>`, streamId);
  }
  return streamId.slice(0, dash);
}

export function eventSubject(site: string, streamId: string): string {
  return `${ROOT}.${assertSite(site)}.evt.${streamCategory(streamId)}.${streamId}`;
}

/** Subject filter for a site's events, optionally one category only. */
export function eventSubjectFilter(site: string, category?: string): string {
  const base = `${ROOT}.${assertSite(site)}.evt`;
  return category === undefined ? `${base}.>` : `${base}.${assertToken(category, 'category')}.*`;
}

export interface EventSubjectParts { site: string; category: string; streamId: string }

export function parseEventSubject(subject: string): EventSubjectParts {
  const parts = subject.split('.');
  if (parts.length !== 5 || parts[0] !== ROOT || parts[2] !== 'evt') {
    throw new InvalidSubjectError(`${JSON.stringify(subject)} is not an event subject (cairn.<site>.evt.<category>.<streamId>)`, subject);
  }
  const [, site = '', , category = '', streamId = ''] = parts;
  assertSite(site);
  if (streamCategory(streamId) !== category) {
    throw new InvalidSubjectError(`${JSON.stringify(subject)}: category ${category} does not match stream id ${streamId}`, subject);
  }
  return { site, category, streamId };
}

export function commandSubject(site: string, service: string, name: string): string {
  return `${ROOT}.${assertSite(site)}.cmd.${assertToken(service, 'service')}.${assertToken(name, 'command name')}`;
}

export interface CommandSubjectParts { site: string; service: string; name: string }

export function parseCommandSubject(subject: string): CommandSubjectParts {
  const parts = subject.split('.');
  if (parts.length !== 5 || parts[0] !== ROOT || parts[2] !== 'cmd') {
    throw new InvalidSubjectError(`${JSON.stringify(subject)} is not a command subject (cairn.<site>.cmd.<service>.<name>)`, subject);
  }
  const [, site = '', , service = '', name = ''] = parts;
  assertSite(site);
  assertToken(service, 'service');
  assertToken(name, 'command name');
  return { site, service, name };
}

export function progressSubject(site: string, jobId: string): string {
  return `${ROOT}.${assertSite(site)}.progress.${assertToken(jobId, 'job id')}`;
}

/** A file download opened on a data mover (OpenFileDownload): each request pulls its next chunk. */
export function fileStreamSubject(site: string, streamId: string): string {
  return `${ROOT}.${assertSite(site)}.filestream.${assertToken(streamId, 'stream id')}`;
}

export function workSubject(site: string, queue: string): string {
  return `${ROOT}.${assertSite(site)}.work.${assertToken(queue, 'queue')}`;
}

/** JetStream stream holding a site's events: `CAIRN_EVT_<SITE>` ('-' becomes '_'). */
export function eventStreamName(site: string): string {
  return `CAIRN_EVT_${assertSite(site).toUpperCase().replaceAll('-', '_')}`;
}

/**
 * Replication transfer from `source` to `target` (request/reply, served at the target):
 * `cairn.<target>.repl.<source>.<op>`. Only the replication identity uses these across sites.
 */
export function replicationSubject(target: string, source: string, op: string): string {
  return `${ROOT}.${assertSite(target)}.repl.${assertSite(source)}.${assertToken(op, 'operation')}`;
}

/** The hub's site health report (`cairn site list` at the hub, `GET /v1/sites/health` at its gateway); answered by the hub's site health watch. */
export const SITE_HEALTH_SUBJECT = 'cairn.hub.query.sites.health';
