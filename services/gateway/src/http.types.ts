// The few parts of Express's request and response the gateway touches (Express ships no
// types here, and the gateway should not lean on more than this anyway).
import type { IncomingHttpHeaders } from 'node:http';
import type { Role } from '@cairn/contracts';

export interface HttpRequest {
  readonly method: string;
  readonly url: string;
  readonly originalUrl?: string;
  readonly headers: IncomingHttpHeaders;
  body?: unknown;
  readonly query: Record<string, unknown>;
  readonly params: Record<string, string>;
  /** The connection (the caller's address, for throttling failed authentication). */
  readonly socket?: { readonly remoteAddress?: string };
  /** Set by the gateway's request middleware. */
  cairn?: RequestContext;
}

export interface HttpResponse {
  statusCode: number;
  status(code: number): HttpResponse;
  setHeader(name: string, value: string | string[]): void;
  type(contentType: string): HttpResponse;
  send(body: string): void;
  on(event: 'finish', listener: () => void): void;
}

/** Who is calling and under which trace: attached to each request at the edge. */
export interface RequestContext {
  readonly requestId: string;
  readonly traceparent: string;
  readonly startedAt: number;
  /** Set once authenticated. */
  actor?: { kind: 'user'; id: string };
  /** The caller's roles, once authenticated. */
  roles?: readonly Role[];
}
