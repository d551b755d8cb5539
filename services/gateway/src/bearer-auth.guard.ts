// Authentication for now: one static bearer token from the configuration. Compared in
// constant time; routes declared public (health, the OpenAPI document) need none.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { GATEWAY_CONFIG } from './gateway.tokens.ts';
import type { GatewayConfig } from './gateway.config.ts';
import type { HttpRequest } from './http.types.ts';
import { ProblemError } from './problem.ts';
import { routeSpecOf } from './route.decorator.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

@Injectable()
export class BearerAuthGuard implements CanActivate {
  private readonly expected: Buffer;

  constructor(@Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig) {
    this.expected = digest(config.token);
  }

  canActivate(ctx: ExecutionContext): boolean {
    if (routeSpecOf(ctx.getHandler())?.public) return true;
    const req = ctx.switchToHttp().getRequest<HttpRequest>();
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!match) throw new ProblemError(401, 'unauthorized', 'send the gateway token as `Authorization: Bearer <token>`');
    if (!timingSafeEqual(digest(match[1]!), this.expected)) throw new ProblemError(401, 'unauthorized', 'the bearer token is not valid');
    if (req.cairn) req.cairn.actor = { kind: 'user', id: this.config.user };
    return true;
  }
}
