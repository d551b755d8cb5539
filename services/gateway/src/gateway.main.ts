// Runs the gateway as its own process. Configuration from the environment:
//   CAIRN_NATS_URL (default nats://127.0.0.1:4222), CAIRN_SITE (required), CAIRN_API_TOKEN
//   (required, 16+ characters), CAIRN_GATEWAY_HOST (default 127.0.0.1), CAIRN_GATEWAY_PORT
//   (default 8080), CAIRN_GATEWAY_USER (the bootstrap administrator whose token CAIRN_API_TOKEN is,
//   default admin), CAIRN_LOG_LEVEL; OIDC sign-in when CAIRN_OIDC_ISSUER, CAIRN_OIDC_AUDIENCE and
//   CAIRN_OIDC_JWKS_URL are set (CAIRN_OIDC_USER_CLAIM default sub, CAIRN_OIDC_ROLES_CLAIM default roles; CAIRN_OIDC_CLIENT_ID [+ _AUTHORIZATION_URL, _TOKEN_URL] for the console's single sign-on);
//   CAIRN_NATS_SECURITY_DIR (a site's or the hub's security directory: connect with the `gateway`
//   identity over mutual TLS; CAIRN_NATS_IDENTITY names another identity).
// Run: npx tsx services/gateway/src/gateway.main.ts
import { pathToFileURL } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { natsServers } from '@cairn/contracts';
import { identityFromEnv } from '@cairn/nats-security';
import { startGateway } from './gateway.module.ts';

async function main(): Promise<void> {
  const env = process.env;
  if (!env.CAIRN_SITE || !env.CAIRN_API_TOKEN) throw new Error('set CAIRN_SITE and CAIRN_API_TOKEN');
  const port = env.CAIRN_GATEWAY_PORT === undefined ? 8080 : Number(env.CAIRN_GATEWAY_PORT);
  const nc = await connect({ servers: natsServers(env.CAIRN_NATS_URL ?? 'nats://127.0.0.1:4222'), name: `gateway@${env.CAIRN_SITE}`, maxReconnectAttempts: -1, ...(await identityFromEnv('gateway')) });
  const running = await startGateway({
    nc,
    site: env.CAIRN_SITE,
    token: env.CAIRN_API_TOKEN,
    port,
    ...(env.CAIRN_GATEWAY_HOST ? { host: env.CAIRN_GATEWAY_HOST } : {}),
    ...(env.CAIRN_GATEWAY_USER ? { user: env.CAIRN_GATEWAY_USER } : {}),
    ...(env.CAIRN_OIDC_ISSUER && env.CAIRN_OIDC_AUDIENCE && env.CAIRN_OIDC_JWKS_URL ? {
      oidc: {
        issuer: env.CAIRN_OIDC_ISSUER, audience: env.CAIRN_OIDC_AUDIENCE, jwksUrl: env.CAIRN_OIDC_JWKS_URL,
        ...(env.CAIRN_OIDC_USER_CLAIM ? { userClaim: env.CAIRN_OIDC_USER_CLAIM } : {}),
        ...(env.CAIRN_OIDC_ROLES_CLAIM ? { rolesClaim: env.CAIRN_OIDC_ROLES_CLAIM } : {}),
        ...(env.CAIRN_OIDC_CLIENT_ID ? { clientId: env.CAIRN_OIDC_CLIENT_ID } : {}),
        ...(env.CAIRN_OIDC_AUTHORIZATION_URL ? { authorizationUrl: env.CAIRN_OIDC_AUTHORIZATION_URL } : {}),
        ...(env.CAIRN_OIDC_TOKEN_URL ? { tokenUrl: env.CAIRN_OIDC_TOKEN_URL } : {}),
      },
    } : {}),
  });
  const stop = () => { running.close().then(() => nc.drain()).then(() => process.exit(0), () => process.exit(1)); };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => { console.error(e instanceof Error ? e.message : e); process.exit(1); });
}
