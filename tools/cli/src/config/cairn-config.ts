// cairn.yaml: what an operator sets for a site in one file, validated against a published JSON
// Schema (docs/cairn.schema.json, this TypeBox schema), with `${env:NAME}` for values kept out
// of the file (tokens). `cairn config check` and every reader report a mistake with its line.
// Read by `cairn up` and every `cairn run` service (SIEM targets, bandwidth, concurrency, policy
// defaults); `cairn up` records the notification routes it declares (`cairn notify route apply`
// does the same for a site run with `cairn run`).
import { readFile } from 'node:fs/promises';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { LineCounter, isNode, parseDocument, type Document } from 'yaml';
import { DigestSettings, NotificationMatch, NotificationTarget, type NotificationRoute } from '@cairn/contracts';

const Name = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
const TimeoutMs = Type.Integer({ minimum: 1, maximum: 600_000 });

const Syslog = Type.Object({
  kind: Type.Literal('syslog'), name: Name, host: Type.String({ minLength: 1 }), port: Port,
  appName: Type.Optional(Type.String({ minLength: 1, maxLength: 48 })), facility: Type.Optional(Type.Integer({ minimum: 0, maximum: 23 })),
  connectTimeoutMs: Type.Optional(TimeoutMs),
}, { additionalProperties: false, description: 'RFC 5424 syslog over TCP with CEF messages' });
const OcsfHttp = Type.Object({
  kind: Type.Literal('ocsf-http'), name: Name, url: Type.String({ pattern: '^https?://' }),
  headers: Type.Optional(Type.Record(Type.String(), Type.String())), timeoutMs: Type.Optional(TimeoutMs),
}, { additionalProperties: false, description: 'OCSF JSON POSTed to an HTTP endpoint' });
const OcsfFile = Type.Object({
  kind: Type.Literal('ocsf-file'), name: Name, path: Type.String({ minLength: 1 }),
}, { additionalProperties: false, description: 'OCSF JSON lines appended to a file' });
const Hec = Type.Object({
  kind: Type.Literal('hec'), name: Name, url: Type.String({ pattern: '^https?://' }), token: Type.String({ minLength: 1 }),
  timeoutMs: Type.Optional(TimeoutMs),
}, { additionalProperties: false, description: 'Splunk HTTP Event Collector' });

export const AuditTargetConfig = Type.Union([Syslog, OcsfHttp, OcsfFile, Hec]);

/** Bytes per second: a number, or a size per second in IEC units (`20MiB`, `512KiB`, `1GiB`). */
const Rate = Type.Union([
  Type.Integer({ minimum: 1024 }),
  Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?\\s*(B|KiB|MiB|GiB)(/s)?$' }),
], { description: 'bytes per second: a number (at least 1024) or e.g. 20MiB, 512KiB, 1GiB' });
/** A notification route as `cairn notify route add` records it; the name is its id. */
const NotificationRouteConfig = Type.Object({
  name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'the route\'s name (and id): 1-64 letters, digits, - or _' }),
  match: Type.Optional(NotificationMatch),
  target: NotificationTarget,
  digest: Type.Optional(DigestSettings),
}, { additionalProperties: false, description: 'which notices (kinds, severity, sites, VMs) go where (webhook, e-mail, syslog), and how often at most' });
const ClockTime = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' });
const Keep = Type.Integer({ minimum: 0, maximum: 10_000 });

export const CairnConfig = Type.Object({
  site: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z][a-z0-9-]*$', description: 'the site name (default local)' })),
  bandwidth: Type.Optional(Type.Object({
    hostBytesPerSec: Type.Optional(Rate),
    siteBytesPerSec: Type.Optional(Rate),
  }, { additionalProperties: false, description: 'limits of backup and restore transfers: all transfers of one data mover host together, and the site (each mover holds to it); a job\'s own limit comes from its policy or `cairn backup --bandwidth`' })),
  concurrency: Type.Optional(Type.Object({
    maxJobsPerHost: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'backup jobs running at once on one hypervisor host (default 2)' })),
    maxJobsPerRepository: Type.Optional(Type.Integer({ minimum: 1, maximum: 256, description: 'backup jobs writing to one repository at once, whatever their hosts (default: no limit of its own); the others wait, queued' })),
  }, { additionalProperties: false })),
  policyDefaults: Type.Optional(Type.Object({
    window: Type.Optional(Type.Object({ start: ClockTime, end: ClockTime }, { additionalProperties: false, description: 'backup window of a new policy that names none (may wrap midnight)' })),
    retention: Type.Optional(Type.Object({
      last: Type.Optional(Keep), daily: Type.Optional(Keep), weekly: Type.Optional(Keep), monthly: Type.Optional(Keep), yearly: Type.Optional(Keep),
    }, { additionalProperties: false, description: 'retention of a new policy where `cairn policy create` is given none' })),
    bandwidth: Type.Optional(Rate),
  }, { additionalProperties: false, description: 'what `cairn policy create` uses for what it is not told' })),
  notifications: Type.Optional(Type.Object({
    routes: Type.Optional(Type.Array(NotificationRouteConfig, { maxItems: 100, description: 'routes `cairn up` records at start (added, or replaced where they differ; a route left out of the file stays until `cairn notify route remove`)' })),
  }, { additionalProperties: false, description: 'the notifier\'s routes (docs/operations.md, "Notifications")' })),
  audit: Type.Optional(Type.Object({
    targets: Type.Optional(Type.Array(AuditTargetConfig, { description: 'SIEM targets the audit bridge forwards every event to, besides its hash chain' })),
  }, { additionalProperties: false })),
  catalogue: Type.Optional(Type.Object({
    store: Type.Optional(Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')], { description: 'where the catalogue keeps its read models: an SQLite file per replica (default) or one PostgreSQL database shared by every replica of the site' })),
    postgresUrl: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', maxLength: 2048, description: 'postgres://user@host:port/database of `store: postgres` (CAIRN_CATALOGUE_POSTGRES_URL overrides it; keep passwords out of the file: use PGPASSWORD or ~/.pgpass)' })),
  }, { additionalProperties: false, description: 'the catalogue\'s store (docs/operations.md, "The catalogue on PostgreSQL")' })),
}, {
  $id: 'https://cairn.example/cairn.schema.json', title: 'cairn.yaml', additionalProperties: false,
  description: 'Configuration of a Cairn site (docs/operations.md, "Configuration")',
});
export type CairnConfig = Static<typeof CairnConfig>;

