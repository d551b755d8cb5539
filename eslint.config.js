// Lint: typescript-eslint on strict TypeScript, and Nx module boundaries by project tags.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import nx from '@nx/eslint-plugin';
import noFolderCycles from './tools/ci/eslint/no-folder-cycles.js';

const depConstraints = [
  { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: ['type:contracts'] },
  { sourceTag: 'type:domain', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts'],
    bannedExternalImports: ['@nestjs/*', '@nats-io/*', 'minio', '@eventstore/*'] },
  { sourceTag: 'type:adapter', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter'] },
  { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter', 'type:testing'] },
  { sourceTag: 'type:service', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter'] },
  // Tools import no service: what the CLI needs of one lives in a library.
  { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter', 'type:tool'] },
];
// The entries that run services: the embedded stack of `cairn up`, the hub, `cairn run <service>`,
// and the catalogue's scale benchmark (it drives the catalogue's projector and read model).
const SERVICE_ENTRIES = ['tools/cli/src/stack/embedded-stack.ts', 'tools/cli/src/stack/hub-stack.ts', 'tools/cli/src/commands/run.command.ts', 'tools/bench/src/catalogue-scale.ts'];
const boundaries = (allow, constraints = depConstraints) => ({ allow, banTransitiveDependencies: false, depConstraints: constraints });
const entryConstraints = depConstraints.map((c) => (c.sourceTag === 'type:tool' ? { ...c, onlyDependOnLibsWithTags: [...c.onlyDependOnLibsWithTags, 'type:service'] } : c));

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'tmp/**', '.nx/**', 'docs/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { '@nx': nx, cairn: { rules: { 'no-folder-cycles': noFolderCycles } } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@nx/enforce-module-boundaries': ['error', boundaries([])],
      'cairn/no-folder-cycles': 'error',
    },
  },
  {
    files: SERVICE_ENTRIES,
    rules: { '@nx/enforce-module-boundaries': ['error', boundaries([], entryConstraints)] },
  },
  {
    // Tests of any project may use the test harness.
    files: ['**/*.spec.ts', '**/testing/**/*.ts', 'test/**/*.ts'],
    rules: { '@nx/enforce-module-boundaries': ['error', boundaries(['@cairn/testing'])] },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
