// `npm run docs:check`: fails when a generated document is stale: docs/asyncapi.yaml (events
// and commands, from libs/contracts) and docs/openapi.json (the gateway's REST API).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tsx = join(root, 'node_modules', '.bin', 'tsx');
if (!existsSync(tsx)) {
  console.error('docs:check: node_modules/.bin/tsx is missing; run npm ci first');
  process.exit(1);
}
const run = spawnSync(tsx, ['tools/asyncapi/generate.ts', '--check'], { cwd: root, stdio: 'inherit' });
if (run.error) {
  console.error(`docs:check: cannot run the AsyncAPI generator: ${run.error.message}`);
  process.exit(1);
}
if (run.status !== 0) {
  console.error('docs:check: generated docs are stale (see above)');
  process.exit(run.status ?? 1);
}
const openapi = spawnSync(process.execPath, ['tools/ci/openapi-check.mjs'], { cwd: root, stdio: 'inherit' });
if (openapi.status !== 0) {
  console.error('docs:check: docs/openapi.json is stale: run `node tools/ci/openapi-check.mjs --write`');
  process.exit(openapi.status ?? 1);
}
