// A loopback HTTP collector for tests (SIEM endpoints, notification webhooks): records every request (path, headers, body), can
// answer with an error status, hold a response forever, or go away and come back on the
// same port.
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';

export interface CollectedRequest {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The status the collector answered (undefined when held). */
  status?: number;
}

export interface HttpCollector {
  readonly url: string;
  readonly port: number;
  readonly requests: CollectedRequest[];
  /** Status to answer the next requests with (default 200). */
  answer: number;
  /** When it returns true for a request, its response is never sent (until stop). */
  hold: (req: CollectedRequest) => boolean;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startHttpCollector(port = 0): Promise<HttpCollector> {
  let server: Server | undefined;
  const held: ServerResponse[] = [];
  const collector: HttpCollector = {
    url: '',
    port,
    requests: [],
    answer: 200,
    hold: () => false,
    async start() {
      server = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const entry: CollectedRequest = { path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
          collector.requests.push(entry);
          if (collector.hold(entry)) { held.push(res); return; }
          entry.status = collector.answer;
          res.writeHead(collector.answer, { 'content-type': 'application/json' });
          res.end(collector.answer < 300 ? '{"text":"Success","code":0}' : '{"text":"Server is busy","code":9}');
        });
      });
      const s = server;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(collector.port, '127.0.0.1', () => resolve());
      });
      const addr = s.address();
      if (typeof addr === 'object' && addr) {
        (collector as { port: number }).port = addr.port;
        (collector as { url: string }).url = `http://127.0.0.1:${addr.port}`;
      }
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      for (const res of held.splice(0)) res.destroy();
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
  await collector.start();
  return collector;
}

/** The Cairn event ids in a HEC batch body (one JSON object per line). */
export function hecEventIds(body: string): string[] {
  return body.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { event: { id: string } }).event.id);
}
