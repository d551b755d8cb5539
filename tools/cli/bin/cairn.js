#!/usr/bin/env node
// Entry of the `cairn` CLI. Runs the esbuild bundle in ../dist (built by `npm ci`/`npm install`
// through the root `prepare` script); when a source file is newer than the bundle it rebuilds
// it first, and if that cannot be done it runs the TypeScript sources through tsx.
// CAIRN_CLI_SOURCE=1 always runs the sources.
import { existsSync, readFileSync, statSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = new URL('../../../', import.meta.url);

const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  // An older `node` first on PATH (Debian's 20): run again with the Node 24 the repository
  // installs (the `node` devDependency), passing signals on and ending with its exit code.
  const own = new URL('node_modules/node/bin/node', root);
  if (!existsSync(own)) {
    console.error(`cairn needs Node >= 22.12 (this is ${process.version}); run it through npx or npm run from the repository root, which use the Node 24 in node_modules/.bin`);
    process.exit(2);
  }
  const { spawn } = await import('node:child_process');
  const child = spawn(fileURLToPath(own), process.argv.slice(1), { stdio: 'inherit' });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    process.exit(code ?? 1);
  });
  await new Promise(() => undefined);
}

const dist = new URL('../dist/', import.meta.url);

/** The bundle of the current build, when no file it was built from changed since. */
function freshBundle() {
  try {
    const { build, inputs, startedAt } = JSON.parse(readFileSync(new URL('current.json', dist), 'utf8'));
    // A file changed after the build started may have been read before the change. Paths as
    // strings: a URL per input cost more than the stat itself (~8 -> ~4 ms of CPU per start).
    const base = fileURLToPath(root);
    for (const file of inputs) {
      const at = statSync(base + file, { throwIfNoEntry: false })?.mtimeMs;
      if (at === undefined || !(at < startedAt)) return undefined;
    }
    const bundle = new URL(`${build}/cairn.mjs`, dist);
    return existsSync(bundle) ? bundle : undefined;
  } catch {
    return undefined;
  }
}

async function load() {
  if (process.env.CAIRN_CLI_SOURCE !== '1') {
    const bundle = freshBundle();
    if (bundle) return import(bundle.href);
    if (existsSync(new URL('node_modules/esbuild', root))) {
      try {
        const { buildCli } = await import('../build.mjs');
        return import(pathToFileURL(await buildCli({ quiet: true })).href);
      } catch {
        // Running the sources below is slower, not different.
      }
    }
  }
  const { register } = await import('tsx/esm/api');
  register();
  return import('../src/main.ts');
}

// V8's code cache on disk: later starts skip most parsing and compiling.
module.enableCompileCache?.();
const { main, exitsWhenDone } = await load();
const code = await main(process.argv);
// A command may already have set a non-zero code (a failed job gives 6): keep it.
if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
// A command that ended with its action (src/exit-when-done.ts) leaves without Node's teardown,
// once what it wrote to stdout and stderr is out (writes to pipes are asynchronous on some systems).
if (exitsWhenDone?.()) {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise((done) => s.write('', done))));
  process.exit();
}
