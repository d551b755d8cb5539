#!/usr/bin/env node
// Entry of the `cairn` CLI: loads the TypeScript sources through tsx (decorators included).
import { register } from 'tsx/esm/api';

const [major] = process.versions.node.split('.').map(Number);
if (major < 22) {
  console.error(`cairn needs Node >= 22.12 (this is ${process.version}); run it through npx or npm run from the repository root, which use the Node 24 in node_modules/.bin`);
  process.exit(2);
}
register();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv);
