// What the A/B benchmarks between builds (full-ab.ts, incr-ab.ts) share: their common options,
// the `--builds name=worktree,…` list (each build is a worktree's own CLI), the generated images
// and the work directory.
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ImageSpec } from './image.ts';
import { parseSize, prepareImages, type Images } from './run.ts';

export const AB_OPTIONS = {
  images: { type: 'string' },
  size: { type: 'string', default: '2G' },
  seed: { type: 'string', default: 'cairn-bench-1' },
  builds: { type: 'string' },
  rounds: { type: 'string', default: '2' },
  work: { type: 'string' },
} as const;

export interface AbValues { images?: string; size?: string; seed?: string; builds?: string; work?: string }
/** `env`: variables for this build's stack only (`name=worktree+KEY=value+…`; full-ab.ts sets them), e.g. a tuning knob to A/B in one worktree. */
export interface Build { readonly name: string; readonly cli: string; readonly env?: Readonly<Record<string, string>> }

/** `name=worktree,…` (default: this checkout as `this`) → each build's CLI. */
export function parseBuilds(arg: string | undefined, repoRoot: string): Build[] {
  return (arg ?? `this=${repoRoot}`).split(',').map((b) => {
    const [head, ...vars] = b.split('+');
    const [name, root] = (head ?? '').split('=');
    if (!name || !root) throw new Error(`--builds takes name=worktree[+KEY=value…],…; got ${b}`);
    const env = Object.fromEntries(vars.map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)]));
    return { name, cli: join(resolve(root), 'tools', 'cli', 'bin', 'cairn.js'), ...(vars.length ? { env } : {}) };
  });
}

/** The builds, the generated images (kept in `--images`, else a temp dir named for the tool) and a work directory. */
export async function abSetup(values: AbValues, tool: string, repoRoot: string): Promise<{ builds: Build[]; spec: ImageSpec; images: Images; work: string }> {
  const builds = parseBuilds(values.builds, repoRoot);
  const spec: ImageSpec = { sizeBytes: parseSize(values.size ?? '2G'), seed: values.seed ?? 'cairn-bench-1' };
  const images = await prepareImages(spec, values.images ? resolve(values.images) : join(tmpdir(), `cairn-${tool}-images`));
  const work = values.work ? resolve(values.work) : await mkdtemp(join(tmpdir(), `cairn-${tool}-`));
  return { builds, spec, images, work };
}
