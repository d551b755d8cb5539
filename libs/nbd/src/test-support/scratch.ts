// Test-only: temp dirs and cleanups released after the test file, even on failure.
// (A local stand-in for @cairn/testing's harness, which the adapter lint rule keeps out.)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export interface Scratch {
  tmpDir(prefix?: string): Promise<string>;
  onClose(fn: () => unknown): void;
}

export function useScratch(): Scratch {
  const cleanups: Array<() => unknown> = [];
  afterAll(async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve().then(fn).catch(() => undefined);
  }, 60_000);
  return {
    async tmpDir(prefix = 'cairn-nbd-test-') {
      const dir = await mkdtemp(join(tmpdir(), prefix));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      return dir;
    },
    onClose(fn) {
      cleanups.push(fn);
    },
  };
}
