// Bundles the `cairn` CLI with esbuild into tools/cli/dist/, so `cairn` starts like a shipped
// binary (plain JavaScript, no TypeScript transpiling at each start). Runs from the root
// package's `prepare` script (so `npm ci` on a fresh clone builds it) and again from
// bin/cairn.js whenever a source file is newer than the bundle.
//   node tools/cli/build.mjs            (prints where it wrote the bundle)
// Plain JavaScript on purpose: it must run before anything else is built.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
export const DIST = join(here, 'dist');
/** Names the build in use and the files it was made from (bin/cairn.js checks them). */
export const CURRENT = 'current.json';

// Optional peers of NestJS that Cairn does not install: resolved at run time only if used.
const ABSENT_OPTIONAL = [
  'class-validator', 'class-transformer', '@nestjs/websockets', '@nestjs/websockets/*', 'kafkajs', 'mqtt', 'ioredis',
  'amqp-connection-manager', 'amqplib', '@fastify/static', '@nestjs/platform-fastify',
];

/** Our modules that some file imports for its side effects alone (`import './formats.ts'`). */
async function bareImported() {
  const out = new Set();
  for (const top of ['libs', 'services', 'tools']) {
    for (const entry of await readdir(join(root, top), { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts') || entry.parentPath.includes('node_modules')) continue;
      const file = join(entry.parentPath, entry.name);
      for (const m of (await readFile(file, 'utf8')).matchAll(/^import\s+['"](\.{1,2}\/[^'"]+)['"]/gm)) out.add(resolve(dirname(file), m[1]));
    }
  }
  return out;
}

/**
 * Cairn's own modules have no import-time side effects (except those imported bare), so
 * esbuild may drop whatever a command does not use from a library's index: what keeps
 * `cairn --help` and `cairn vm list` from loading the services.
 */
const ownModulesArePure = (impure) => ({
  name: 'cairn-own-modules-pure',
  setup(b) {
    b.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData?.cairnInner || args.kind === 'entry-point') return undefined;
      const r = await b.resolve(args.path, { kind: args.kind, resolveDir: args.resolveDir, importer: args.importer, pluginData: { cairnInner: true } });
      if (r.errors.length > 0 || r.external) return undefined;
      const rel = relative(root, r.path);
      const own = /^(libs|services|tools)\//.test(rel) && !rel.includes('node_modules') && !impure.has(r.path);
      return { path: r.path, namespace: r.namespace, sideEffects: own ? false : r.sideEffects };
    });
  },
});

/**
 * `import.meta.dirname` in our own sources means the source's directory (the gateway finds the
 * console's build from it): in the bundle it becomes that directory again, found from the
 * bundle's own place (dist/b-<time>/ is four levels below the repository root).
 */
const sourceDirnames = {
  name: 'cairn-source-dirnames',
  setup(b) {
    b.onLoad({ filter: /\/(libs|services|tools)\/.*\.ts$/ }, async (args) => {
      if (args.path.includes('node_modules')) return undefined;
      const text = await readFile(args.path, 'utf8');
      if (!text.includes('import.meta.dirname')) return undefined;
      const rel = relative(root, dirname(args.path));
      return { contents: text.replaceAll('import.meta.dirname', `__cairnSourceDir(${JSON.stringify(rel)})`), loader: 'ts' };
    });
  },
};

/**
 * Builds into a new directory dist/b-<time>/ and then points dist/current.json at it, so a
 * `cairn` already running (or starting meanwhile) keeps the build it loaded. Keeps the last
 * three builds. Returns the bundle's path.
 */
export async function buildCli({ quiet = false, dist = DIST } = {}) {
  const { build, stop } = await import('esbuild');
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
  // Files changed after this instant may not be in the bundle: bin/cairn.js compares with it.
  const startedAt = Date.now();
  const name = `b-${startedAt}-${process.pid}`;
  const out = join(dist, name);
  await mkdir(out, { recursive: true });
  const common = {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    tsconfig: join(root, 'tsconfig.base.json'),
    logLevel: quiet ? 'error' : 'warning',
    external: ABSENT_OPTIONAL,
    // CommonJS dependencies bundled into ESM still call require() for Node's built-ins.
    banner: {
      js: "import { createRequire as __cairnRequire } from 'node:module'; const require = __cairnRequire(import.meta.url);"
        + " import { fileURLToPath as __cairnPath } from 'node:url'; const __cairnSourceDir = (rel) => __cairnPath(new URL(`../../../../${rel}`, import.meta.url));",
    },
    outExtension: { '.js': '.mjs' },
    metafile: true,
  };
  try {
    const cli = await build({
      ...common,
      entryPoints: { cairn: join(here, 'src', 'main.ts') },
      outdir: out,
      // Commands load what only they need (services, the repository) as separate chunks.
      splitting: true,
      chunkNames: '[name]-[hash]',
      plugins: [ownModulesArePure(await bareImported()), sourceDirnames],
      define: { 'process.env.CAIRN_CLI_VERSION': JSON.stringify(pkg.version) },
    });
    // The chunk worker pool looks for `chunk.worker.mjs` beside the module that contains it.
    const worker = await build({
      ...common,
      entryPoints: { 'chunk.worker': join(root, 'libs', 'repository', 'src', 'workers', 'chunk.worker.ts') },
      outdir: out,
    });
    if (process.env.CAIRN_CLI_METAFILE) await writeFile(process.env.CAIRN_CLI_METAFILE, JSON.stringify(cli.metafile));
    const inputs = [...new Set([...Object.keys(cli.metafile.inputs), ...Object.keys(worker.metafile.inputs)])]
      .filter((p) => !p.includes('node_modules'))
      .map((p) => relative(root, resolve(process.cwd(), p)));
    const info = { version: pkg.version, build: name, startedAt, builtAt: new Date().toISOString(), inputs: ['package-lock.json', 'tools/cli/build.mjs', ...inputs] };
    const pointer = join(dist, `${CURRENT}.${process.pid}`);
    await writeFile(pointer, JSON.stringify(info) + '\n');
    await rename(pointer, join(dist, CURRENT));
  } catch (e) {
    await rm(out, { recursive: true, force: true });
    throw e;
  } finally {
    // esbuild's service process (~450 MB resident) would otherwise live as long as the command
    // that rebuilt a stale bundle: for `cairn up`, as long as the stack (docs/benchmarks.md).
    await stop();
  }
  const builds = (await readdir(dist)).filter((d) => d.startsWith('b-')).sort((a, b) => Number(b.split('-')[1]) - Number(a.split('-')[1]));
  for (const old of builds.slice(3)) await rm(join(dist, old), { recursive: true, force: true });
  return join(out, 'cairn.mjs');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const t0 = Date.now();
  const out = await buildCli();
  console.log(`cairn CLI bundled into ${relative(process.cwd(), out) || out} in ${Date.now() - t0} ms`);
}
