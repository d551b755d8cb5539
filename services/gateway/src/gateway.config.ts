// The gateway's configuration, checked once at start-up into one typed object.
import { assertSite } from '@cairn/contracts';

export interface GatewayConfig {
  readonly site: string;
  /** Static bearer token every /v1 request must carry. */
  readonly token: string;
  /** Who requests made with the token are recorded as (the actor of their commands). */
  readonly user: string;
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Largest request body accepted, in bytes. */
  readonly bodyLimitBytes: number;
  /** How long a command or query may take before the gateway answers 504/503. */
  readonly timeoutMs: number;
  /** The same for commands that answer when their work is done (a restore). */
  readonly longTimeoutMs: number;
}

export interface GatewayConfigInput {
  site: string;
  token: string;
  user?: string;
  host?: string;
  port?: number;
  bodyLimitBytes?: number;
  timeoutMs?: number;
  longTimeoutMs?: number;
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
  const user = input.user ?? 'operator';
  if (!/^[A-Za-z0-9._@-]{1,256}$/.test(user)) throw new GatewayConfigError(`gateway user ${JSON.stringify(user)} is not a valid actor id`);
  return {
    site, token: input.token, user, host: input.host ?? '127.0.0.1', port, bodyLimitBytes, timeoutMs: input.timeoutMs ?? 10_000,
    longTimeoutMs: input.longTimeoutMs ?? 30 * 60_000,
  };
}
