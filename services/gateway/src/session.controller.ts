// Console sign-in and sign-out: the token typed into the sign-in page is checked like a bearer
// token (SignedIn is recorded on its first use) and kept in an HttpOnly cookie (session.ts).
import { Controller, Inject, Req, Res } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { GATEWAY_AUTH } from './gateway.tokens.ts';
import type { Authenticator } from './auth.guard.ts';
import { Input, Route } from './route.decorator.ts';
import { WhoAmI } from './gateway.schemas.ts';
import type { HttpRequest, HttpResponse } from './http.types.ts';
import { PERMISSIONS, allows } from './roles.ts';
import { clearedSessionCookie, sessionCookie } from './session.ts';

const SignInBody = Type.Object({ token: Type.String({ minLength: 16, maxLength: 8192, description: 'An API token, or an OIDC token where the gateway has a provider' }) }, { $id: 'SignInRequest', additionalProperties: false });

const overHttps = (req: HttpRequest) => req.headers['x-forwarded-proto'] === 'https';

@Controller()
export class SessionController {
  constructor(@Inject(GATEWAY_AUTH) private readonly auth: Authenticator) {}

  @Route({
    method: 'POST', path: '/v1/session', operationId: 'signIn', tag: 'access', public: true,
    summary: 'Console sign-in: checks the token and keeps it in an HttpOnly, SameSite=Strict session cookie',
    description: 'Later requests from the browser are authenticated by the cookie; those that change something must carry the `X-Cairn-CSRF` header and come from the gateway\'s own origin.',
    body: SignInBody, response: WhoAmI, problems: [401, 429],
  })
  async signIn(@Input('body') body: { token: string }, @Req() req: HttpRequest, @Res({ passthrough: true }) res: HttpResponse) {
    // The same throttle as bearer tokens: a sign-in page is no way around it.
    const source = req.socket?.remoteAddress ?? 'unknown';
    this.auth.checkThrottle(source);
    const principal = await this.auth.authenticate(body.token, req.cairn?.traceparent, source);
    res.setHeader('Set-Cookie', sessionCookie(body.token, overHttps(req)));
    res.setHeader('Cache-Control', 'no-store');
    return { actor: principal.actor, roles: [...principal.roles], permissions: PERMISSIONS.filter((p) => allows(principal.roles, p)) };
  }

  @Route({
    method: 'POST', path: '/v1/session/end', operationId: 'signOut', tag: 'access', public: true, status: 204,
    summary: 'Console sign-out: clears the session cookie', response: Type.Null(),
  })
  signOut(@Req() req: HttpRequest, @Res({ passthrough: true }) res: HttpResponse) {
    res.setHeader('Set-Cookie', clearedSessionCookie(overHttps(req)));
  }
}
