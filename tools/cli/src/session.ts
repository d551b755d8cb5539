// How a CLI command reaches a running Cairn: the NATS URL and site from flags, environment
// or the state file `cairn up` writes into its data directory, and the operator as actor.
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Command } from 'commander';
import type { Actor } from '@cairn/contracts';
import type { CatalogueClient } from '@cairn/catalogue-client';
import type { CommandBus } from '@cairn/messaging/command-bus';
import type { EventLog } from '@cairn/eventlog';
import { CliError, EXIT } from './cli-error.ts';
import { commonJs } from './lazy-import.ts';
import type { OperatorKey } from './operator-key.ts';
// Start-up (docs/benchmarks.md "CLI start-up"): this module and the command definitions load at
// every start, so everything heavy (the NATS client, the command bus with NestJS and
// OpenTelemetry, the event log) is imported when a session first needs it.

export const DEFAULT_DATA_DIR = '.cairn';
export const STATE_FILE = 'stack.json';
/** The hub's site name (its stack.json says so): `cairn --data <hub> --site <name>` acts at that site through the hub. */
const HUB_SITE = 'hub';

export interface StackState {
  readonly natsUrl: string;
  readonly site: string;
  readonly gatewayUrl?: string;
  readonly pid: number;
  readonly dataDir: string;
  /** Set when the stack runs secure: the CLI connects as the site's `admin` identity from here. */
  readonly securityDir?: string;
  /** Secure stacks: the local operator's user and key file (`cairn up` made them); the CLI signs with it. */
  readonly operator?: { readonly userId: string; readonly keyFile: string };
}

export interface GlobalOptions {
  readonly json?: boolean;
  readonly nats?: string;
  readonly site?: string;
  readonly data?: string;
  readonly operatorKey?: string;
}

export interface Session {
  readonly nc: NatsConnection;
  readonly site: string;
  readonly actor: Actor;
  /** The key commands are signed with, when there is one. */
  readonly operatorKey?: OperatorKey;
  /** Sends commands; the bus (and what it loads) is made on the first send. */
  readonly bus: Pick<CommandBus, 'send'>;
  readonly catalogue: CatalogueClient;
  /** The site's event log on this connection; on a secure site what it appends is signed as the site's `admin`. */
  eventLog(): Promise<EventLog>;
  /** Signs what this connection appends (secure sites); eventLog() does it too. */
  bindSigning(): Promise<void>;
  readonly json: boolean;
  /** A secure site's security directory (identity keys, for `cairn audit verify`). */
  readonly securityDir?: string;
  close(): Promise<void>;
}

export function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals() as GlobalOptions;
}

export async function readStackState(dataDir: string): Promise<StackState | undefined> {
  try {
    return JSON.parse(await readFile(join(resolve(dataDir), STATE_FILE), 'utf8')) as StackState;
  } catch {
    return undefined;
  }
}

export function operator(): Actor {
  return { kind: 'user', id: process.env['CAIRN_USER'] ?? userInfo().username };
}

/**
 * The key to sign with: `--operator-key`, else `CAIRN_OPERATOR_KEY`, else the key `cairn up`
 * made for the local operator (when CAIRN_USER does not name someone else). None: unsigned.
 */
export async function operatorKeyFor(g: GlobalOptions, state: StackState | undefined): Promise<OperatorKey | undefined> {
  const explicit = g.operatorKey ?? process.env['CAIRN_OPERATOR_KEY'];
  const user = process.env['CAIRN_USER'];
  const file = explicit ?? (state?.operator && (!user || user === state.operator.userId) ? state.operator.keyFile : undefined);
  if (!file) return undefined;
  try {
    const { loadOperatorKey } = await import('./operator-key.ts');
    return await loadOperatorKey(file);
  } catch (e) {
    throw new CliError((e as Error).message, EXIT.usage, 'pass the file `cairn user key add` wrote (--operator-key <file> or CAIRN_OPERATOR_KEY)');
  }
}

/** The actor: CAIRN_USER, else the key's user, else the OS user. */
export function actorFor(key: OperatorKey | undefined): Actor {
  const user = process.env['CAIRN_USER'];
  if (key && user && user !== key.userId) {
    throw new CliError(`the operator key ${key.file} belongs to ${key.userId}, not to CAIRN_USER=${user}`, EXIT.usage);
  }
  return key ? { kind: 'user', id: key.userId } : operator();
}

/**
 * What a command will need once its session is open, loaded while the connection is made (the
 * TLS handshake and the server's replies leave this thread idle): `bus` for a command that
 * sends, `eventLog` for one that reads a job's stream, `also` for the command's own modules.
 */
export interface Preload {
  readonly bus?: boolean;
  readonly eventLog?: boolean;
  readonly also?: () => Promise<unknown>;
}

/** Starts loading what `p` names; a failure shows where the module is imported for use. */
function preload(p: Preload): void {
  const ignore = () => undefined;
  if (p.bus) import('@cairn/messaging/command-bus').catch(ignore);
  if (p.eventLog) import('@cairn/eventlog').catch(ignore);
  p.also?.().catch(ignore);
}

