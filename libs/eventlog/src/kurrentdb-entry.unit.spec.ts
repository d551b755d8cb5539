import { describe, expect, it } from 'vitest';

// The KurrentDB adapters live behind their own package entry so the main one stays free of
// the gRPC client (docs/benchmarks.md "CLI start-up"); the suites that need a KurrentDB are
// skipped on machines without containers, so this keeps the entry itself checked.
describe('@cairn/eventlog/kurrentdb', () => {
  it('resolves through the package exports and gives the KurrentDB adapters', async () => {
    const entry = await import('@cairn/eventlog/kurrentdb');
    expect(typeof entry.KurrentDbEventLog).toBe('function');
    expect(typeof entry.startKurrentDbRelay).toBe('function');
  });

  it('is not re-exported by the main entry (index.ts)', async () => {
    const main: Record<string, unknown> = await import('./index.ts');
    expect(main['KurrentDbEventLog']).toBeUndefined();
    expect(main['startKurrentDbRelay']).toBeUndefined();
    expect(typeof main['JetStreamEventLog']).toBe('function');
  });
});
