// Lint: typescript-eslint on strict TypeScript, and Nx module boundaries by project tags.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import nx from '@nx/eslint-plugin';

const depConstraints = [
  { sourceTag: 'type:contracts', onlyDependOnLibsWithTags: ['type:contracts'] },
  { sourceTag: 'type:domain', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts'],
    bannedExternalImports: ['@nestjs/*', '@nats-io/*', 'minio', '@eventstore/*'] },
  { sourceTag: 'type:adapter', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter'] },
  { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter', 'type:testing'] },
  { sourceTag: 'type:service', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter'] },
  // The CLI's embedded stack (`cairn up`) is the one place that runs services in process.
  { sourceTag: 'type:tool', onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:adapter', 'type:service', 'type:tool'] },
];
const boundaries = (allow) => ({ allow, banTransitiveDependencies: false, depConstraints });

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', 'tmp/**', '.nx/**', 'docs/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { '@nx': nx },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@nx/enforce-module-boundaries': ['error', boundaries([])],
    },
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
