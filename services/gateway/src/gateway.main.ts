// Runs the gateway as its own process. Configuration from the environment:
//   CAIRN_NATS_URL (default nats://127.0.0.1:4222), CAIRN_SITE (required), CAIRN_API_TOKEN
//   (required, 16+ characters), CAIRN_GATEWAY_HOST (default 127.0.0.1), CAIRN_GATEWAY_PORT
//   (default 8080), CAIRN_GATEWAY_USER (actor of commands, default operator), CAIRN_LOG_LEVEL.
// Run: npx tsx services/gateway/src/gateway.main.ts
import { pathToFileURL } from 'node:url';
import { startGateway } from './gateway.module.ts';

async function main(): Promise<void> {
  const env = process.env;
  if (!env.CAIRN_SITE || !env.CAIRN_API_TOKEN) throw new Error('set CAIRN_SITE and CAIRN_API_TOKEN');
  const port = env.CAIRN_GATEWAY_PORT === undefined ? 8080 : Number(env.CAIRN_GATEWAY_PORT);
  const running = await startGateway({
    natsUrl: env.CAIRN_NATS_URL ?? 'nats://127.0.0.1:4222',
    site: env.CAIRN_SITE,
    token: env.CAIRN_API_TOKEN,
    port,
    ...(env.CAIRN_GATEWAY_HOST ? { host: env.CAIRN_GATEWAY_HOST } : {}),
    ...(env.CAIRN_GATEWAY_USER ? { user: env.CAIRN_GATEWAY_USER } : {}),
  });
  const stop = () => { running.close().then(() => process.exit(0), () => process.exit(1)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
}
