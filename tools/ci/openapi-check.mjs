// Checks that docs/openapi.json is the document the gateway generates from its routes
// (fails when stale), or rewrites it with --write. Run: node tools/ci/openapi-check.mjs [--write]
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = join(root, 'docs', 'openapi.json');
const gateway = await tsImport(join(root, 'services', 'gateway', 'src', 'gateway.openapi.ts'), import.meta.url);
const fresh = gateway.gatewayOpenApiText();

if (process.argv.includes('--write')) {
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, fresh);
  console.log(`wrote ${target}`);
} else {
  const current = await readFile(target, 'utf8').catch(() => '');
  if (current !== fresh) {
    console.error('docs/openapi.json is stale: run `node tools/ci/openapi-check.mjs --write` and commit it');
    process.exit(1);
  }
  console.log('docs/openapi.json is current');
}
