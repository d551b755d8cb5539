// Authentication and authorisation of every non-public route: the bearer token is an API token
// (looked up by hash in the identity store) or, where a provider is configured, an OIDC JWT.
// The route's permission must be granted by one of the caller's roles, else 403 and an
// AccessDenied event. The first use of a token (per gateway process) and each OIDC token
// record a SignedIn event; requests after that record nothing, so the log is not flooded.
import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { Logger } from 'pino';
import { GATEWAY_AUTH } from './gateway.tokens.ts';
import type { HttpRequest } from './http.types.ts';
import { ProblemError } from './problem.ts';
import { routeSpecOf, type RouteSpec } from './route.decorator.ts';
import { allows, type Permission } from './roles.ts';
import type { IdentityStore, Principal } from './identity.store.ts';
import { looksLikeJwt, OidcError, type OidcVerifier } from './oidc.ts';
import { AuthThrottle, type AuthFailedData } from './auth-throttle.ts';
import { cookieValue, csrfRefusal, SESSION_COOKIE } from './session.ts';

const FAILURES: Record<string, string> = {
  unknown: 'the bearer token is not valid',
  revoked: 'the bearer token was revoked',
  expired: 'the bearer token has expired',
  'user-disabled': 'the token\'s user is disabled',
  'no-user': 'the token\'s user does not exist',
};

/** The permission a route needs: declared, else read for GET and admin for anything else (fail closed). */
export function permissionOf(spec: RouteSpec | undefined): Permission {
  return spec?.permission ?? (spec?.method === 'GET' ? 'read' : 'admin');
}

export class Authenticator {
  private readonly signedIn = new Set<string>();
  private readonly lastDenied = new Map<string, number>();
  private readonly throttle: AuthThrottle;
  private readonly flushTimer: NodeJS.Timeout;

  constructor(
    readonly identities: IdentityStore,
    private readonly serviceActor: { kind: 'service'; id: string },
    private readonly logger: Logger,
    private readonly oidc?: OidcVerifier,
    throttle: { readonly limit?: number } = {},
  ) {
    this.throttle = new AuthThrottle(throttle);
    this.flushTimer = setInterval(() => this.report(this.throttle.flush(Date.now())), 10_000);
    this.flushTimer.unref();
  }

  close(): void {
    clearInterval(this.flushTimer);
    this.report(this.throttle.flush(Number.POSITIVE_INFINITY));
  }

  /** 429 while this source is blocked for failing to authenticate too often (the attempt is counted). */
  checkThrottle(source: string): void {
    const now = Date.now();
    const wait = this.throttle.blockedFor(now, source);
    if (wait <= 0) return;
    this.report(this.throttle.failure(now, source, 'throttled'));
    throw new ProblemError(429, 'too-many-failures', `too many failed authentications from ${source}: try again in ${Math.ceil(wait / 1000)} s`, { code: 'throttled', retryAfterS: Math.ceil(wait / 1000) });
  }

  private report(records: readonly AuthFailedData[]): void {
    for (const data of records) {
      this.logger.warn(data, 'authentication failures');
      void this.identities.recordAccess('AuthFailed', data, this.serviceActor).catch((e: unknown) => this.logger.warn({ err: e }, 'AuthFailed not recorded'));
    }
  }

  /** Counts a failure of `source` (and of the token's user, when known) and throws its 401, or 429 once blocked. */
  private failed(source: string, reason: string, detail: string, userId?: string): never {
    const now = Date.now();
    this.report(this.throttle.failure(now, source, reason, userId));
    this.logger.info({ reason, source, ...(userId ? { userId } : {}) }, 'authentication refused');
    const wait = this.throttle.blockedFor(now, source, userId);
    if (wait > 0) throw new ProblemError(429, 'too-many-failures', `too many failed authentications: try again in ${Math.ceil(wait / 1000)} s`, { code: 'throttled', retryAfterS: Math.ceil(wait / 1000) });
    throw new ProblemError(401, 'unauthorized', detail);
  }

