// `cairn notify route add|list|remove|test`: the notifier's routes, recorded in the log
// (`notifyroute-<name>`, through the route decider with the revision read) by the operator's
// CLI; the notifier follows them. `test` sends a test message through the route from here, so
// a wrong address, password or certificate shows at once. docs/operations.md "Notifications".
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import type { EventLog } from '@cairn/eventlog';
import type { NotificationKind, NotificationRoute, NotificationSeverity, NotificationTarget } from '@cairn/contracts';
import type { Notice } from '@cairn/notifications';
import { CliError, EXIT } from '../cli-error.ts';
import { output, table, withSession, type Session } from '../session.ts';

interface AddOptions {
  webhook?: string; format?: string;
  email?: string; smtp?: string; from?: string; smtpUser?: string; passwordEnv?: string; smtpSecurity?: string;
  syslog?: string; tls?: boolean; caFile?: string;
  kinds?: string; minSeverity?: string; sites?: string; vms?: string;
  groupWait?: string; maxGroupWait?: string; interval?: string;
}

const list = (v: string | undefined) => (v ?? '').split(',').map((x) => x.trim()).filter(Boolean);
const ROUTE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

function hostPort(v: string, what: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m) throw new CliError(`${what} must be host:port, not ${v}`, EXIT.usage);
  return { host: m[1]!, port: Number(m[2]) };
}

function integer(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`${what} must be a whole number ≥ 0, not ${v}`, EXIT.usage);
  return n;
}

/** The route the options describe (the schema checks the rest when it is recorded). */
export function routeFromOptions(name: string, o: AddOptions): NotificationRoute {
  if (!ROUTE_NAME.test(name)) throw new CliError(`route name ${JSON.stringify(name)} must be 1–64 letters, digits, - or _`, EXIT.usage);
  const chosen = [o.webhook, o.email, o.syslog].filter((x) => x !== undefined).length;
  if (chosen !== 1) throw new CliError('name one target: --webhook <url>, --email <addresses> (with --smtp and --from) or --syslog <host:port>', EXIT.usage);
  let target: NotificationTarget;
  if (o.webhook !== undefined) {
    const format = o.format ?? 'json';
    if (!['json', 'slack', 'teams'].includes(format)) throw new CliError(`--format is json, slack or teams, not ${format}`, EXIT.usage);
    target = { kind: 'webhook', url: o.webhook, format: format as 'json' | 'slack' | 'teams' };
  } else if (o.email !== undefined) {
    if (!o.smtp || !o.from) throw new CliError('an e-mail route needs --smtp <host:port> and --from <address>', EXIT.usage);
    const security = o.smtpSecurity ?? 'starttls';
    if (!['starttls', 'tls', 'none'].includes(security)) throw new CliError(`--smtp-security is starttls, tls or none, not ${security}`, EXIT.usage);
    target = {
      kind: 'email', ...hostPort(o.smtp, '--smtp'), security: security as 'starttls' | 'tls' | 'none', from: o.from, to: list(o.email),
      ...(o.smtpUser ? { user: o.smtpUser } : {}), ...(o.passwordEnv ? { passwordEnv: o.passwordEnv } : {}), ...(o.caFile ? { caFile: o.caFile } : {}),
    };
  } else {
    target = { kind: 'syslog', ...hostPort(o.syslog!, '--syslog'), ...(o.tls ? { tls: true } : {}), ...(o.caFile ? { caFile: o.caFile } : {}) };
  }
  const groupWaitSeconds = integer(o.groupWait, '--group-wait');
  const maxGroupWaitSeconds = integer(o.maxGroupWait, '--max-group-wait');
  const intervalMinutes = integer(o.interval, '--interval');
  const digest = {
    ...(groupWaitSeconds !== undefined ? { groupWaitSeconds } : {}),
    ...(maxGroupWaitSeconds !== undefined ? { maxGroupWaitSeconds } : {}),
    ...(intervalMinutes !== undefined ? { intervalMinutes } : {}),
  };
  return {
    routeId: name, name,
    match: {
      ...(o.kinds ? { kinds: list(o.kinds) as NotificationKind[] } : {}),
      ...(o.minSeverity ? { minSeverity: o.minSeverity as NotificationSeverity } : {}),
      ...(o.sites ? { sites: list(o.sites) } : {}),
      ...(o.vms ? { vmIds: list(o.vms) } : {}),
    },
    target,
    ...(Object.keys(digest).length ? { digest } : {}),
  };
}

