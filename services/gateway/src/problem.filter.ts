// Global exception filter: every error leaving a route, Nest's own included (unknown route,
// body too large, malformed JSON), is answered as problem JSON. Internals are logged, not shown.
import { Catch, HttpException, Inject, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { HttpRequest, HttpResponse } from './http.types.ts';
import type { Logger } from 'pino';
import { CursorError } from '@cairn/catalogue-client';
import { PROBLEM_CONTENT_TYPE, ProblemError, problem, type Problem } from './problem.ts';
import { GATEWAY_LOGGER } from './gateway.tokens.ts';
import { redactUrl } from './edge-hardening.ts';

@Catch()
export class ProblemFilter implements ExceptionFilter {
  constructor(@Inject(GATEWAY_LOGGER) private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const ctx = host.switchToHttp();
    const req = ctx.getRequest<HttpRequest>();
    const res = ctx.getResponse<HttpResponse>();
    // The path as sent, less any credential in its query (never echoed nor logged).
    const path = redactUrl(req.originalUrl ?? req.url);
    const body = this.toProblem(exception, path);
    // Expected refusals (a service down, a timeout) are logged with the request; surprises with their stack.
    if (body.status >= 500 && !(exception instanceof ProblemError)) {
      this.logger.error({ err: exception, path, status: body.status }, 'request failed');
    }
    if (body.status === 401) res.setHeader('WWW-Authenticate', 'Bearer realm="cairn"');
    if (exception instanceof ProblemError && exception.extra.retryAfterS !== undefined) res.setHeader('Retry-After', String(exception.extra.retryAfterS));
    res.status(body.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
  }

  private toProblem(e: unknown, instance: string): Problem {
    if (e instanceof ProblemError) return e.toProblem(instance);
    // A list's `after` that no page of it handed out (pageOf, @cairn/catalogue-client).
    if (e instanceof CursorError) return problem(400, 'validation', e.message, instance);
    if (e instanceof HttpException) {
      const status = e.getStatus();
      const kinds: Record<number, string> = { 404: 'not-found', 405: 'method-not-allowed', 413: 'payload-too-large', 401: 'unauthorized' };
      return problem(status, kinds[status] ?? (status < 500 ? 'bad-request' : 'internal'), e.message, instance);
    }
    // Errors raised by the body parser carry an HTTP status of their own.
    const status = typeof e === 'object' && e !== null ? Number((e as { status?: unknown }).status) : NaN;
    if (status === 413) return problem(413, 'payload-too-large', 'request body is larger than the gateway accepts', instance);
    if (status === 415) return problem(415, 'unsupported-media-type', (e as Error).message, instance);
    if (status >= 400 && status < 500) return problem(400, 'bad-request', `request body could not be read: ${(e as Error).message}`, instance);
    return problem(500, 'internal', 'the gateway failed to handle this request; see its log', instance);
  }
}
