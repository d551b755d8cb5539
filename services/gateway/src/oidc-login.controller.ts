// Console single sign-on through the site's OIDC provider (authorization code + PKCE), where
// the gateway has one with a client id: /v1/session/oidc sends the browser to the provider,
// /v1/session/oidc/callback takes the code back, exchanges it, checks the token exactly as a
// bearer JWT is checked, and signs the browser in (session cookie, as POST /v1/session does).
import { Controller, Inject, Req, Res } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { GATEWAY_AUTH, GATEWAY_CONFIG, GATEWAY_LOGGER } from './gateway.tokens.ts';
import type { GatewayConfig } from './gateway.config.ts';
import type { Authenticator } from './auth.guard.ts';
import { Input, Route } from './route.decorator.ts';
import type { HttpRequest, HttpResponse } from './http.types.ts';
import { ProblemError } from './problem.ts';
import { cookieValue, sessionCookie } from './session.ts';
import { OIDC_CALLBACK_PATH, OIDC_COOKIE, authorizationRequest, clearedLoginCookie, loginCookie, newLogin, verifierFor } from './oidc-login.ts';

interface Endpoints { authorization: string; token: string }

const overHttps = (req: HttpRequest) => req.headers['x-forwarded-proto'] === 'https';
const origin = (req: HttpRequest) => `${overHttps(req) ? 'https' : 'http'}://${String(req.headers['x-forwarded-host'] ?? req.headers.host ?? '127.0.0.1')}`;

@Controller()
export class OidcLoginController {
  private endpoints: Promise<Endpoints> | undefined;

  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(GATEWAY_AUTH) private readonly auth: Authenticator,
    @Inject(GATEWAY_LOGGER) private readonly logger: Logger,
  ) {}

  @Route({
    method: 'GET', path: '/v1/session/options', operationId: 'signInOptions', tag: 'access', public: true,
    summary: 'How the console can sign in: API token always, single sign-on where an OIDC provider with a client id is configured',
    response: Type.Object({ token: Type.Boolean(), oidc: Type.Union([Type.Null(), Type.Object({ issuer: Type.String() })]) }, { $id: 'SignInOptions' }),
  })
  options() {
    const o = this.config.oidc;
    return { token: true, oidc: o?.clientId ? { issuer: o.issuer } : null };
  }

  @Route({
    method: 'GET', path: '/v1/session/oidc', operationId: 'signInOidc', tag: 'access', public: true, status: 302, contentType: 'text/plain',
    summary: 'Console single sign-on: redirects to the OIDC provider (authorization code with PKCE)', response: Type.String(), problems: [404, 503],
  })
  async start(@Req() req: HttpRequest, @Res({ passthrough: true }) res: HttpResponse) {
    const clientId = this.clientId();
    const endpoints = await this.discover();
    const login = newLogin();
    res.setHeader('Set-Cookie', loginCookie(login.state, login.verifier, overHttps(req)));
    res.setHeader('Location', authorizationRequest(endpoints.authorization, { clientId, redirectUri: `${origin(req)}${OIDC_CALLBACK_PATH}`, state: login.state, challenge: login.challenge }));
    return 'to the identity provider';
  }

  @Route({
    method: 'GET', path: OIDC_CALLBACK_PATH, operationId: 'signInOidcCallback', tag: 'access', public: true, status: 303, contentType: 'text/plain',
    summary: 'Where the OIDC provider sends the browser back: the code is exchanged and checked, the session cookie set, the console opened',
    query: Type.Object({
      code: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })), state: Type.String({ minLength: 1, maxLength: 256 }),
      error: Type.Optional(Type.String({ maxLength: 256 })), error_description: Type.Optional(Type.String({ maxLength: 1024 })),
      session_state: Type.Optional(Type.String({ maxLength: 1024 })), iss: Type.Optional(Type.String({ maxLength: 1024 })),
    }, { additionalProperties: false }),
    response: Type.String(), problems: [401, 404, 503],
  })
  async callback(@Input('query') q: { code?: string; state: string; error?: string; error_description?: string }, @Req() req: HttpRequest, @Res({ passthrough: true }) res: HttpResponse) {
    const clientId = this.clientId();
    const secure = overHttps(req);
    res.setHeader('Set-Cookie', clearedLoginCookie(secure));
    if (q.error) throw new ProblemError(401, 'unauthorized', `the identity provider refused the sign-in: ${q.error}${q.error_description ? ` (${q.error_description})` : ''}`);
    const verifier = verifierFor(cookieValue(req.headers.cookie, OIDC_COOKIE), q.state);
    if (!verifier || !q.code) throw new ProblemError(401, 'unauthorized', 'this sign-in was not started here or took too long (state does not match): start again from the console');
    const endpoints = await this.discover();
    let tokens: { access_token?: unknown; id_token?: unknown };
    try {
      const r = await fetch(endpoints.token, {
        method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code: q.code, redirect_uri: `${origin(req)}${OIDC_CALLBACK_PATH}`, client_id: clientId, code_verifier: verifier }),
        signal: AbortSignal.timeout(10_000),
      });
      tokens = await r.json() as typeof tokens;
      if (!r.ok) throw new Error(`${r.status}: ${JSON.stringify(tokens).slice(0, 300)}`);
    } catch (e) {
      this.logger.warn({ err: e }, 'OIDC code exchange failed');
      throw new ProblemError(503, 'service-unavailable', `the identity provider's token endpoint did not give a token: ${(e as Error).message}`);
    }
    // The access token when it is a JWT for this API (audience), else the ID token: whichever the verifier accepts.
    const candidates = [tokens.access_token, tokens.id_token].filter((t): t is string => typeof t === 'string');
    const source = req.socket?.remoteAddress ?? 'unknown';
    this.auth.checkThrottle(source);
    let lastError: unknown = new ProblemError(401, 'unauthorized', 'the identity provider gave no token');
    for (const token of candidates) {
      try {
        await this.auth.authenticate(token, req.cairn?.traceparent, source);
        res.setHeader('Set-Cookie', [clearedLoginCookie(secure), sessionCookie(token, secure)]);
        res.setHeader('Location', '/');
        return 'signed in';
      } catch (e) {
        lastError = e;
      }
    }
    throw lastError;
  }

  private clientId(): string {
    const id = this.config.oidc?.clientId;
    if (!id) throw new ProblemError(404, 'not-found', 'single sign-on is not configured on this gateway (OIDC client id)', { code: 'no_oidc' });
    return id;
  }

  private discover(): Promise<Endpoints> {
    const o = this.config.oidc!;
    if (o.authorizationUrl && o.tokenUrl) return Promise.resolve({ authorization: o.authorizationUrl, token: o.tokenUrl });
    this.endpoints ??= (async () => {
      const url = `${o.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
      const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
      const d = await r.json() as { authorization_endpoint?: unknown; token_endpoint?: unknown };
      if (!r.ok || typeof d.authorization_endpoint !== 'string' || typeof d.token_endpoint !== 'string') throw new Error(`${url} names no authorization and token endpoints`);
      return { authorization: o.authorizationUrl ?? d.authorization_endpoint, token: o.tokenUrl ?? d.token_endpoint };
    })();
    return this.endpoints.catch((e: unknown) => {
      this.endpoints = undefined;
      throw new ProblemError(503, 'service-unavailable', `the identity provider cannot be reached: ${(e as Error).message}`);
    });
  }
}
