// Browser sessions of the web console: the API token (or OIDC token) the user signed in with is
// kept in an HttpOnly, SameSite=Strict cookie, so scripts in the page never see it. A request
// authenticated by that cookie and able to change something must also prove it comes from the
// console itself (CSRF): a custom header that a cross-site form or image cannot send without a
// CORS preflight the gateway never grants, and an Origin, when the browser sends one, equal to
// the gateway's own. Bearer-token callers (CLI, scripts) are unaffected.
export const SESSION_COOKIE = 'cairn_session';
export const CSRF_HEADER = 'x-cairn-csrf';
/** How long a console session lasts without signing in again (the token's own expiry still applies). */
export const SESSION_MAX_AGE_S = 12 * 3600;

/** The value of one cookie in a `Cookie` header, or undefined. */
export function cookieValue(header: unknown, name: string): string | undefined {
  if (typeof header !== 'string' || header.length > 16_384) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    const raw = part.slice(eq + 1).trim();
    try {
      return decodeURIComponent(raw);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** `Set-Cookie` for a new session (`secure` when the console is reached over HTTPS). */
export function sessionCookie(token: string, secure: boolean): string {
  return `${SESSION_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${SESSION_MAX_AGE_S}${secure ? '; Secure' : ''}`;
}

/** `Set-Cookie` that ends the session. */
export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Why a cookie-authenticated request is refused as a possible cross-site forgery, or undefined
 * when it may go on. Safe methods change nothing and pass.
 */
export function csrfRefusal(req: { method: string; headers: Record<string, unknown> }): string | undefined {
  if (SAFE_METHODS.has(req.method.toUpperCase())) return undefined;
  if (typeof req.headers[CSRF_HEADER] !== 'string') return `a console request that changes something must carry the ${CSRF_HEADER} header`;
  const origin = req.headers['origin'];
  if (typeof origin === 'string' && origin !== 'null') {
    const host = req.headers['x-forwarded-host'] ?? req.headers['host'];
    let originHost: string;
    try {
      originHost = new URL(origin).host;
    } catch {
      return `the request's Origin ${JSON.stringify(origin.slice(0, 200))} is not a URL`;
    }
    if (typeof host !== 'string' || originHost !== host) return `the request comes from ${origin.slice(0, 200)}, not from this gateway's console`;
  } else if (origin === 'null') {
    return 'the request comes from an opaque origin';
  }
  return undefined;
}