  /** The principal behind a bearer token; throws a 401 problem when there is none (429 when failing too often). */
  async authenticate(token: string, traceparent?: string, source = 'unknown'): Promise<Principal> {
    let principal: Principal;
    let sessionKey: string;
    if (this.oidc && looksLikeJwt(token)) {
      try {
        const id = await this.oidc.verify(token);
        principal = { actor: { kind: 'user', id: id.userId }, roles: id.roles, method: 'oidc', issuer: id.issuer };
        sessionKey = `oidc:${id.issuer}:${id.sessionKey}`;
      } catch (e) {
        if (e instanceof OidcError) this.failed(source, 'oidc', e.message);
        throw e;
      }
    } else {
      const r = await this.identities.authenticate(token);
      if (typeof r === 'string') {
        const userId = r === 'unknown' ? undefined : (await this.identities.tokenOwner(token));
        this.failed(source, r, FAILURES[r] ?? 'the bearer token is not valid', userId);
      }
      principal = r;
      sessionKey = `token:${r.tokenId}`;
    }
    if (!this.signedIn.has(sessionKey)) {
      if (this.signedIn.size > 100_000) this.signedIn.clear();
      this.signedIn.add(sessionKey);
      await this.identities.recordAccess('SignedIn', {
        userId: principal.actor.id, method: principal.method, roles: [...principal.roles],
        ...(principal.tokenId ? { tokenId: principal.tokenId } : {}), ...(principal.issuer ? { issuer: principal.issuer.slice(0, 1024) } : {}),
      }, principal.actor, traceparent).catch((e: unknown) => this.logger.warn({ err: e }, 'SignedIn not recorded'));
    }
    return principal;
  }

  /** Records a refusal (at most one per user, operation and path every 10 s: a loop of the same refused request does not flood the log) and returns the 403 problem. */
  async denied(principal: Principal, operation: string, needed: string, req: { method: string; path: string; traceparent?: string }): Promise<ProblemError> {
    const key = `${principal.actor.id}\u0000${operation}\u0000${needed}\u0000${req.method} ${req.path}`;
    const now = Date.now();
    if ((this.lastDenied.get(key) ?? 0) + 10_000 <= now) {
      this.lastDenied.set(key, now);
      if (this.lastDenied.size > 10_000) this.lastDenied.clear();
      await this.identities.recordAccess('AccessDenied', {
        userId: principal.actor.id, roles: [...principal.roles], operation, needed, method: req.method.slice(0, 16), path: req.path.slice(0, 2048),
      }, principal.actor, req.traceparent).catch((e: unknown) => this.logger.warn({ err: e }, 'AccessDenied not recorded'));
    }
    this.logger.info({ actor: principal.actor.id, operation, needed }, 'access denied');
    return new ProblemError(403, 'forbidden', needed === 'four-eyes'
      ? 'the same administrator cannot approve their own request: a second administrator must'
      : `${operation} needs the ${needed} permission, which none of your roles (${principal.roles.join(', ') || 'none'}) grants`, { code: needed === 'four-eyes' ? 'four_eyes' : 'forbidden' });
  }

  get service(): { kind: 'service'; id: string } {
    return this.serviceActor;
  }
}

@Injectable()
export class AuthGuard implements CanActivate {
  constructor(@Inject(GATEWAY_AUTH) private readonly auth: Authenticator) {}

  async canActivate(ctx: ExecutionContext): Promise<boolean> {
    const spec = routeSpecOf(ctx.getHandler());
    if (spec?.public) return true;
    const req = ctx.switchToHttp().getRequest<HttpRequest>();
    const source = req.socket?.remoteAddress ?? 'unknown';
    this.auth.checkThrottle(source);
    const header = req.headers.authorization;
    const match = typeof header === 'string' && header.length <= 8192 ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    // The console's session cookie stands in for the header; a change made with it must pass the CSRF check.
    const cookie = match || header !== undefined ? undefined : cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (!match && !cookie) throw new ProblemError(401, 'unauthorized', 'send an API token as `Authorization: Bearer <token>`');
    if (cookie) {
      const refusal = csrfRefusal(req);
      if (refusal) throw new ProblemError(403, 'csrf', refusal, { code: 'csrf' });
    }
    const principal = await this.auth.authenticate(match ? match[1]! : cookie!, req.cairn?.traceparent, source);
    if (req.cairn) {
      req.cairn.actor = principal.actor;
      req.cairn.roles = principal.roles;
    }
    const needed = permissionOf(spec);
    if (!allows(principal.roles, needed)) {
      throw await this.auth.denied(principal, spec?.operationId ?? 'route', needed, {
        method: req.method, path: (req.originalUrl ?? req.url).split('?')[0]!, ...(req.cairn ? { traceparent: req.cairn.traceparent } : {}),
      });
    }
    return true;
  }
}
