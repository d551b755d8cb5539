import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['apps/*/src/**/*.spec.ts', 'libs/*/src/**/*.spec.ts', 'services/*/src/**/*.spec.ts', 'tools/*/src/**/*.spec.ts', 'test/**/*.spec.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // s3rver (the local S3 endpoint, run inside test workers) pages listings with DES.
    execArgv: ['--openssl-legacy-provider'],
    maxWorkers: 2,
    // Background file indexes boot a libguestfs appliance per backup of a disk with a file
    // system: off for the suite, on in the specs about them (docs/files.md).
    env: { CAIRN_FILE_INDEX: '0' },
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'tmp/vitest-results.json' }]] : ['default'],
  },
});
