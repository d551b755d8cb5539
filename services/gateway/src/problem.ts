// Errors as RFC 7807 problem details (`application/problem+json`): one shape for every
// failure the gateway reports, with a stable `type` URI per kind of problem.
import { Type, type Static } from '@sinclair/typebox';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
// A URN, not a URL: nothing needs to be served for a problem type to be stable.
const TYPE_BASE = 'urn:cairn:problem:';

export const Problem = Type.Object({
  type: Type.String({ description: 'URI naming the kind of problem.' }),
  title: Type.String(),
  status: Type.Integer({ minimum: 400, maximum: 599 }),
  detail: Type.Optional(Type.String()),
  instance: Type.Optional(Type.String({ description: 'The request path.' })),
  /** Machine-readable code (a command or query error code when one caused it). */
  code: Type.Optional(Type.String()),
  errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
}, { $id: 'Problem' });
export type Problem = Static<typeof Problem>;

const TITLES: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 422: 'Unprocessable Content', 429: 'Too Many Requests',
  500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
};

/** An error the gateway turns into a problem response as it is. */
export class ProblemError extends Error {
  override readonly name = 'ProblemError';
  constructor(
    readonly status: number,
    /** Slug of the problem type (`validation`, `not-found`, ...). */
    readonly kind: string,
    detail: string,
    readonly extra: { code?: string; errors?: Problem['errors']; retryAfterS?: number } = {},
  ) {
    super(detail);
  }

  toProblem(instance?: string): Problem {
    return problem(this.status, this.kind, this.message, instance, this.extra);
  }
}

export function problem(status: number, kind: string, detail: string, instance?: string, extra: { code?: string; errors?: Problem['errors'] } = {}): Problem {
  return {
    type: `${TYPE_BASE}${kind}`,
    title: TITLES[status] ?? 'Error',
    status,
    detail,
    ...(instance ? { instance } : {}),
    ...(extra.code ? { code: extra.code } : {}),
    ...(extra.errors?.length ? { errors: extra.errors } : {}),
  };
}
