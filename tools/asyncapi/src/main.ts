// `npx tsx tools/asyncapi/generate.ts [--check]`: writes docs/asyncapi.yaml, or with --check
// exits 1 when the file differs from what the contracts produce now.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative } from 'node:path';
import { renderAsyncApi } from './asyncapi.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const target = join(root, 'docs', 'asyncapi.yaml');
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version?: string };
const text = renderAsyncApi(pkg.version ?? '0.0.0');
const where = relative(process.cwd(), target) || target;

if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => undefined);
  if (current === text) {
    console.log(`${where} is up to date`);
  } else {
    const a = (current ?? '').split('\n');
    const b = text.split('\n');
    let line = 0;
    while (line < Math.max(a.length, b.length) && a[line] === b[line]) line++;
    console.error(current === undefined
      ? `${where} is missing. Run: npx tsx tools/asyncapi/generate.ts`
      : `${where} is stale (first difference at line ${line + 1}: have ${JSON.stringify(a[line] ?? '')}, contracts give ${JSON.stringify(b[line] ?? '')}).\nRun: npx tsx tools/asyncapi/generate.ts`);
    process.exitCode = 1;
  }
} else {
  await writeFile(target, text);
  console.log(`wrote ${where}`);
}
