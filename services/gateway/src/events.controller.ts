// GET /v1/events/stream: the console's live feed over server-sent events. Every event of the
// site's log that the caller's roles may see (id = its log position, so a reconnect resumes
// after Last-Event-ID without a gap), and the transfers' progress as it is published (no id:
// ephemeral, not in the log). Open streams end when the gateway closes.
import { Controller, Inject, Injectable, Req, Res, type OnModuleDestroy } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Role } from '@cairn/contracts';
import { GATEWAY_EVENTS, GATEWAY_LOGGER } from './gateway.tokens.ts';
import { Input, Route } from './route.decorator.ts';
import type { HttpRequest } from './http.types.ts';
import { ProblemError } from './problem.ts';
import { eventVisibleTo, resumeFrom, ResumeError, sseFrame } from './event-stream.ts';

/** What the feed reads: the site's log from a position, and the progress messages. */
export interface EventFeedSource {
  headPosition(): Promise<bigint>;
  subscribe(options: { from: bigint }): AsyncIterable<{ readonly event: { readonly streamId: string }; readonly position: bigint }> & { stop(): Promise<void> };
  /** Calls `onProgress` with each progress message of the site's jobs; returns the unsubscribe. */
  progress(onProgress: (jobId: string, progress: unknown) => void): () => void;
}

interface StreamResponse {
  writeHead(status: number, headers: Record<string, string>): void;
  write(chunk: string): boolean;
  end(): void;
  once(event: 'drain' | 'close', listener: () => void): void;
  readonly writableEnded: boolean;
}

const HEARTBEAT_MS = 15_000;

@Injectable()
export class EventFeed implements OnModuleDestroy {
  private readonly open = new Set<() => void>();
  /** Set when the gateway closes: a browser reconnecting in that moment must not hold the server open. */
  private closing = false;

  constructor(
    @Inject(GATEWAY_EVENTS) private readonly source: EventFeedSource | undefined,
    @Inject(GATEWAY_LOGGER) private readonly logger: Logger,
  ) {}

  /** Streams from `from`; with `follow` false, only up to the log's head as it is now, then ends. */
  async serve(roles: readonly Role[], from: bigint | 'head', follow: boolean, res: StreamResponse, onClose: (listener: () => void) => void): Promise<void> {
    if (!this.source) throw new ProblemError(503, 'service-unavailable', 'this gateway has no event log to stream from');
    if (this.closing) throw new ProblemError(503, 'service-unavailable', 'this gateway is shutting down; reconnect in a moment');
    const head = from === 'head' || !follow ? await this.source.headPosition() : 0n;
    const start = from === 'head' ? head : from;
    if (this.closing) throw new ProblemError(503, 'service-unavailable', 'this gateway is shutting down; reconnect in a moment');
    const sub = this.source.subscribe({ from: start });
    let ended = false;
    const heartbeat = setInterval(() => { if (!ended) res.write(': keep-alive\n\n'); }, HEARTBEAT_MS);
    heartbeat.unref();
    const unsubscribeProgress = this.source.progress((jobId, progress) => {
      if (!ended) res.write(sseFrame({ event: 'progress', data: { jobId, ...(progress as object) } }));
    });
    const end = () => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      unsubscribeProgress();
      this.open.delete(end);
      void sub.stop().catch(() => undefined);
      if (!res.writableEnded) res.end();
    };
    this.open.add(end);
    onClose(end);
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no', Connection: 'keep-alive' });
    // The client learns where it stands at once, so even a reconnect before any event resumes right.
    res.write(`retry: 1000\n${sseFrame({ event: 'ready', id: start.toString(), data: { position: start.toString() } })}`);
    if (!follow && start >= head) {
      end();
      return;
    }
    void (async () => {
      try {
        for await (const r of sub) {
          if (ended) break;
          if (!eventVisibleTo(roles, r.event)) {
            if (!follow && r.position >= head) break;
            continue;
          }
          if (!res.write(sseFrame({ event: 'log', id: r.position.toString(), data: { position: r.position.toString(), ...r.event } }))) {
            await new Promise<void>((resolve) => { res.once('drain', resolve); res.once('close', resolve); });
          }
          if (!follow && r.position >= head) break;
        }
      } catch (e) {
        this.logger.warn({ err: e }, 'event stream to the console stopped');
      } finally {
        end();
      }
    })();
  }

  onModuleDestroy(): void {
    this.closing = true;
    for (const end of [...this.open]) end();
  }
}

@Controller()
export class EventsController {
  constructor(@Inject(EventFeed) private readonly feed: EventFeed) {}

  @Route({
    method: 'GET', path: '/v1/events/stream', operationId: 'eventStream', tag: 'events', contentType: 'text/event-stream',
    summary: 'Live feed (server-sent events) of the log events your roles may see, and job progress',
    description: 'Frames: `ready` (id = where the stream starts), `log` (id = the event\'s log position, data = the event), `progress` (no id: `{jobId, disk, bytesDone, bytesPlanned}`). A reconnect sends `Last-Event-ID` and resumes after it with no gap; `?after=<position>` does the same for a first connection; without either the stream starts at the log\'s head. `?follow=false` sends what the log holds now (from there) and ends. Operators and restore operators do not see user, token, access, approval and repository-key streams.',
    query: Type.Object({
      after: Type.Optional(Type.String({ pattern: '^[0-9]{1,19}$' })),
      follow: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')], { description: 'false: end at the log\'s head as it was at the request (default true: keep streaming)' })),
    }, { additionalProperties: false }),
    response: Type.String(), problems: [503],
  })
  async stream(@Input('query') q: { after?: string; follow?: 'true' | 'false' }, @Req() req: HttpRequest & { once(event: 'close', l: () => void): void }, @Res() res: StreamResponse) {
    let from: bigint | 'head';
    try {
      from = resumeFrom(req.headers['last-event-id'], q.after);
    } catch (e) {
      if (e instanceof ResumeError) throw new ProblemError(400, 'validation', e.message);
      throw e;
    }
    await this.feed.serve(req.cairn?.roles ?? [], from, q.follow !== 'false', res, (l) => req.once('close', l));
  }
}
