import { describe, expect, it } from 'vitest';
import { BackendError } from '../backend.ts';
import { listKeys } from './backend.contract.ts';
import { withFaults } from './faults.ts';
import { MemoryBackend } from './memory-backend.ts';

const bytes = (...b: number[]) => new Uint8Array(b);

async function seeded() {
  const inner = new MemoryBackend();
  await inner.put('data/a', bytes(0, 0, 0, 0));
  await inner.put('index/b', bytes(1, 2, 3));
  return { inner, faulty: withFaults(inner) };
}

describe('withFaults', () => {
  it('fails exactly the Nth write, before it reaches the store', async () => {
    const { inner, faulty } = await seeded();
    faulty.faults.failNthWrite(2);
    await faulty.put('w/1', bytes(1));
    const e = await faulty.put('w/2', bytes(2)).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).transient).toBe(true);
    await faulty.put('w/3', bytes(3));
    expect(await listKeys(inner, 'w/')).toEqual(['w/1', 'w/3']);
  });

  it('can lose the answer of a write that happened', async () => {
    const { inner, faulty } = await seeded();
    faulty.faults.failNthWrite(1, { afterCall: true, transient: true });
    await expect(faulty.put('lost/ack', bytes(9), { ifNotExists: true })).rejects.toBeInstanceOf(BackendError);
    expect(await inner.exists('lost/ack')).toBe(true);
    expect(await faulty.put('lost/ack', bytes(9), { ifNotExists: true })).toBe(false);
  });

  it('flips one bit on reads of matching keys only', async () => {
    const { faulty } = await seeded();
    faulty.faults.flipBitOnRead(/^data\//);
    expect([...(await faulty.get('data/a'))]).toEqual([0, 0, 1, 0]); // middle bit: bit 16
    expect([...(await faulty.getRange('data/a', 0, 1))]).toEqual([16]); // 8 bits: bit 4 of byte 0
    expect([...(await faulty.get('index/b'))]).toEqual([1, 2, 3]);
    faulty.faults.clear().flipBitOnRead('data/a', 0);
    expect([...(await faulty.get('data/a'))]).toEqual([1, 0, 0, 0]);
  });

  it('returns short reads', async () => {
    const { faulty } = await seeded();
    faulty.faults.shortRead('index/b');
    expect([...(await faulty.get('index/b'))]).toEqual([1, 2]);
    expect([...(await faulty.getRange('index/b', 1, 2))]).toEqual([2]);
  });

  it('adds latency through the injected sleep', async () => {
    const slept: number[] = [];
    const inner = new MemoryBackend();
    const { Faults } = await import('./faults.ts');
    const faulty = withFaults(inner, new Faults(async (ms) => void slept.push(ms)));
    faulty.faults.latency(25, ['stat', 'exists']);
    await faulty.exists('x');
    await faulty.put('x', bytes(1));
    await faulty.stat('x');
    expect(slept).toEqual([25, 25]);
  });

  it('hangs calls until released, and simulates timeouts', async () => {
    const { faulty } = await seeded();
    faulty.faults.hang(['get'], 1);
    const hung = faulty.get('data/a');
    await new Promise((r) => setImmediate(r));
    expect(faulty.faults.hanging).toBe(1);
    faulty.faults.releaseHangs();
    await expect(hung).rejects.toMatchObject({ transient: true });
    expect((await faulty.get('data/a')).length).toBe(4);

    faulty.faults.timeout(['list'], 1);
    await expect(listKeys(faulty, '')).rejects.toThrow(/simulated timeout/);
    expect(await listKeys(faulty, '')).toEqual(['data/a', 'index/b']);
  });

  it('records every call', async () => {
    const { faulty } = await seeded();
    await faulty.exists('data/a');
    await faulty.delete('data/a');
    await listKeys(faulty, 'index/');
    expect(faulty.faults.calls).toEqual([
      { op: 'exists', key: 'data/a' }, { op: 'delete', key: 'data/a' }, { op: 'list', key: 'index/' },
    ]);
  });

  it('releases hangs on close', async () => {
    const { faulty } = await seeded();
    faulty.faults.hang(['stat']);
    const hung = faulty.stat('data/a');
    await new Promise((r) => setImmediate(r));
    await faulty.close();
    await expect(hung).rejects.toBeInstanceOf(BackendError);
  });
});
