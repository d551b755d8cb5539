/// <reference lib="dom" />
// Helpers for the web console's browser tests: the console built once, Debian's chromium driven
// by playwright-core (no browser download), an axe-core scan, screenshots, a layout check.
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ROOT } from './e2e-helpers.ts';

export const CHROMIUM = process.env['CAIRN_CHROMIUM'] ?? '/usr/bin/chromium';
export const SCREENSHOTS = join(ROOT, 'tmp', 'console-screenshots');
const CONSOLE_DIST = join(ROOT, 'apps', 'console', 'dist', 'index.html');

/** Newest modification time of the console's sources (ms). */
async function sourcesChangedAt(): Promise<number> {
  const app = join(ROOT, 'apps', 'console');
  let newest = (await stat(join(app, 'index.html'))).mtimeMs;
  for (const f of await readdir(join(app, 'src'), { recursive: true })) newest = Math.max(newest, (await stat(join(app, 'src', f))).mtimeMs);
  return newest;
}

/** Builds the console unless `npm ci` (its prepare script) or an earlier run built these sources already. A production build, as `npm run build:console` makes it (vitest's NODE_ENV=test would keep the libraries' development code in). */
export async function ensureConsoleBuilt(): Promise<void> {
  const built = await stat(CONSOLE_DIST).then((s) => s.mtimeMs, () => 0);
  if (built > (await sourcesChangedAt())) return;
  await new Promise<void>((resolve, reject) => {
    execFile(process.execPath, [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build'], { cwd: join(ROOT, 'apps', 'console'), env: { ...process.env, NODE_ENV: 'production' } }, (e, _o, stderr) => (e ? reject(new Error(`console build failed: ${stderr}`)) : resolve()));
  });
}

/** Debian's chromium, headless, with a fresh profile (playwright makes a new temporary user-data-dir per launch). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

let axeSource: string | undefined;

export interface AxeViolation { id: string; impact: string | null; help: string; nodes: number; targets: string[] }

/** axe-core over the page as it is now (WCAG 2.x A/AA rules and best practices); the serious and critical violations. */
export async function axeSerious(page: Page): Promise<AxeViolation[]> {
  axeSource ??= await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  // Evaluated through the DevTools protocol, so the page's CSP does not apply to the scanner.
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, o: unknown): Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[] }> } }).axe;
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length, targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ')) }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOTS, { recursive: true });
  const file = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

/** Nothing wider than the viewport (no sideways scrolling of the page itself). */
export async function overflowX(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}
