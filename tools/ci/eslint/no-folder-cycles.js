// ESLint rule: inside one project's src/, no two top-level folders import each other both ways
// (write/ → leases/ is fine; write/ ↔ maintenance/ is not). A relative import from folder A into
// sibling folder B is reported when some non-test file of B imports A. Test files are exempt.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const IMPORT = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;
const isTest = (f) => /\.spec\.ts$/.test(f) || f.split(sep).includes('testing');
const cache = new Map();

/** The project's src/ directory and the top-level folder of `file` in it (undefined at src/ itself). */
function place(file) {
  const parts = resolve(file).split(sep);
  const i = parts.lastIndexOf('src');
  if (i < 0 || parts.length - i < 3) return undefined;
  return { src: parts.slice(0, i + 1).join(sep), folder: parts[i + 1] };
}

function filesOf(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesOf(p));
    else if (p.endsWith('.ts') && !isTest(p)) out.push(p);
  }
  return out;
}

/** Top-level folders of src/ that `folder`'s (non-test) files import. */
function importsOf(src, folder) {
  const key = join(src, folder);
  if (cache.has(key)) return cache.get(key);
  const found = new Set();
  for (const f of filesOf(key)) {
    for (const m of readFileSync(f, 'utf8').matchAll(IMPORT)) {
      const target = place(resolve(dirname(f), m[1]));
      if (target && target.src === src && target.folder !== folder) found.add(target.folder);
    }
  }
  cache.set(key, found);
  return found;
}

export default {
  meta: { type: 'problem', docs: { description: 'no two folders of a project import each other both ways' }, schema: [] },
  create(context) {
    const file = context.filename;
    const here = place(file);
    if (!here || isTest(file)) return {};
    const check = (node, spec) => {
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const target = place(resolve(dirname(file), spec));
      if (!target || target.src !== here.src || target.folder === here.folder) return;
      if (importsOf(here.src, target.folder).has(here.folder)) {
        context.report({ node, message: `${here.folder}/ imports ${target.folder}/, which imports ${here.folder}/: move what both need into a folder of its own (${relative(process.cwd(), here.src)})` });
      }
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value),
      ExportAllDeclaration: (node) => check(node, node.source.value),
    };
  },
};
