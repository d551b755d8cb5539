// Test-only: temp directories and clean-up steps run after the file's tests, even on failure.
// (This library is an adapter, so its tests do not use the testing library's harness.)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export function useCleanup() {
  const steps: Array<() => unknown> = [];
  afterAll(async () => {
    for (const step of steps.reverse()) { try { await step(); } catch { /* keep cleaning */ } }
  }, 60_000);
  return {
    onClose(fn: () => unknown) { steps.push(fn); },
    async tmpDir(prefix: string) {
      const dir = await mkdtemp(join(tmpdir(), prefix));
      steps.push(() => rm(dir, { recursive: true, force: true }));
      return dir;
    },
  };
}
