// The console's single sign-on with an OIDC provider, as pure parts: PKCE (RFC 7636, S256), the
// authorization request, and the short-lived cookie that carries state and verifier across the
// provider's redirect. The gateway is a public client: no client secret exists to leak.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const OIDC_COOKIE = 'cairn_oidc';
export const OIDC_CALLBACK_PATH = '/v1/session/oidc/callback';
const LOGIN_MAX_AGE_S = 600;

const b64url = (b: Buffer) => b.toString('base64url');

export function newLogin(): { state: string; verifier: string; challenge: string } {
  const verifier = b64url(randomBytes(32));
  return { state: b64url(randomBytes(16)), verifier, challenge: b64url(createHash('sha256').update(verifier).digest()) };
}

export function authorizationRequest(endpoint: string, o: { clientId: string; redirectUri: string; state: string; challenge: string }): string {
  const url = new URL(endpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', o.clientId);
  url.searchParams.set('redirect_uri', o.redirectUri);
  url.searchParams.set('scope', 'openid profile');
  url.searchParams.set('state', o.state);
  url.searchParams.set('code_challenge', o.challenge);
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

/** SameSite=Lax: the provider's redirect back is a top-level cross-site GET, which must carry it. */
export function loginCookie(state: string, verifier: string, secure: boolean): string {
  return `${OIDC_COOKIE}=${state}.${verifier}; Path=${OIDC_CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=${LOGIN_MAX_AGE_S}${secure ? '; Secure' : ''}`;
}

export function clearedLoginCookie(secure: boolean): string {
  return `${OIDC_COOKIE}=; Path=${OIDC_CALLBACK_PATH}; HttpOnly; SameSite=Lax; Max-Age=0${secure ? '; Secure' : ''}`;
}

/** The verifier of this login when `state` is the one the cookie was issued with, else undefined. */
export function verifierFor(cookie: string | undefined, state: string): string | undefined {
  if (!cookie) return undefined;
  const dot = cookie.indexOf('.');
  if (dot < 0) return undefined;
  const expected = Buffer.from(cookie.slice(0, dot));
  const given = Buffer.from(state);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return undefined;
  return cookie.slice(dot + 1) || undefined;
}
