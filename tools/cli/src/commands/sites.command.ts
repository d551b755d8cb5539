// Several sites: `cairn hub` runs the hub the sites join as leaf nodes (global view), and
// `cairn replication …` manages replication policies, copies, keyless verification and
// repair. See docs/sites.md.
import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import { accepted, sessionAction } from '../cli-replies.ts';
import { bytes, DEFAULT_DATA_DIR, globals, output, table } from '../session.ts';
import { collectPages, pagingChoice, pagingOptions, printPage } from '../paging.ts';

type Opts = Record<string, unknown>;
const say = (line: string) => process.stdout.write(line + '\n');

const act = sessionAction;

/** An allowed gap: plain seconds, or a duration (`90s`, `5m`, `2h`); at least 1 s, at most 30 days. */
export async function gapMs(text: string): Promise<number> {
  const { parseDuration } = await import('./repo.command.ts');
  const ms = /^\d+$/.test(text.trim()) ? Number(text.trim()) * 1000 : parseDuration(text);
  if (!(ms >= 1000 && ms <= 30 * 86_400_000)) throw new CliError(`an allowed gap is between 1 s and 30 d, not "${text}"`, EXIT.usage, 'e.g. 300, 120s, 5m or 2h');
  return ms;
}

const sitesOf = (v: unknown): string[] => String(v ?? '').split(',').map((x) => x.trim()).filter(Boolean);

