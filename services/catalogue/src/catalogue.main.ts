// Runs one catalogue replica as its own process. Configuration from the environment:
//   CAIRN_NATS_URL (default nats://127.0.0.1:4222), CAIRN_SITE (required),
//   CAIRN_CATALOGUE_DIR (SQLite directory, or :memory:) or CAIRN_CATALOGUE_POSTGRES_URL
//   (postgres://user@host:port/db, shared by every replica of the site), CAIRN_LOG_LEVEL;
//   CAIRN_NATS_SECURITY_DIR (a site's or the hub's security directory: connect with the
//   `catalogue` identity over mutual TLS; CAIRN_NATS_IDENTITY names another identity).
// Run: npx tsx services/catalogue/src/catalogue.main.ts
import { pathToFileURL } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { natsServers } from '@cairn/contracts';
import { identityFromEnv } from '@cairn/nats-security';
import { startCatalogue } from './catalogue.module.ts';

async function main(): Promise<void> {
  const env = process.env;
  const site = env.CAIRN_SITE;
  const postgresUrl = env.CAIRN_CATALOGUE_POSTGRES_URL || undefined;
  const dataDir = env.CAIRN_CATALOGUE_DIR ?? (postgresUrl ? ':memory:' : undefined);
  if (!site || !dataDir) throw new Error('set CAIRN_SITE and CAIRN_CATALOGUE_DIR (a directory for the SQLite file, or :memory:) or CAIRN_CATALOGUE_POSTGRES_URL');
  const nc = await connect({ servers: natsServers(env.CAIRN_NATS_URL ?? 'nats://127.0.0.1:4222'), name: `catalogue@${site}`, maxReconnectAttempts: -1, ...(await identityFromEnv('catalogue')) });
  const running = await startCatalogue({ nc, site, dataDir, ...(postgresUrl ? { postgresUrl } : {}) });
  const stop = () => { running.close().then(() => nc.drain()).then(() => process.exit(0), () => process.exit(1)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
}