/** The libraries the route commands use, loaded when one runs (not at every start of the CLI). */
async function libraries() {
  const [{ handleCommand, WrongExpectedRevisionError }, { InvalidEventError }, { addToGroup, createTransport, messageOf, routeDecider, RouteRefused, routeStreamId }] =
    await Promise.all([import('@cairn/eventlog'), import('@cairn/contracts'), import('@cairn/notifications')]);
  return { handleCommand, WrongExpectedRevisionError, InvalidEventError, addToGroup, createTransport, messageOf, routeDecider, RouteRefused, routeStreamId };
}
type Libraries = Awaited<ReturnType<typeof libraries>>;

async function withLog<T>(cmd: Command, body: (s: Session, log: EventLog, lib: Libraries) => Promise<T>): Promise<T> {
  return withSession(cmd, async (s) => {
    const { RouteRefused, InvalidEventError, WrongExpectedRevisionError, ...lib } = await libraries();
    // On a secure site what the CLI appends is signed as the site's admin (session.ts).
    const log = await s.eventLog();
    try {
      return await body(s, log, { RouteRefused, InvalidEventError, WrongExpectedRevisionError, ...lib });
    } catch (e) {
      if (e instanceof RouteRefused) throw new CliError(e.message, e.code === 'not_found' ? EXIT.notFound : EXIT.usage, e.code === 'not_found' ? '`cairn notify route list` shows the routes' : undefined);
      if (e instanceof InvalidEventError) throw new CliError(`the route is not valid: ${e.message}`, EXIT.usage);
      if (e instanceof WrongExpectedRevisionError) throw new CliError(`someone else changed the route at the same time: ${e.message}`, EXIT.conflict);
      throw e;
    } finally {
      await log.close().catch(() => undefined);
    }
  });
}

export async function readRoutes(log: EventLog): Promise<NotificationRoute[]> {
  const routes = new Map<string, NotificationRoute>();
  for await (const r of log.readAll({ category: 'notifyroute' })) {
    if (r.event.type === 'NotificationRouteAdded') routes.set(r.event.data.routeId, r.event.data);
    else if (r.event.type === 'NotificationRouteRemoved') routes.delete(r.event.data.routeId);
  }
  return [...routes.values()].sort((a, b) => a.name.localeCompare(b.name));
}

function describeTarget(t: NotificationTarget): string {
  switch (t.kind) {
    case 'webhook': return `webhook ${t.format ?? 'json'} ${t.url}`;
    case 'email': return `e-mail ${t.to.join(', ')} via ${t.host}:${t.port} (${t.security ?? 'starttls'}${t.user ? `, user ${t.user}` : ''})`;
    case 'syslog': return `syslog ${t.tls ? 'tls' : 'tcp'} ${t.host}:${t.port}`;
  }
}

