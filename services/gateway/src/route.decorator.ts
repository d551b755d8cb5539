// One decorator per route declares everything the edge needs: method and path for Nest, the
// schemas of params, query and body for validation, and the response for the OpenAPI document.
// The document is generated from the same declarations, so it cannot drift from the routes.
import { HttpCode, RequestMethod, SetMetadata, applyDecorators, createParamDecorator, type ExecutionContext } from '@nestjs/common';
import { RequestMapping } from '@nestjs/common';
import type { TObject, TSchema } from '@sinclair/typebox';
import type { HttpRequest } from './http.types.ts';
import type { Permission } from './roles.ts';
import type { Role } from '@cairn/contracts';

export interface RouteSpec {
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** Express-style path (`/v1/jobs/:jobId`). */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: string;
  readonly params?: TObject;
  readonly query?: TObject;
  readonly body?: TSchema;
  readonly response: TSchema;
  /** Media type of the success response (application/json unless said). */
  readonly contentType?: string;
  /** Success status (200 unless said). */
  readonly status?: number;
  /** Other success statuses with the same media type (206 for a byte range, 304 not modified). */
  readonly alsoSucceeds?: ReadonlyArray<{ readonly status: number; readonly description: string }>;
  /** Problem statuses worth documenting besides 400, 401 and 500. */
  readonly problems?: readonly number[];
  /** No bearer token needed. */
  readonly public?: boolean;
  /** What the caller's roles must grant (default: read for GET, admin otherwise). */
  readonly permission?: Permission;
}

export const ROUTE_SPEC = 'cairn:route-spec';
/** Every declared route, in declaration order (read by the OpenAPI generator). */
export const ROUTE_SPECS: RouteSpec[] = [];

export function Route(spec: RouteSpec): MethodDecorator {
  ROUTE_SPECS.push(spec);
  return applyDecorators(
    RequestMapping({ path: spec.path, method: RequestMethod[spec.method] }),
    HttpCode(spec.status ?? 200),
    SetMetadata(ROUTE_SPEC, spec),
  );
}

export function routeSpecOf(handler: object): RouteSpec | undefined {
  return Reflect.getMetadata(ROUTE_SPEC, handler) as RouteSpec | undefined;
}

export type InputSource = 'params' | 'query' | 'body';

/** A raw request part and the schema it must match; the global pipe turns it into the checked value. */
export class EdgeInput {
  constructor(readonly source: InputSource, readonly schema: TSchema | undefined, readonly raw: unknown, readonly route: string) {}
}

/** Injects a validated request part (`@Input('body')`), checked by the global EdgeValidationPipe. */
export const Input = createParamDecorator((source: InputSource, ctx: ExecutionContext) => {
  const req = ctx.switchToHttp().getRequest<HttpRequest>();
  const spec = routeSpecOf(ctx.getHandler());
  return new EdgeInput(source, spec?.[source], req[source], spec?.operationId ?? 'route');
});

/** What a command needs to know of the caller: who, under which trace, with which idempotency key. */
export interface Caller {
  readonly actor: { kind: 'user'; id: string };
  readonly roles: readonly Role[];
  readonly traceparent: string;
  readonly idempotencyKey?: string;
}

export const CallerOf = createParamDecorator((_: unknown, ctx: ExecutionContext): Caller => {
  const req = ctx.switchToHttp().getRequest<HttpRequest>();
  const c = req.cairn;
  if (!c?.actor) throw new Error('CallerOf used on a route without an authenticated caller');
  const key = req.headers['idempotency-key'];
  return { actor: c.actor, roles: c.roles ?? [], traceparent: c.traceparent, ...(typeof key === 'string' && key.length > 0 ? { idempotencyKey: key } : {}) };
});
