// File-level restore over REST (docs/files.md): list a directory of a restore point, look at one
// file, download a file (resumable: Range, If-Range, ETag) or several paths as one tar or zip
// stream, and search the file indexes. The data mover does the work and records who read what;
// downloads are pulled from it chunk by chunk, each chunk only when the client took the last,
// so a 1 GiB file never sits in the gateway's memory.
import { Controller, Inject, Optional, Req, Res } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { BrowseFilesResult, GuestFileEntry, GuestPath, SearchFilesResult, type OpenFileDownloadResult } from '@cairn/contracts';
import type { Logger } from 'pino';
import { GatewayService } from './gateway.service.ts';
import { GATEWAY_FILE_STREAMS, GATEWAY_LOGGER } from './gateway.tokens.ts';
import { ProblemError } from './problem.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import { contentDisposition, decideRange, ifRangeAllows, notModified } from './http-range.ts';
import type { HttpRequest } from './http.types.ts';

/** Where downloads are pulled from (libs/messaging pullFileStream over the gateway's connection). */
export interface FileStreamSource {
  pull(streamId: string, first?: unknown): AsyncGenerator<Buffer>;
  /** Ends a stream that will not be pulled (a HEAD request, a 304, a 416). */
  cancel(streamId: string): Promise<void>;
}

interface DownloadResponse {
  statusCode: number;
  setHeader(name: string, value: string | number): void;
  write(chunk: Buffer): boolean;
  end(): void;
  destroy(e?: Error): void;
  once(event: 'drain' | 'close', l: () => void): void;
  off(event: 'drain' | 'close', l: () => void): void;
  readonly writableFinished: boolean;
}

