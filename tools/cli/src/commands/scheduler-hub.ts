// `cairn run scheduler --hub-credentials <dir>` (or CAIRN_HUB_CREDENTIALS): the hub this site
// joined and the tags it gave the site, from the site's bundle (`cairn hub add-site <site> --out
// <dir>`), as `cairn up --hub-credentials` gives them to its scheduler. A scheduler run as its own
// process needs them to take global policies (docs/sites.md, "Global policies"): a statement must
// name this hub and says which sites it selects. Only leaf.json (site, tags) and hub-ca.pem (the
// hub's id) are read.
import { CliError, EXIT } from '../cli-error.ts';

export interface SchedulerHub { readonly id: string; readonly tags: readonly string[] }

/** The hub of the flag, else of the environment; undefined when neither names a bundle (the site takes no global policy). */
export async function schedulerHubOption(flag: string | undefined, env: NodeJS.ProcessEnv, site: string): Promise<SchedulerHub | undefined> {
  const dir = flag ?? (env['CAIRN_HUB_CREDENTIALS'] || undefined);
  if (dir === undefined) return undefined;
  const from = flag !== undefined ? '--hub-credentials' : 'CAIRN_HUB_CREDENTIALS';
  if (!dir.trim()) throw new CliError(`${from} names no directory`, EXIT.usage);
  // Loaded when used: the NATS security library (and the event log behind it) stays out of `cairn`'s start-up.
  const { loadLeafCredentials } = await import('@cairn/nats-security');
  const leaf = await loadLeafCredentials(dir).catch((e: Error) => { throw new CliError(`${from}: ${e.message}`, EXIT.usage); });
  if (leaf.site !== site) throw new CliError(`${from}: the hub credentials in ${dir} are site ${leaf.site}'s, not ${site}'s (--site / CAIRN_SITE)`, EXIT.usage);
  return { id: leaf.hubId, tags: leaf.tags };
}
