// `cairn site init`: a site's NATS security material — the site CA (or the operator's), the
// nats-server certificate, one nkey and client certificate per identity, and the nats-server
// config with each identity's permissions (docs/security.md). `cairn up --secure` uses it.
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import { DEFAULT_DATA_DIR, bytes, globals, output, table } from '../session.ts';
import { sessionAction } from '../cli-replies.ts';
import { askHub } from './hub-report.ts';
import { commonJs } from '../lazy-import.ts';
import type { SiteHealth } from '../stack/site-health.ts';

export function registerSiteCommands(program: Command): void {
  const site = (program.commands.find((c) => c.name() === 'site') ?? program.command('site')).description('site set-up: NATS identities, certificates and permissions; disaster recovery (declare-lost)');
  site
    .command('list')
    .description('at the hub: every site\'s health — leaf link, last contact, silence, event lag, failed jobs and RPO misses in 24 h, repository use, replication lag per pair')
    .action(sessionAction(async (s) => {
      // Loaded here, not at every start of the CLI (docs/benchmarks.md "CLI start-up").
      const { SITE_HEALTH_SUBJECT } = await import('../stack/site-health.ts');
      const sites = await askHub<'sites', SiteHealth[]>(s, SITE_HEALTH_SUBJECT, 'sites', 'site health', 'site list');
      const ago = (t: string | null) => (t ? `${Math.round((Date.now() - Date.parse(t)) / 1000)} s ago` : 'never');
      output(s, sites, () => table(sites.map((x) => ({
        site: x.site, link: x.leafLink, contact: ago(x.lastContactAt), gap: `${x.allowedGapMs / 1000} s`, silent: x.silent ? `SILENT (> ${x.allowedGapMs / 1000} s)` : 'no',
        lag: x.eventLag ?? '?', failed24h: x.failedJobs24h, rpoMisses24h: x.rpoMisses24h, repository: `${x.restorePoints} rp, ${bytes(x.repositoryBytes)}`,
        replication: x.replication.map((r) => `→${r.target} ${r.replicas} (lag ${(r.lagMs / 1000).toFixed(1)} s)`).join(', ') || '-',
      })), ['site', 'link', 'contact', 'gap', 'silent', 'lag', 'failed24h', 'rpoMisses24h', 'repository', 'replication']));
    }));
  site
    .command('set-gap <site> <duration>')
    .description('at the hub: how long <site> may go without contact before the hub reports it silent (SiteSilent) — seconds, or 90s, 5m, 2h; a signed command to the hub\'s site watch, recorded as SiteAllowedGapSet')
    .action(sessionAction(async (s, siteName: string, duration: string) => {
      const { gapMs } = await import('./sites.command.ts');
      const allowedGapMs = await gapMs(duration);
      const [{ CommandBus }, { accepted }] = await Promise.all([import('@cairn/messaging/command-bus'), import('../cli-replies.ts')]);
      // On a secure hub the watch accepts it signed by the hub's admin identity: the key of this data directory.
      let signer;
      if (s.securityDir) {
        const [{ loadSiteSecurity }, { signerFromSeed }, { readFile }] = await Promise.all([import('@cairn/nats-security'), import('@cairn/command-auth'), import('node:fs/promises')]);
        signer = signerFromSeed((await readFile((await loadSiteSecurity(s.securityDir)).credentials('admin').seedFile, 'utf8')).trim());
      }
      const bus = new CommandBus(s.nc, { site: 'hub', actor: s.actor, defaultTimeoutMs: 15_000, ...(signer ? { signer } : {}) });
      let reply;
      try {
        reply = await bus.send('site-watch', 'SetSiteAllowedGap', { site: siteName, allowedGapMs });
      } catch (e) {
        throw new CliError(`the hub's site watch did not take it: ${(e as Error).message}`, EXIT.unavailable, 'run it at the hub: cairn --data <hub data> site set-gap <site> <duration>');
      }
      const r = accepted(reply, `SetSiteAllowedGap for ${siteName}`) as { site: string; allowedGapMs: number; previousMs: number };
      output(s, r, () => r.previousMs === r.allowedGapMs
        ? `site ${r.site}: allowed gap ${r.allowedGapMs / 1000} s already`
        : `site ${r.site}: allowed gap ${r.allowedGapMs / 1000} s (was ${r.previousMs / 1000} s)`);
    }));
  site
    .command('init')
    .description('create (or complete) the site CA, server and client certificates, nkeys and the nats-server security config')
    .option('--dir <dir>', 'where to write them (default <data>/security)')
    .option('--host <names...>', 'names and addresses nats-server is reached at (default localhost 127.0.0.1)')
    .option('--peer <sites...>', 'sites replication may talk to (default: any)')
    .option('--ca-cert <file>', "the operator's CA certificate, instead of a new site CA")
    .option('--ca-key <file>', "the operator's CA private key (used to sign, never copied)")
    .action(async (o: { dir?: string; host?: string[]; peer?: string[]; caCert?: string; caKey?: string }, cmd: Command) => {
      const g = globals(cmd);
      const siteName = g.site ?? process.env['CAIRN_SITE'] ?? 'local';
      if (Boolean(o.caCert) !== Boolean(o.caKey)) throw new CliError('--ca-cert and --ca-key go together', EXIT.usage);
      const dir = resolve(o.dir ?? join(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR, 'security'));
      const { describeCertificate, initSiteSecurity, sitePermissions } = await import('@cairn/nats-security');
      const security = await initSiteSecurity({
        dir, site: siteName,
        ...(o.host ? { hosts: o.host } : {}),
        ...(o.peer ? { peers: o.peer } : {}),
        ...(o.caCert && o.caKey ? { ca: { cert: o.caCert, key: o.caKey } } : {}),
      }).catch((e: unknown) => { throw new CliError(`cannot create the security material in ${dir}: ${(e as Error).message}`, EXIT.failure); });
      const ca = await describeCertificate(security.caFile);
      const summary = {
        site: siteName, dir: security.dir, ca: ca.subject, caValidTo: ca.validTo, natsConfig: security.configFile,
        identities: security.identities, permissions: sitePermissions(siteName, o.peer ? { peers: o.peer } : {}),
      };
      if (g.json) {
        console.log(JSON.stringify(summary, null, 2));
        return;
      }
      console.log([
        `site ${siteName}: NATS security in ${security.dir}`,
        `  CA            ${ca.subject} (valid to ${ca.validTo})`,
        `  nats-server   include ${security.configFile} (mutual TLS, one nkey user per identity)`,
        `  identities    ${security.identities.join(', ')} (identities/<name>.nk + .pem, mode 0600)`,
        '  start with    cairn up --secure   (permission matrix: docs/security.md)',
      ].join('\n'));
    });

  site
    .command('kubernetes-secrets')
    .description('the site\'s NATS security material (`cairn site init`) as Kubernetes Secrets for infra/kubernetes: cairn-nats-server (TLS and users for the NATS chart\'s pods) and one cairn-nats-<service> per service (its nkey and client certificate only; no CA key). Pipe to `kubectl apply -f -`')
    .option('--dir <dir>', 'the site security directory (default <data>/security)')
    .option('--namespace <ns>', 'namespace of the Secrets (default cairn)', 'cairn')
    .option('--nats-host <names...>', 'names the services reach nats-server at, which its certificate must carry (default nats-0.nats-headless nats-1.nats-headless nats-2.nats-headless)')
    .action(async (o: { dir?: string; namespace: string; natsHost?: string[] }, cmd: Command) => {
      const g = globals(cmd);
      const dir = resolve(o.dir ?? join(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR, 'security'));
      const [{ kubernetesSecrets }, { stringify }] = await Promise.all([import('@cairn/nats-security'), commonJs(import('yaml'))]);
      const secrets = await kubernetesSecrets(dir, { namespace: o.namespace, ...(o.natsHost ? { natsHosts: o.natsHost } : {}) })
        .catch((e: unknown) => { throw new CliError(`cannot make the Kubernetes Secrets from ${dir}: ${(e as Error).message}`, EXIT.failure); });
      if (g.json) console.log(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: secrets }, null, 2));
      else process.stdout.write(secrets.map((x) => `---\n${stringify(x)}`).join(''));
    });

  site
    .command('nbd-cert')
    .description("TLS credentials for a hypervisor node's NBD server, signed by the site CA (QEMU's ca-cert.pem, server-cert.pem, server-key.pem): `cairn run snapshot-coordinator --nbd-listen <host> --nbd-tls-dir <out>`; data movers on other nodes read views with their site identity")
    .requiredOption('--node <name>', 'the hypervisor node (certificate name nbd.<node>.<site>)')
    .requiredOption('--host <names...>', 'names and addresses data movers connect to (the certificate names them)')
    .requiredOption('--out <dir>', 'directory to write (QEMU on that node must read it)')
    .option('--dir <dir>', 'the site security directory with the CA key (default <data>/security)')
    .action(async (o: { node: string; host: string[]; out: string; dir?: string }, cmd: Command) => {
      const g = globals(cmd);
      const siteName = g.site ?? process.env['CAIRN_SITE'] ?? 'local';
      const dir = resolve(o.dir ?? join(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR, 'security'));
      const { issueNbdServerTls } = await import('@cairn/nats-security');
      const tls = await issueNbdServerTls(dir, resolve(o.out), { site: siteName, node: o.node, hosts: o.host })
        .catch((e: unknown) => { throw new CliError(`cannot issue the NBD server certificate from ${dir}: ${(e as Error).message}`, EXIT.failure); });
      if (g.json) console.log(JSON.stringify(tls, null, 2));
      else console.log(`NBD TLS for ${o.node} (${o.host.join(', ')}) in ${tls.dir}: ${tls.certFile}, ${tls.keyFile} (0600), ${tls.caFile}`);
    });
}