export async function openSession(cmd: Command, load: Preload = {}): Promise<Session> {
  const g = globals(cmd);
  const state = await readStackState(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR);
  const natsUrl = g.nats ?? process.env['CAIRN_NATS_URL'] ?? state?.natsUrl;
  const site = g.site ?? process.env['CAIRN_SITE'] ?? state?.site ?? 'local';
  const viaHub = state?.site === HUB_SITE && site !== HUB_SITE && !g.nats && !process.env['CAIRN_NATS_URL'];
  if (!natsUrl) {
    throw new CliError('no running Cairn found', EXIT.unavailable,
      'start one with `npx cairn up` (in another terminal), or pass --nats <url> / set CAIRN_NATS_URL');
  }
  let nc: NatsConnection;
  const securityDir = process.env['CAIRN_NATS_SECURITY_DIR'] ?? state?.securityDir;
  // The catalogue client loads while the connection is made.
  const catalogueLib = import('@cairn/catalogue-client');
  preload(load);
  let security: import('@cairn/nats-security').SiteSecurity | undefined;
  try {
    const { connect } = await commonJs(import('@nats-io/transport-node'));
    let auth = {};
    if (securityDir) {
      const { identityConnectOptions, loadSiteSecurity } = await import('@cairn/nats-security');
      security = await loadSiteSecurity(securityDir);
      auth = identityConnectOptions(security.credentials('admin'));
    }
    // A cluster's address is its members' URLs joined by commas (natsServers in libs/contracts,
    // not imported here: the CLI starts without the contracts' schemas).
    nc = await connect({ servers: natsUrl.split(',').map((s) => s.trim()).filter(Boolean), timeout: 3000, ...auth, name: 'cairn-cli' });
  } catch (e) {
    throw new CliError(`cannot reach NATS at ${natsUrl}: ${(e as Error).message}`, EXIT.unavailable,
      'is `cairn up` still running? start it again, or pass the right --nats <url>');
  }
  let key: OperatorKey | undefined;
  let actor: Actor;
  let CatalogueClientClass: typeof CatalogueClient;
  try {
    key = await operatorKeyFor(g, state);
    actor = actorFor(key);
    CatalogueClientClass = (await catalogueLib).CatalogueClient;
  } catch (e) {
    await nc.close();
    throw e;
  }
  let bus: Promise<CommandBus> | undefined;
  const commandBus = (): Promise<CommandBus> => (bus ??= import('@cairn/messaging/command-bus').then(({ CommandBus: Bus }) =>
    new Bus(nc, { site, actor, defaultTimeoutMs: 15_000, ...(key ? { signer: key.signer } : {}) })));
  let signing: Promise<void> | undefined;
  let eventLog: Promise<EventLog> | undefined;
  // What the CLI appends (repository key events) is signed as the site's `admin`.
  const bindSigning = (): Promise<void> => (signing ??= security
    ? import('./stack/event-provenance.ts').then(({ signEventsAs }) => signEventsAs(nc, security!, 'admin'))
    : Promise.resolve());
  return {
    nc, site, actor, ...(key ? { operatorKey: key } : {}), ...(securityDir ? { securityDir } : {}),
    bus: { send: ((...args: Parameters<CommandBus['send']>) => commandBus().then((b) => b.send(...args))) as CommandBus['send'] },
    // At the hub, another site's records come from the hub's catalogue (every site's, by site);
    // its commands go to the site itself over the leaf link, signed by the person (issue 24).
    catalogue: viaHub ? new (await catalogueLib).SiteViewCatalogueClient(nc, site) : new CatalogueClientClass(nc, { site }),
    json: Boolean(g.json),
    bindSigning,
    // One event log per session: each one asks JetStream for the stream's info when made, and a
    // command that follows a job reads its stream several times (a failed open is not kept).
    eventLog: () => (eventLog ??= (async () => {
      await bindSigning();
      const { createJetStreamEventLog } = await import('@cairn/eventlog');
      return createJetStreamEventLog({ nc, site, createStream: false });
    })().catch((e: unknown) => { eventLog = undefined; throw e; })),
    close: () => nc.close(),
  };
}

/** Runs a command body with a session, closing it whatever happens. */
export async function withSession<T>(cmd: Command, body: (s: Session) => Promise<T>, load?: Preload): Promise<T> {
  const s = await openSession(cmd, load);
  try {
    return await body(s);
  } finally {
    await s.close().catch(() => undefined);
  }
}

/** Prints a value as JSON (with --json) or through the human formatter. */
export function output(s: { json: boolean }, value: unknown, human: () => string): void {
  process.stdout.write(s.json ? JSON.stringify(value, null, 2) + '\n' : human() + '\n');
}

export function table(rows: ReadonlyArray<Record<string, unknown>>, columns: readonly string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? '')));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: readonly string[]) => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n; let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
