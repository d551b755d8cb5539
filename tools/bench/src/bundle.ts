// Bundles Cairn's benchmark child (and the chunk worker it starts) into plain JavaScript
// with esbuild, so each measured command starts like a shipped binary would, in ~0.1 s,
// instead of paying 1-2 s for tsx to transpile TypeScript at every start.
//   npx tsx tools/bench/src/bundle.ts <out dir>     (run.ts does this itself)
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));

/** Writes `cairn-child.mjs` and `chunk.worker.mjs` into `outDir`; returns the child's path. */
export async function bundleCairnChild(outDir: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const common = {
    bundle: true,
    platform: 'node' as const,
    format: 'esm' as const,
    target: 'node24',
    logLevel: 'warning' as const,
    // CommonJS dependencies bundled into ESM still call require() for Node's built-ins.
    banner: { js: "import { createRequire as __cairnRequire } from 'node:module'; const require = __cairnRequire(import.meta.url);" },
  };
  await build({ ...common, entryPoints: [here('./cairn-child.ts')], outfile: join(outDir, 'cairn-child.mjs') });
  // The pool looks for `chunk.worker.mjs` beside the bundle that contains it.
  await build({ ...common, entryPoints: [here('../../../libs/repository/src/workers/chunk.worker.ts')], outfile: join(outDir, 'chunk.worker.mjs') });
  return join(outDir, 'cairn-child.mjs');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = process.argv[2] ?? 'dist/bench';
  console.log(await bundleCairnChild(out));
}
