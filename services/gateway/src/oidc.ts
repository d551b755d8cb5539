// OIDC/JWT sign-in: a bearer token that is a JWT is verified (signature against the provider's
// JWKS, issuer, audience, expiry) with `jose`; the user is a claim (`sub` by default) and the
// roles come from a claim (`roles` by default), optionally through a map of provider groups to
// Cairn roles. Nothing is stored: the provider is the user directory for these users.
import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ROLES, type Role } from '@cairn/contracts';

export interface OidcConfig {
  /** Expected `iss`. */
  readonly issuer: string;
  /** Expected `aud`. */
  readonly audience: string;
  /** Where the provider's signing keys are (its `jwks_uri`). */
  readonly jwksUrl: string;
  /** Claim naming the user (default `sub`). */
  readonly userClaim?: string;
  /** Claim holding roles or groups: a string or an array of strings (default `roles`). */
  readonly rolesClaim?: string;
  /** Provider group -> Cairn role; without it the claim's values must be Cairn role names. */
  readonly roleMap?: Readonly<Record<string, Role>>;
  /** Accepted signature algorithms (default RS256, ES256, EdDSA). */
  readonly algorithms?: readonly string[];
  /** The console's sign-in through the provider (authorization code + PKCE): its client id there. */
  readonly clientId?: string;
  /** The provider's authorization and token endpoints (default: from its discovery document). */
  readonly authorizationUrl?: string;
  readonly tokenUrl?: string;
}

export interface OidcIdentity {
  readonly userId: string;
  readonly roles: Role[];
  readonly issuer: string;
  /** Identifies this token for one SignedIn per token (jti, else sub+iat). */
  readonly sessionKey: string;
}

export class OidcError extends Error {
  override readonly name = 'OidcError';
}

/** Three base64url parts: looks like a JWS compact serialisation. */
export function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token);
}

export class OidcVerifier {
  private readonly keys: JWTVerifyGetKey;

  constructor(private readonly config: OidcConfig, keys?: JWTVerifyGetKey) {
    this.keys = keys ?? createRemoteJWKSet(new URL(config.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 });
  }

  async verify(token: string): Promise<OidcIdentity> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        issuer: this.config.issuer, audience: this.config.audience,
        algorithms: [...(this.config.algorithms ?? ['RS256', 'ES256', 'EdDSA'])], clockTolerance: 30,
      }));
    } catch (e) {
      throw new OidcError(`the OIDC token is not valid: ${(e as Error).message}`);
    }
    const user = payload[this.config.userClaim ?? 'sub'];
    if (typeof user !== 'string' || user.length === 0 || user.length > 256) throw new OidcError(`the OIDC token has no usable ${this.config.userClaim ?? 'sub'} claim`);
    const raw = payload[this.config.rolesClaim ?? 'roles'];
    const values = typeof raw === 'string' ? raw.split(/[\s,]+/) : Array.isArray(raw) ? raw.filter((v): v is string => typeof v === 'string') : [];
    const map = this.config.roleMap;
    const roles = [...new Set(values.map((v) => (map ? map[v] : (ROLES as readonly string[]).includes(v) ? v as Role : undefined)).filter((r): r is Role => r !== undefined))];
    const sessionKey = typeof payload.jti === 'string' ? `jti:${payload.jti}` : `sub:${user}:${payload.iat ?? ''}`;
    return { userId: user, roles, issuer: String(payload.iss), sessionKey };
  }
}