const Params = Type.Object({ restorePointId: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' }) });
const Disk = Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Disk of the restore point (default: its only disk).' }));
const ListQuery = Type.Object({
  path: Type.Optional(Type.String({ ...GuestPath, description: '`/<file system>/…`; `/` (the default) lists the file systems (part1, part2, …).' })),
  disk: Disk,
}, { additionalProperties: false });
const PathQuery = Type.Object({ path: Type.String({ ...GuestPath, description: '`/<file system>/…` (`/part1/etc/hosts`).' }), disk: Disk }, { additionalProperties: false });
const ArchiveQuery = Type.Object({
  path: Type.Union([GuestPath, Type.Array(GuestPath, { minItems: 1, maxItems: 100 })], { description: 'One or more paths (repeat the parameter); each lands in the archive under its own name.' }),
  format: Type.Optional(Type.Union([Type.Literal('zip'), Type.Literal('tar')], { description: 'zip (default) or tar' })),
  disk: Disk,
}, { additionalProperties: false });
const SearchQuery = Type.Object({
  pattern: Type.String({ minLength: 1, maxLength: 1024, description: 'A glob (`*.xlsx`: by name; `/part1/etc/**`: by path) or, with regex=true, a regular expression over the path.' }),
  regex: Type.Optional(Type.Boolean()),
  vmId: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'Only restore points committed at or after this time.' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
}, { additionalProperties: false });
const Binary = Type.String({ format: 'binary' });

@Controller()
export class FilesController {
  constructor(
    @Inject(GatewayService) private readonly gateway: GatewayService,
    @Inject(GATEWAY_LOGGER) private readonly logger: Logger,
    @Optional() @Inject(GATEWAY_FILE_STREAMS) private readonly streams?: FileStreamSource,
  ) {}

  @Route({
    method: 'GET', path: '/v1/restore-points/:restorePointId/files', operationId: 'listFiles', tag: 'files', permission: 'files',
    summary: 'List a directory inside a restore point (`/` lists its file systems)',
    description: 'The first call on a restore point starts a file-browsing appliance (20–75 s under TCG); later ones answer at once. Recorded as RestorePointFilesBrowsed.',
    params: Params, query: ListQuery, response: BrowseFilesResult, problems: [403, 404, 503, 504],
  })
  list(@Input('params') p: { restorePointId: string }, @Input('query') q: { path?: string; disk?: string }, @CallerOf() caller: Caller) {
    return this.gateway.command('BrowseFiles', { restorePointId: p.restorePointId, op: 'list', path: q.path ?? '/', ...(q.disk ? { disk: q.disk } : {}) }, caller, { long: true });
  }

  @Route({
    method: 'GET', path: '/v1/restore-points/:restorePointId/files/stat', operationId: 'statFile', tag: 'files', permission: 'files',
    summary: 'Type, size, mode, owner and time of one file inside a restore point', params: Params, query: PathQuery, response: GuestFileEntry, problems: [403, 404, 503, 504],
  })
  async stat(@Input('params') p: { restorePointId: string }, @Input('query') q: { path: string; disk?: string }, @CallerOf() caller: Caller) {
    const r = await this.gateway.command('BrowseFiles', { restorePointId: p.restorePointId, op: 'stat', path: q.path, ...(q.disk ? { disk: q.disk } : {}) }, caller, { long: true });
    return r.entries[0];
  }

  @Route({
    method: 'GET', path: '/v1/restore-points/:restorePointId/files/content', operationId: 'downloadFile', tag: 'files', permission: 'files', contentType: 'application/octet-stream',
    summary: 'Download one file from a restore point (resumable)',
    description: 'Streams the file as it is read from the restore point. `Range: bytes=a-b` (one range; `a-` and `-n` too) answers 206 with `Content-Range`, a range past the end 416; `ETag` is strong (a restore point never changes), so `If-Range` and `If-None-Match` work. Recorded as FilesRestored (target `download`) when the download starts.',
    params: Params, query: PathQuery, response: Binary, alsoSucceeds: [{ status: 206, description: 'The requested byte range' }, { status: 304, description: 'Not modified (If-None-Match)' }],
    problems: [403, 404, 416, 503, 504],
  })
  async content(@Input('params') p: { restorePointId: string }, @Input('query') q: { path: string; disk?: string }, @CallerOf() caller: Caller, @Req() req: HttpRequest, @Res() res: DownloadResponse) {
    const streams = this.source();
    const d = await this.gateway.command('OpenFileDownload', { restorePointId: p.restorePointId, paths: [q.path], format: 'file', ...(q.disk ? { disk: q.disk } : {}) }, caller, { long: true });
    const size = d.bytes;
    const header = (n: string) => { const v = req.headers[n]; return typeof v === 'string' ? v : undefined; };
    this.common(res, d);
    res.setHeader('Accept-Ranges', 'bytes');
    if (notModified(header('if-none-match'), d.etag)) {
      await streams.cancel(d.streamId);
      res.statusCode = 304;
      res.end();
      return;
    }
    const range = ifRangeAllows(header('if-range'), d.etag) ? decideRange(header('range'), size) : { kind: 'whole' as const };
    if (range.kind === 'unsatisfiable') {
      await streams.cancel(d.streamId);
      res.setHeader('Content-Range', `bytes */${size}`);
      throw new ProblemError(416, 'range-not-satisfiable', `${q.path} has ${size} bytes; the range ${header('range')} lies outside it`);
    }
    res.setHeader('Content-Type', 'application/octet-stream');
    if (range.kind === 'range') {
      res.statusCode = 206;
      res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
      res.setHeader('Content-Length', range.end - range.start + 1);
    } else {
      res.statusCode = 200;
      res.setHeader('Content-Length', size);
    }
    if (req.method === 'HEAD' || size === 0) {
      await streams.cancel(d.streamId);
      res.end();
      return;
    }
    const first = range.kind === 'range' ? { offset: range.start, length: range.end - range.start + 1 } : undefined;
    await this.send(res, streams.pull(d.streamId, first), d);
  }

  @Route({
    method: 'GET', path: '/v1/restore-points/:restorePointId/files/archive', operationId: 'downloadFiles', tag: 'files', permission: 'files', contentType: 'application/octet-stream',
    summary: 'Download files and directories of a restore point as one zip or tar stream',
    description: 'Each path (repeat `path`) lands under its own name, directories with everything below them; modes, times and symbolic links are kept (devices, sockets and FIFOs are left out). The archive is made while it is sent, so its length is not known ahead (chunked). Recorded as FilesRestored (target `download`).',
    params: Params, query: ArchiveQuery, response: Binary, problems: [403, 404, 503, 504],
  })
  async archive(@Input('params') p: { restorePointId: string }, @Input('query') q: { path: string | string[]; format?: 'zip' | 'tar'; disk?: string }, @CallerOf() caller: Caller, @Req() req: HttpRequest, @Res() res: DownloadResponse) {
    const streams = this.source();
    const paths = typeof q.path === 'string' ? [q.path] : q.path;
    const format = q.format ?? 'zip';
    const d = await this.gateway.command('OpenFileDownload', { restorePointId: p.restorePointId, paths, format, ...(q.disk ? { disk: q.disk } : {}) }, caller, { long: true });
    this.common(res, d);
    res.setHeader('Content-Type', format === 'zip' ? 'application/zip' : 'application/x-tar');
    res.statusCode = 200;
    if (req.method === 'HEAD') {
      await streams.cancel(d.streamId);
      res.end();
      return;
    }
    await this.send(res, streams.pull(d.streamId), d);
  }

  @Route({
    method: 'GET', path: '/v1/files/search', operationId: 'searchFiles', tag: 'files', permission: 'files',
    summary: 'Which restore points hold files matching a pattern (from the file indexes; no appliance)',
    description: 'Every version found, oldest restore point first, with its size and time; restore points in scope without an index are named. Recorded as FilesSearched.',
    query: SearchQuery, response: SearchFilesResult, problems: [403, 503, 504],
  })
  search(@Input('query') q: { pattern: string; regex?: boolean; vmId?: string; since?: string; limit?: number }, @CallerOf() caller: Caller) {
    return this.gateway.command('SearchFiles', {
      pattern: q.pattern, ...(q.regex ? { regex: true } : {}), ...(q.vmId ? { vmId: q.vmId } : {}),
      ...(q.since ? { since: new Date(q.since).toISOString() } : {}), ...(q.limit ? { limit: q.limit } : {}),
    }, caller, { long: true });
  }

  private source(): FileStreamSource {
    if (!this.streams) throw new ProblemError(503, 'service-unavailable', 'this gateway cannot pull downloads (no NATS connection for file streams)');
    return this.streams;
  }

  private common(res: DownloadResponse, d: OpenFileDownloadResult): void {
    res.setHeader('ETag', d.etag);
    res.setHeader('Cache-Control', 'private, no-store');
    res.setHeader('Content-Disposition', contentDisposition(d.name));
    res.setHeader('X-Cairn-Access-Id', d.accessId);
  }

  /** Writes chunks as the client takes them; a client that goes away cancels the stream at its source. */
  private async send(res: DownloadResponse, chunks: AsyncGenerator<Buffer>, d: OpenFileDownloadResult): Promise<void> {
    let gone = false;
    res.once('close', () => { gone = !res.writableFinished; });
    try {
      for await (const c of chunks) {
        if (gone) break;
        if (!res.write(c)) {
          await new Promise<void>((r) => {
            const on = () => { res.off('drain', on); res.off('close', on); r(); };
            res.once('drain', on); res.once('close', on);
          });
        }
        if (gone) break;
      }
      if (!gone) res.end();
    } catch (e) {
      // Headers are out: the only way left to say "incomplete" is to cut the connection.
      this.logger.warn({ err: (e as Error).message, streamId: d.streamId, restorePointId: d.restorePointId }, 'download failed midway');
      res.destroy(e as Error);
    }
  }
}