export function registerSitesCommands(program: Command): void {
  const hubDataDir = (cmd: Command) => resolve(globals(cmd).data ?? process.env['CAIRN_DATA'] ?? `${DEFAULT_DATA_DIR}-hub`);
  const hub = program.command('hub')
    .description('run the hub: sites join it as leaf nodes (`cairn up --site <name> --hub <leaf url> --hub-credentials <dir>`); its catalogue and API show every site')
    .option('--sites <names>', 'comma-separated sites whose events the hub copies (default: the sites added with `cairn hub add-site`)')
    .option('--leaf-port <port>', 'port the sites connect to (default: a free one)')
    .option('--leaf-host <address>', 'address the leaf listener binds', '127.0.0.1')
    .option('--gateway-port <port>', 'REST API port (default: a free one)')
    .option('--host <names...>', 'names and addresses the hub is reached at, for its certificate (first start; default localhost 127.0.0.1)')
    .option('--insecure', 'plain NATS: no TLS, no identities, no leaf users (any site may join)')
    .option('--allowed-gap <seconds>', 'a site not reached for longer than this is reported silent (SiteSilent; cairn site list); the default of the sites without their own (hub add-site --allowed-gap, site set-gap)', '300')
    .option('--once', 'stop after start-up')
    .action(async function (this: Command, o: { sites?: string; leafPort?: string; leafHost: string; gatewayPort?: string; host?: string[]; insecure?: boolean; once?: boolean; allowedGap: string }) {
      const gap = Number(o.allowedGap);
      if (!Number.isFinite(gap) || gap < 1) throw new CliError('--allowed-gap must be a number of seconds ≥ 1', EXIT.usage);
      const dataDir = hubDataDir(this);
      const secure = !o.insecure && process.env['CAIRN_SECURE'] !== '0';
      const { startHub } = await import('../stack/hub-stack.ts');
      const running = await startHub({
        dataDir, sites: sitesOf(o.sites), log: say, leafHost: o.leafHost, allowedGapMs: gap * 1000,
        ...(secure ? { secure: true } : {}),
        ...(o.host ? { hosts: o.host } : {}),
        ...(o.leafPort ? { leafPort: Number(o.leafPort) } : {}),
        ...(o.gatewayPort ? { gatewayPort: Number(o.gatewayPort) } : {}),
      });
      const sites = running.relay.status().map((x) => x.site);
      if (!sites.length) {
        await running.stop();
        throw new CliError('the hub has no sites: add them with `cairn hub add-site <site> --out <dir>` (or --sites with --insecure)', EXIT.usage);
      }
      say(`hub                  copies ${sites.join(', ')}; catalogue and gateway ${running.gatewayUrl} in site hub`);
      say(secure
        ? `join a site with     cairn up --site <name> --hub ${running.leafUrl} --hub-credentials <bundle of cairn hub add-site>`
        : `join a site with     cairn up --site <name> --hub ${running.leafUrl}`);
      say(`global view          cairn --data ${dataDir} --site hub vm list | restore-point list | replication replicas`);
      if (!o.once) {
        await new Promise<void>((r) => { process.once('SIGINT', r); process.once('SIGTERM', r); });
      }
      await running.stop();
    });
  hub.command('init')
    .description('create the hub\'s security material in <data>/security: hub CA, server certificate, identities of its relay, catalogue, gateway and admin')
    .option('--host <names...>', 'names and addresses the hub is reached at (default localhost 127.0.0.1)')
    .action(async function (this: Command, o: { host?: string[] }) {
      const g = globals(this);
      const { initHubSecurity } = await import('@cairn/nats-security');
      const security = await initHubSecurity({ dir: join(hubDataDir(this), 'security'), ...(o.host ? { hosts: o.host } : {}) });
      const result = { dir: security.dir, ca: security.caFile, identities: security.identities, leafSites: security.leafSites };
      process.stdout.write(g.json ? JSON.stringify(result, null, 2) + '\n'
        : `hub security in ${security.dir}: CA ${security.caFile}, identities ${security.identities.join(', ')}; leaf users: ${security.leafSites.join(', ') || 'none (cairn hub add-site)'}\n`);
    });
  hub.command('add-site <site>')
    .description('register a site at the hub and write its leaf credential bundle (leaf user and password, leaf certificate, hub CA) for `cairn up --hub-credentials`')
    .requiredOption('--out <dir>', 'where to write the bundle (hand it to the site\'s operator; it holds the password)')
    .requiredOption('--peers <sites>', 'comma-separated sites it replicates with (to and from), or none')
    .option('--tag <tags...>', 'tags of the site: global policies may select the sites carrying them (`policy create --global --to-tag`)')
    .option('--hub-url <url>', 'the hub\'s leaf URL, recorded in the bundle for the site\'s operator')
    .option('--host <names...>', 'names and addresses the hub is reached at (when this creates the hub\'s material)')
    .option('--allowed-gap <duration>', 'how long the site may go without contact before the hub reports it silent: seconds, or 90s, 5m, 2h (default: the hub\'s --allowed-gap, 300 s; change it later with `cairn site set-gap`)')
    .action(async function (this: Command, site: string, o: { out: string; peers: string; tag?: string[]; hubUrl?: string; host?: string[]; allowedGap?: string }) {
      const g = globals(this);
      const { addLeafSite } = await import('@cairn/nats-security');
      // `hub` has an --allowed-gap of its own (the default for all sites), so commander gives the
      // option to it when it comes after `add-site` too: taken from there when it was given.
      const given = o.allowedGap ?? (this.parent?.getOptionValueSource('allowedGap') === 'cli' ? String(this.parent.opts<{ allowedGap?: string }>().allowedGap) : undefined);
      const allowedGapMs = given === undefined ? undefined : await gapMs(given);
      const { hub: security, bundleDir, bundle } = await addLeafSite({
        dir: join(hubDataDir(this), 'security'), site, out: o.out,
        peers: o.peers === 'none' ? [] : sitesOf(o.peers), ...(o.tag ? { tags: o.tag } : {}), ...(o.hubUrl ? { hubUrl: o.hubUrl } : {}), ...(o.host ? { hosts: o.host } : {}),
        ...(allowedGapMs ? { allowedGapMs } : {}),
      });
      const result = { site, user: bundle.user, bundle: bundleDir, peers: bundle.peers ?? [], tags: bundle.tags, leafSites: security.leafSites, ...(allowedGapMs ? { allowedGapMs } : {}) };
      process.stdout.write(g.json ? JSON.stringify(result, null, 2) + '\n' : [
        `site ${site}: leaf user ${bundle.user} (password bcrypt-hashed in ${security.configFile}), certificate from the hub CA; replicates with ${bundle.peers?.join(', ') || 'no site'}`,
        `bundle               ${bundleDir} (leaf.json holds the password: hand it over like a key)`,
        `at the site          cairn up --site ${site} --hub <leaf url of the hub> --hub-credentials ${bundleDir}`,
        'a running hub applies it by itself within seconds (it reloads its nats-server config; no restart)',
      ].join('\n') + '\n');
    });

  const r = program.command('replication').description('replication between sites');
  r.command('policy-create')
    .description('create a replication policy at this (the source) site')
    .requiredOption('--name <name>', 'policy name')
    .requiredOption('--to <sites>', 'comma-separated target sites')
    .option('--vm <ids...>', 'VM ids (default: every VM of the site)')
    .option('--every <seconds>', 'copy on a schedule every N seconds instead of after each backup')
    .option('--cron <expression>', 'copy on a cron schedule instead (e.g. "0 2 * * *"), in --timezone')
    .option('--timezone <zone>', 'time zone of --cron', 'UTC')
    .option('--delay <seconds>', 'wait this long after a backup before copying it', '0')
    .option('--bandwidth <bytesPerSec>', 'most bytes per second to each target')
    .option('--max-lag <minutes>', 'how far a target may fall behind before ReplicationBehind (default: after-backup delay + 60, schedule 2 × every + 60, cron 1560)')
    .action(act(async (s, o: Opts) => {
      const maxLag = o['maxLag'] === undefined ? undefined : Number(o['maxLag']);
      if (maxLag !== undefined && !(Number.isInteger(maxLag) && maxLag >= 1)) throw new CliError(`--max-lag must be a whole number of minutes of at least 1, not ${String(o['maxLag'])}`, EXIT.usage);
      const result = accepted(await s.bus.send('replication', 'CreateReplicationPolicy', {
        name: String(o['name']), targetSites: sitesOf(o['to']),
        ...(o['vm'] ? { vmIds: o['vm'] as string[] } : {}),
        trigger: o['cron'] ? { kind: 'cron', cron: String(o['cron']), timezone: String(o['timezone']) }
          : o['every'] ? { kind: 'schedule', everyMs: Number(o['every']) * 1000 } : { kind: 'after-backup' },
        delayMs: Number(o['delay']) * 1000,
        ...(o['bandwidth'] ? { bandwidthBytesPerSec: Number(o['bandwidth']) } : {}),
        ...(maxLag !== undefined ? { maxLagMinutes: maxLag } : {}),
      }, { idempotencyKey: randomUUID() }), 'policy refused');
      output(s, result, () => `replication policy ${result.policyId} created`);
    }));
  r.command('copy <restorePoint>')
    .description('copy one restore point of this site to another site now')
    .requiredOption('--to <site>', 'target site')
    .action(act(async (s, restorePointId: string, o: Opts) => {
      const result = accepted(await s.bus.send('replication', 'ReplicateRestorePoint', { restorePointId, targetSite: String(o['to']) },
        { timeoutMs: 24 * 3600_000 }), 'copy failed');
      output(s, result, () => `${restorePointId} → ${result.targetSite}: ${result.committed ? 'copied' : 'was there already'}, ${result.chunksSent} chunks (${bytes(result.chunkBytesSent)}), ${bytes(result.bytesSent)} sent in ${(result.durationMs / 1000).toFixed(1)} s`);
    }));
  r.command('verify')
    .description('check, without the key, this site\'s copy of another site\'s repository')
    .requiredOption('--from <site>', 'the site whose repository is copied here')
    .action(act(async (s, o: Opts) => {
      const result = accepted(await s.bus.send('replication', 'VerifyReplica', { sourceSite: String(o['from']) }, { timeoutMs: 3600_000 }), 'verify failed');
      output(s, result, () => result.ok
        ? `copy of ${String(o['from'])}: ${result.objectsChecked} objects (${bytes(result.bytesChecked)}) intact`
        : `copy of ${String(o['from'])}: ${result.damaged.length} damaged of ${result.objectsChecked}\n${table(result.damaged, ['kind', 'id', 'damage', 'detail'])}`);
      // With --json the report is the one document on stdout (as `repo verify --json`); the exit code says damage.
      if (!result.ok && s.json) process.exitCode = EXIT.failure;
      else if (!result.ok) throw new CliError('the copy is damaged; repair it from the source with `cairn replication repair --target <this site>` at the source', EXIT.failure);
    }));
  r.command('gc')
    .description('delete, without the key, the objects of this site\'s copy of another site\'s repository that no replica references any more')
    .requiredOption('--from <site>', 'the site whose repository is copied here')
    .option('--grace <seconds>', 'keep unreferenced objects younger than this', '3600')
    .action(act(async (s, o: Opts) => {
      const result = accepted(await s.bus.send('replication', 'CollectReplicaGarbage', { sourceSite: String(o['from']), graceMs: Number(o['grace']) * 1000 },
        { timeoutMs: 3600_000 }), 'replica GC failed');
      output(s, result, () => result.deferred
        ? `copy of ${String(o['from'])}: a copy is being received; nothing swept, try again later`
        : result.withoutRefs
          ? `copy of ${String(o['from'])}: ${result.withoutRefs} of ${result.liveReplicas} replicas were copied without a refs list; nothing swept (their objects are unknown)`
          : `copy of ${String(o['from'])}: ${result.objectsDeleted} objects deleted (${bytes(result.bytesFreed)} freed), ${result.liveReplicas} replicas kept, ${result.objectsKeptYoung} young objects kept`);
      if (result.deferred) throw new CliError('a copy into this replica store is running', EXIT.conflict);
    }));
  r.command('repair')
    .description('send again, from this (the source) site, what a target reports damaged in its copy')
    .requiredOption('--target <site>', 'the site holding the damaged copy')
    .action(act(async (s, o: Opts) => {
      const result = accepted(await s.bus.send('replication', 'RepairReplica', { targetSite: String(o['target']) }, { timeoutMs: 3600_000 }), 'repair failed');
      output(s, result, () => `${result.repaired} of ${result.damaged} damaged objects sent again${result.unrepairable.length ? `; cannot repair: ${result.unrepairable.join('; ')}` : ''}`);
    }));
  pagingOptions(r.command('policies'), 'policies', undefined, false)
    .description('replication policies (at the hub: of every site)')
    .option('--all', 'deleted ones too')
    .action(act(async (s, o: Opts) => {
      const choice = pagingChoice({ ...o, all: undefined });
      const page = await collectPages((p) => s.catalogue.query('replicationPolicy.list', { ...(o['all'] ? { includeDeleted: true } : {}), ...p }), choice);
      const { items } = page;
      printPage(s.json, page, choice, () => table(items.map((p) => ({
        policy: p.policyId, name: p.name, site: p.site, to: p.targetSites.join(','),
        trigger: JSON.stringify(p.trigger), vms: p.vmIds?.join(',') ?? 'all', deleted: p.deletedAt ?? '',
      })), ['policy', 'name', 'site', 'to', 'trigger', 'vms', 'deleted']));
    }));
  pagingOptions(r.command('replicas'), 'replicas')
    .description('replicas known here (at the hub: of every site), newest first')
    .option('--vm <id>', 'one VM')
    .option('--restore-point <id>', 'one restore point')
    .action(act(async (s, o: Opts) => {
      const choice = pagingChoice(o);
      const page = await collectPages((p) => s.catalogue.query('replica.list', {
        ...(o['vm'] ? { vmId: String(o['vm']) } : {}), ...(o['restorePoint'] ? { restorePointId: String(o['restorePoint']) } : {}), ...p,
      }), choice);
      const { items } = page;
      printPage(s.json, page, choice, () => table(items.map((x) => ({
        restorePoint: x.restorePointId, vm: x.vmName, from: x.sourceSite, at: x.site, committed: x.committedAt, sent: bytes(x.bytesSent),
      })), ['restorePoint', 'vm', 'from', 'at', 'committed', 'sent']));
    }));
}
