// `cairn config check [file]` and `cairn config schema`: the site's cairn.yaml checked against
// its JSON Schema (docs/cairn.schema.json), every mistake named with its line.
import { access } from 'node:fs/promises';
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import { globals, output } from '../session.ts';
import type { CairnConfig } from '../config/cairn-config.ts';

/** The config file to use: the one given, else $CAIRN_CONFIG, else ./cairn.yaml when it exists. */
export async function configFile(given?: string): Promise<string | undefined> {
  if (given) return given;
  if (process.env['CAIRN_CONFIG']) return process.env['CAIRN_CONFIG'];
  return access('cairn.yaml').then(() => 'cairn.yaml', () => undefined);
}

/** Loads it, turning a mistake into a usage error that names the lines. */
export async function readConfig(file: string | undefined): Promise<CairnConfig | undefined> {
  if (!file) return undefined;
  // The YAML parser and the schema load only when a config file is read.
  const { ConfigError, loadCairnConfig } = await import('../config/cairn-config.ts');
  try {
    return await loadCairnConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(e.message, EXIT.usage, 'the schema is docs/cairn.schema.json (`cairn config schema`)', 'invalid_config');
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, EXIT.usage);
  }
}

/** What the services take from cairn.yaml besides the site and the SIEM targets (cairn up, cairn run). */
export async function serviceSettings(c: CairnConfig): Promise<{
  bandwidth?: { hostBytesPerSec?: number; siteBytesPerSec?: number }; maxJobsPerHost?: number; maxJobsPerRepository?: number;
  cataloguePostgresUrl?: string;
}> {
  const { rateBytesPerSec } = await import('../config/cairn-config.ts');
  const host = rateBytesPerSec(c.bandwidth?.hostBytesPerSec);
  const site = rateBytesPerSec(c.bandwidth?.siteBytesPerSec);
  const postgresUrl = cataloguePostgresUrl(c);
  return {
    ...(postgresUrl ? { cataloguePostgresUrl: postgresUrl } : {}),
    ...(host !== undefined || site !== undefined ? { bandwidth: { ...(host !== undefined ? { hostBytesPerSec: host } : {}), ...(site !== undefined ? { siteBytesPerSec: site } : {}) } } : {}),
    ...(c.concurrency?.maxJobsPerHost ? { maxJobsPerHost: c.concurrency.maxJobsPerHost } : {}),
    ...(c.concurrency?.maxJobsPerRepository ? { maxJobsPerRepository: c.concurrency.maxJobsPerRepository } : {}),
  };
}

/**
 * The catalogue's PostgreSQL URL, when the catalogue keeps its read models there: from
 * CAIRN_CATALOGUE_POSTGRES_URL, else from cairn.yaml's `catalogue.store: postgres` and
 * `catalogue.postgresUrl`; undefined means SQLite (the default).
 */
export function cataloguePostgresUrl(c: CairnConfig | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env['CAIRN_CATALOGUE_POSTGRES_URL'];
  if (fromEnv) return fromEnv;
  if (c?.catalogue?.store !== 'postgres') return undefined;
  if (!c.catalogue.postgresUrl) {
    throw new CliError('cairn.yaml: catalogue.store is postgres but no catalogue.postgresUrl is given', EXIT.usage, 'add catalogue.postgresUrl: postgres://user@host:5432/cairn, or set CAIRN_CATALOGUE_POSTGRES_URL');
  }
  return c.catalogue.postgresUrl;
}

export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('the site configuration file, cairn.yaml');
  config.command('check [file]')
    .description('check cairn.yaml (default: $CAIRN_CONFIG or ./cairn.yaml) against its schema; names the line of each mistake')
    .action(async function (this: Command, file?: string) {
      const path = await configFile(file);
      if (!path) throw new CliError('no cairn.yaml here and no file given', EXIT.usage, 'pass the file: cairn config check <file>');
      const c = (await readConfig(path))!;
      output({ json: Boolean(globals(this).json) }, { file: path, ok: true, config: c },
        () => [
          `${path}: ok (site ${c.site ?? 'local'}, ${c.audit?.targets?.length ?? 0} SIEM targets)`,
          ...(c.bandwidth ? [`  bandwidth: host ${c.bandwidth.hostBytesPerSec ?? 'unlimited'}, site ${c.bandwidth.siteBytesPerSec ?? 'unlimited'} (per second)`] : []),
          ...(c.notifications?.routes?.length ? [`  notification routes: ${c.notifications.routes.map((r) => `${r.name} (${r.target.kind})`).join(', ')}`] : []),
          ...(c.concurrency?.maxJobsPerHost ? [`  at most ${c.concurrency.maxJobsPerHost} backups at once per hypervisor host`] : []),
          ...(c.concurrency?.maxJobsPerRepository ? [`  at most ${c.concurrency.maxJobsPerRepository} backups at once per repository`] : []),
          ...(c.policyDefaults ? [`  new policies: ${[
            c.policyDefaults.window ? `window ${c.policyDefaults.window.start}-${c.policyDefaults.window.end}` : '',
            c.policyDefaults.retention ? `retention ${Object.entries(c.policyDefaults.retention).map(([k, v]) => `${k} ${v}`).join(', ')}` : '',
            c.policyDefaults.bandwidth ? `bandwidth ${c.policyDefaults.bandwidth}/s` : '',
          ].filter(Boolean).join('; ')}`] : []),
        ].join('\n'));
    });
  config.command('schema').description('print the JSON Schema of cairn.yaml').action(async () => {
    const { cairnConfigJsonSchema } = await import('../config/cairn-config.ts');
    process.stdout.write(JSON.stringify(cairnConfigJsonSchema(), null, 2) + '\n');
  });
}