export { rateBytesPerSec } from '../units.ts';

/** The notification routes the file declares, as the route decider takes them (name = id). */
export function configRoutes(c: CairnConfig): NotificationRoute[] {
  return (c.notifications?.routes ?? []).map((r) => ({
    routeId: r.name, name: r.name, match: r.match ?? {}, target: r.target, ...(r.digest ? { digest: r.digest } : {}),
  }));
}

/** The published JSON Schema (docs/cairn.schema.json). */
export function cairnConfigJsonSchema(): TSchema {
  return { $schema: 'https://json-schema.org/draft/2020-12/schema', ...CairnConfig };
}

export interface ConfigProblem { readonly line: number; readonly column: number; readonly path: string; readonly message: string }

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: readonly ConfigProblem[]) {
    super(problems.map((p) => `${file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ''}${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/** Where a JSON pointer (`/audit/targets/0/port`) sits in the document: the value's node, else its nearest parent. */
function positionOf(doc: Document, lines: LineCounter, pointer: string): { line: number; column: number } {
  const keys = pointer.split('/').slice(1).map((k) => (/^\d+$/.test(k) ? Number(k) : k.replace(/~1/g, '/').replace(/~0/g, '~')));
  for (let n = keys.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(keys.slice(0, n), true);
    if (isNode(node) && node.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return { line, column: col };
    }
  }
  return { line: 1, column: 1 };
}

/** `${env:NAME}` in a string value is NAME's value; an unset NAME is a problem at that line. */
function substituteEnv(doc: Document, lines: LineCounter, value: unknown, pointer: string, problems: ConfigProblem[]): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = process.env[name];
      if (v === undefined) problems.push({ ...positionOf(doc, lines, pointer), path: pointer, message: `environment variable ${name} is not set` });
      return v ?? '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(doc, lines, v, `${pointer}/${i}`, problems));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteEnv(doc, lines, v, `${pointer}/${k}`, problems)]));
  }
  return value;
}

/** Parses and checks cairn.yaml text; throws ConfigError naming the line of every mistake. */
export function parseCairnConfig(text: string, file = 'cairn.yaml'): CairnConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => {
      const { line, col } = lines.linePos(e.pos[0]);
      return { line, column: col, path: '', message: e.message.split('\n')[0]! };
    }));
  }
  const raw: unknown = doc.toJS() ?? {};
  const problems: ConfigProblem[] = [];
  const value = substituteEnv(doc, lines, raw, '', problems);
  if (problems.length === 0) {
    // One message per place: a union's alternatives each complain; the first says enough.
    const seen = new Set<string>();
    const report = (path: string, message: string) => {
      if (seen.has(path)) return;
      seen.add(path);
      problems.push({ ...positionOf(doc, lines, path), path, message });
    };
    for (const e of Value.Errors(CairnConfig, value)) {
      // A union of kinds (audit targets): the alternative its `kind` names says what is wrong inside.
      const alternatives = (e.schema as { anyOf?: TSchema[] }).anyOf;
      if (alternatives && e.value && typeof e.value === 'object' && !Array.isArray(e.value)) {
        const kinds = alternatives.map((a) => (a as { properties?: { kind?: { const?: string } } }).properties?.kind?.const).filter(Boolean);
        const kind = (e.value as { kind?: unknown }).kind;
        const chosen = alternatives.find((a) => (a as { properties?: { kind?: { const?: string } } }).properties?.kind?.const === kind);
        if (!chosen) report(`${e.path}/kind`, `kind must be one of ${kinds.join(', ')}`);
        else for (const inner of Value.Errors(chosen, e.value)) report(`${e.path}${inner.path}`, inner.message);
        continue;
      }
      report(e.path, e.message);
    }
  }
  if (problems.length === 0) {
    const names = new Set<string>();
    ((value as CairnConfig).notifications?.routes ?? []).forEach((r, i) => {
      if (names.has(r.name)) problems.push({ ...positionOf(doc, lines, `/notifications/routes/${i}/name`), path: `/notifications/routes/${i}/name`, message: `a second route named ${r.name}` });
      names.add(r.name);
    });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return value as CairnConfig;
}

export async function loadCairnConfig(file: string): Promise<CairnConfig> {
  return parseCairnConfig(await readFile(file, 'utf8'), file);
}