export function registerNotifyCommands(program: Command): void {
  const notify = program.command('notify').description('notifications: which events reach whom (webhook, e-mail, syslog), with digests');
  const route = notify.command('route').description('routes of the notifier (recorded in the event log)');
  route.command('add <name>')
    .description('add or replace a route: what (kinds, severity, sites, VMs) goes where, and how often at most')
    .option('--webhook <url>', 'POST JSON to this URL')
    .option('--format <format>', 'webhook body: json (Cairn\'s), slack or teams', 'json')
    .option('--email <addresses>', 'comma-separated recipients (needs --smtp and --from)')
    .option('--smtp <host:port>', 'SMTP server')
    .option('--from <address>', 'sender address')
    .option('--smtp-user <user>', 'SMTP AUTH user (the password comes from --password-env in the notifier\'s environment)')
    .option('--password-env <VAR>', 'environment variable of the notifier that holds the SMTP password')
    .option('--smtp-security <mode>', 'starttls (default, required), tls (implicit, port 465) or none (a loopback relay)')
    .option('--syslog <host:port>', 'RFC 5424 syslog over TCP')
    .option('--tls', 'syslog over TLS')
    .option('--ca-file <pem>', 'CA the SMTP or syslog server\'s certificate must chain to (default: the system\'s)')
    .option('--kinds <list>', 'job-failed, damage-found, rpo-missed, rpo-restored, approval-waiting, dead-letter (default: all but rpo-restored)')
    .option('--min-severity <level>', 'info, warning, error or critical (default warning; info when --kinds is given)')
    .option('--sites <list>', 'only these sites')
    .option('--vms <list>', 'only these VM ids')
    .option('--group-wait <seconds>', 'quiet time before a group of notices is sent (default 30)')
    .option('--max-group-wait <seconds>', 'longest a group waits during a storm (default 300)')
    .option('--interval <minutes>', 'at most one message per this many minutes (default 60; 0 = no limit)')
    .action(async function (this: Command, name: string, o: AddOptions) {
      const r = routeFromOptions(name, o);
      await withLog(this, async (s, log, { handleCommand, routeDecider, routeStreamId }) => {
        const result = await handleCommand(log, routeStreamId(r.routeId), routeDecider, { type: 'AddRoute', route: r }, { meta: { site: s.site, actor: s.actor } });
        const changed = result.events.length > 0;
        output(s, { routeId: r.routeId, changed, route: r }, () => `${changed ? 'route' : 'route unchanged:'} ${r.name} → ${describeTarget(r.target)}`);
      });
    });
  route.command('apply [file]')
    .description('record the routes cairn.yaml declares under notifications.routes (what cairn up does at start; for sites run with cairn run)')
    .action(async function (this: Command, file?: string) {
      const { configFile, readConfig } = await import('./config.command.ts');
      const path = await configFile(file);
      if (!path) throw new CliError('no cairn.yaml here and no file given', EXIT.usage, 'pass the file: cairn notify route apply <file>');
      const { configRoutes } = await import('../config/cairn-config.ts');
      const routes = configRoutes((await readConfig(path))!);
      await withLog(this, async (s, log, { handleCommand, routeDecider, routeStreamId }) => {
        const results: Array<{ routeId: string; changed: boolean }> = [];
        for (const r of routes) {
          const recorded = await handleCommand(log, routeStreamId(r.routeId), routeDecider, { type: 'AddRoute', route: r }, { meta: { site: s.site, actor: s.actor } });
          results.push({ routeId: r.routeId, changed: recorded.events.length > 0 });
        }
        output(s, results, () => (results.length
          ? results.map((x) => `route ${x.routeId} ${x.changed ? 'recorded' : 'unchanged'}`).join('\n')
          : `${path} declares no notification routes`));
      });
    });
  route.command('list')
    .description('the routes the notifier follows')
    .action(async function (this: Command) {
      await withLog(this, async (s, log) => {
        const routes = await readRoutes(log);
        output(s, routes, () => table(routes.map((r) => ({
          name: r.name, target: describeTarget(r.target), kinds: r.match.kinds?.join(',') ?? 'defaults',
          severity: r.match.minSeverity ?? '', only: [...(r.match.sites ?? []), ...(r.match.vmIds ?? [])].join(',') || 'all',
          digest: `${r.digest?.groupWaitSeconds ?? 30}s/${r.digest?.intervalMinutes ?? 60}min`,
        })), ['name', 'target', 'kinds', 'severity', 'only', 'digest']));
      });
    });
  route.command('remove <name>')
    .description('remove a route: nothing more is sent through it')
    .action(async function (this: Command, name: string) {
      await withLog(this, async (s, log, { handleCommand, routeDecider, routeStreamId }) => {
        await handleCommand(log, routeStreamId(name), routeDecider, { type: 'RemoveRoute', routeId: name }, { meta: { site: s.site, actor: s.actor } });
        output(s, { routeId: name, removed: true }, () => `route ${name} removed`);
      });
    });
  route.command('test <name>')
    .description('send a test message through a route now (from this machine, with this environment\'s SMTP password variable)')
    .action(async function (this: Command, name: string) {
      await withLog(this, async (s, log, { routeDecider, routeStreamId, addToGroup, createTransport, messageOf }) => {
        let r: NotificationRoute | undefined;
        for await (const x of log.readStream(routeStreamId(name))) r = routeDecider.evolve({ route: r }, x.event as never).route;
        if (!r) throw new CliError(`no notification route ${name}`, EXIT.notFound, '`cairn notify route list` shows the routes');
        const notice: Notice = {
          id: randomUUID(), position: '0', kind: 'test', severity: 'info', site: s.site, time: new Date().toISOString(),
          title: `Test notification of route ${r.name}`, text: `Sent by ${s.actor.id} with \`cairn notify route test\`.`,
        };
        const message = { ...messageOf(r.routeId, s.site, addToGroup(undefined, notice, Date.now())), id: randomUUID().replace(/-/g, '') };
        const transport = createTransport(r.target);
        try {
          await transport.send(message);
        } catch (e) {
          throw new CliError(`the test message was not delivered through ${describeTarget(r.target)}: ${(e as Error).message}`, EXIT.failure);
        } finally {
          await transport.close().catch(() => undefined);
        }
        output(s, { routeId: r.routeId, sent: true, messageId: message.id }, () => `test message ${message.id} delivered through ${describeTarget(r!.target)}`);
      });
    });
}
