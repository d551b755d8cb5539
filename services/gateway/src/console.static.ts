// The web console's built files (apps/console, `npm run build -w @cairn/console`) served at `/`
// from the same origin as the API: assets as files, and index.html for the single-page app's own
// routes (/vms/…, /jobs/…) so they survive a reload. Every other path (API, health, metrics,
// OpenAPI, anything unknown) is left to the routes and their 404 problem.
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';

/** Where `cairn up` finds the console when no directory is configured: the workspace's build. */
export const DEFAULT_CONSOLE_DIR = resolve(import.meta.dirname, '..', '..', '..', 'apps', 'console', 'dist');

/** The console's own page paths (its router's routes); anything else is not a page (404 problem as before). */
const PAGES = /^\/(?:(?:vms|jobs|restore|instant|policies|audit|approvals|sites)(?:\/[A-Za-z0-9_-][A-Za-z0-9._:-]{0,199})?\/?)?$/;

export function isConsolePage(path: string): boolean {
  return PAGES.test(path);
}

interface PageRequest { readonly method: string; readonly path: string; readonly headers: Record<string, unknown> }
interface PageResponse {
  status(code: number): PageResponse;
  setHeader(name: string, value: string): void;
  type(t: string): PageResponse;
  send(body: string): void;
}

/** Serves the console from `dir`; when it was never built, `/` says how to build it. */
export function mountConsole(app: NestExpressApplication, dir: string): void {
  const index = join(dir, 'index.html');
  const built = existsSync(index);
  if (built) {
    // Hashed file names: an asset never changes under its name.
    app.useStaticAssets(join(dir, 'assets'), { prefix: '/assets', immutable: true, maxAge: '365d', index: false, fallthrough: true });
    app.useStaticAssets(dir, { index: false, maxAge: 0 });
  }
  const page = built ? readFileSync(index, 'utf8') : undefined;
  app.use((req: PageRequest, res: PageResponse, next: () => void) => {
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !isConsolePage(req.path)) {
      next();
      return;
    }
    res.setHeader('Cache-Control', 'no-cache');
    if (page === undefined) {
      res.status(503).type('text/plain').send(`The web console is not built. Run: npm run build -w @cairn/console (it looks in ${dir})\n`);
      return;
    }
    res.type('text/html').send(page);
  });
}
