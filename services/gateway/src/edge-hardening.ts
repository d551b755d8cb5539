// What every HTTP response and request of the gateway goes through before any route
// (docs/gateway.md, Edges): security headers (helmet) on every answer, `no-store` on
// everything but static files, and credentials refused in URLs (a token in a query string ends
// up in proxies' and browsers' histories and in logs), so no log line ever carries one.
import helmet from 'helmet';
import { ProblemError } from './problem.ts';

/** Query parameters that carry a credential: refused, and never logged with their value. */
const CREDENTIAL_PARAMS = /^(access_token|token|api_key|apikey|id_token|refresh_token|password|passphrase|secret)$/i;

type Next = (e?: unknown) => void;
interface Req { readonly originalUrl?: string; readonly url: string }
interface Res { setHeader(name: string, value: string): unknown }

/**
 * helmet with a policy a same-origin web console works under: scripts, styles, images and
 * API calls from the gateway's own origin only, never framed (frame-ancestors 'none').
 */
export function securityHeaders(): (req: unknown, res: unknown, next: Next) => void {
  const h = helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'", 'data:'], fontSrc: ["'self'"],
        connectSrc: ["'self'"], objectSrc: ["'none'"], baseUri: ["'none'"], formAction: ["'self'"], frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: false, // the gateway speaks plain HTTP on loopback unless a proxy terminates TLS
  });
  return (req, res, next) => {
    // API answers are never cached; a static file server after this may say otherwise for its files.
    (res as Res).setHeader('Cache-Control', 'no-store');
    h(req as never, res as never, next);
  };
}

/** The URL with the values of credential-like query parameters replaced (for logs). */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const parts = url.slice(q + 1).split('&').map((kv) => {
    const eq = kv.indexOf('=');
    const name = eq < 0 ? kv : kv.slice(0, eq);
    let decoded = name;
    try { decoded = decodeURIComponent(name); } catch { /* keep as sent */ }
    return eq >= 0 && CREDENTIAL_PARAMS.test(decoded) ? `${name}=[redacted]` : kv;
  });
  return `${url.slice(0, q)}?${parts.join('&')}`;
}

/** Names the credential-like query parameters of a URL (none: empty). */
export function credentialParams(url: string): string[] {
  const q = url.indexOf('?');
  if (q < 0) return [];
  return url.slice(q + 1).split('&').map((kv) => {
    const name = kv.split('=')[0]!;
    try { return decodeURIComponent(name); } catch { return name; }
  }).filter((n) => CREDENTIAL_PARAMS.test(n));
}

/** Refuses a request that carries a credential in its URL (400), whatever the route. */
export function refuseCredentialsInUrl(): (req: unknown, res: unknown, next: Next) => void {
  return (req, _res, next) => {
    const r = req as Req;
    const found = credentialParams(r.originalUrl ?? r.url);
    if (found.length) {
      next(new ProblemError(400, 'credential-in-url', `credentials are not accepted in the URL (${found.join(', ')}): send the token as \`Authorization: Bearer <token>\`, and treat the one sent here as exposed`, { code: 'credential_in_url' }));
      return;
    }
    next();
  };
}
