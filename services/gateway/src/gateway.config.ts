// The gateway's configuration, checked once at start-up into one typed object.
import { assertSite } from '@cairn/contracts';
import type { OidcConfig } from './oidc.ts';
import { DEFAULT_CONSOLE_DIR } from './console.static.ts';

export interface GatewayConfig {
  readonly site: string;
  /** The bootstrap administrator's API token (recorded once in the log, revocable like any other). */
  readonly token: string;
  /** The bootstrap administrator's user id (the actor of what is done with that token). */
  readonly user: string;
  /** OIDC/JWT sign-in, when a provider is configured. */
  readonly oidc?: OidcConfig;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Largest request body accepted, in bytes. */
  readonly bodyLimitBytes: number;
  /** How long a command or query may take before the gateway answers 504/503. */
  readonly timeoutMs: number;
  /** The same for commands that answer when their work is done (a restore). */
  readonly longTimeoutMs: number;
  /** Failed authentications per source address or user within a minute before 429 for a minute (default 10). */
  readonly authFailureLimit: number;
  /** The web console's built files, served at `/` (apps/console/dist unless said). */
  readonly consoleDir: string;
}

export interface GatewayConfigInput {
  site: string;
  token: string;
  user?: string;
  oidc?: OidcConfig;
  host?: string;
  port?: number;
  bodyLimitBytes?: number;
  timeoutMs?: number;
  longTimeoutMs?: number;
  authFailureLimit?: number;
  consoleDir?: string;
}

export class GatewayConfigError extends Error {
  override readonly name = 'GatewayConfigError';
}

export function gatewayConfig(input: GatewayConfigInput): GatewayConfig {
  const site = assertSite(input.site);
  if (typeof input.token !== 'string' || input.token.length < 16) {
    throw new GatewayConfigError('gateway token must be a string of at least 16 characters (generate one with `openssl rand -hex 32`)');
  }
  const port = input.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new GatewayConfigError(`gateway port ${port} is not a TCP port`);
  const bodyLimitBytes = input.bodyLimitBytes ?? 64 * 1024;
  if (!Number.isInteger(bodyLimitBytes) || bodyLimitBytes < 1024) throw new GatewayConfigError('gateway body limit must be at least 1024 bytes');
  const authFailureLimit = input.authFailureLimit ?? 10;
  if (!Number.isInteger(authFailureLimit) || authFailureLimit < 1) throw new GatewayConfigError('gateway authFailureLimit must be a positive integer');
  const user = input.user ?? 'admin';
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(user)) throw new GatewayConfigError(`gateway user ${JSON.stringify(user)} is not a valid user id (letters, digits, _ and -)`);
  if (input.oidc) {
    for (const k of ['issuer', 'audience', 'jwksUrl'] as const) {
      if (typeof input.oidc[k] !== 'string' || input.oidc[k].length === 0) throw new GatewayConfigError(`gateway oidc.${k} is required`);
    }
    try { new URL(input.oidc.jwksUrl); } catch { throw new GatewayConfigError(`gateway oidc.jwksUrl ${JSON.stringify(input.oidc.jwksUrl)} is not a URL`); }
  }
  return {
    site, token: input.token, user, ...(input.oidc ? { oidc: input.oidc } : {}), host: input.host ?? '127.0.0.1', port, bodyLimitBytes, timeoutMs: input.timeoutMs ?? 10_000,
    longTimeoutMs: input.longTimeoutMs ?? 30 * 60_000, authFailureLimit,
    consoleDir: input.consoleDir ?? process.env['CAIRN_CONSOLE_DIR'] ?? DEFAULT_CONSOLE_DIR,
  };
}
