// Entry point: `npx tsx tools/asyncapi/generate.ts` writes docs/asyncapi.yaml; `--check`
// only compares (used by tools/ci/docs-check.mjs). The code lives in src/.
import './src/main.ts';
