import { describe, expect, it } from 'vitest';
import { BackendError, NotFoundError } from './backend.ts';
import { backoffDelay, withRetry } from './retry.wrapper.ts';
import { listKeys } from './testing/backend.contract.ts';
import { withFaults } from './testing/faults.ts';
import { MemoryBackend } from './testing/memory-backend.ts';

const data = new Uint8Array([1, 2, 3]);

function setup(options: Parameters<typeof withRetry>[1] = {}) {
  const faulty = withFaults(new MemoryBackend());
  const sleeps: number[] = [];
  const backend = withRetry(faulty, {
    random: () => 0.5,
    sleep: async (ms) => void sleeps.push(ms),
    ...options,
  });
  return { faulty, backend, sleeps, faults: faulty.faults };
}

describe('withRetry', () => {
  it('succeeds after transient failures, backing off exponentially', async () => {
    const { backend, faults, sleeps } = setup({ baseDelayMs: 100, attempts: 5 });
    faults.add({ ops: ['put'], times: 3, action: { kind: 'error', transient: true } });
    expect(await backend.put('k', data)).toBe(true);
    expect(faults.calls.filter((c) => c.op === 'put')).toHaveLength(4);
    // half fixed + half jitter at random 0.5: 0.75 × (100, 200, 400)
    expect(sleeps).toEqual([75, 150, 300]);
    expect([...(await backend.get('k'))]).toEqual([1, 2, 3]);
  });

  it('gives up on permanent errors immediately', async () => {
    const { backend, faults, sleeps } = setup();
    faults.add({ ops: ['get'], action: { kind: 'error', transient: false } });
    await expect(backend.get('k')).rejects.toMatchObject({ transient: false });
    await expect(backend.stat('missing')).rejects.toBeInstanceOf(NotFoundError);
    expect(faults.calls.filter((c) => c.op === 'get')).toHaveLength(1);
    expect(faults.calls.filter((c) => c.op === 'stat')).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('does not retry errors that are not BackendErrors (bugs)', async () => {
    const inner = new MemoryBackend();
    let calls = 0;
    inner.get = async () => {
      calls++;
      throw new TypeError('bug');
    };
    await expect(withRetry(inner, { sleep: async () => {} }).get('k')).rejects.toBeInstanceOf(TypeError);
    expect(calls).toBe(1);
  });

  it('stops after the bounded number of attempts with a transient error that says so', async () => {
    const { backend, faults, sleeps } = setup({ attempts: 3 });
    faults.add({ ops: ['get'], action: { kind: 'error', transient: true } });
    const e = await backend.get('k').catch((err: unknown) => err);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as BackendError).transient).toBe(true);
    expect((e as Error).message).toMatch(/gave up after 3 attempts/);
    expect(faults.calls).toHaveLength(3);
    expect(sleeps).toHaveLength(2);
  });

  it('turns a hung call into a transient timeout and retries it', async () => {
    const { backend, faults } = setup({ timeoutMs: 20, attempts: 3 });
    faults.hang(['get'], 1);
    await backend.put('k', data);
    expect([...(await backend.get('k'))]).toEqual([1, 2, 3]);
    expect(faults.calls.filter((c) => c.op === 'get')).toHaveLength(2);
    faults.releaseHangs();
  });

  it('reports a call that always hangs as a transient timeout', async () => {
    const { backend, faults } = setup({ timeoutMs: 10, attempts: 2 });
    faults.hang(['stat']);
    const e = await backend.stat('k').catch((err: unknown) => err);
    expect((e as BackendError).transient).toBe(true);
    expect((e as Error).message).toMatch(/timed out after 10 ms.*gave up after 2 attempts/);
    expect(faults.hanging).toBe(2);
    faults.releaseHangs();
  });

  it('restarts a failed listing without yielding any key twice', async () => {
    const inner = new MemoryBackend();
    for (let i = 0; i < 6; i++) await inner.put(`l/${i}`, data);
    let listings = 0;
    const flaky = Object.create(inner) as MemoryBackend;
    flaky.list = async function* (prefix: string) {
      listings++;
      let n = 0;
      for await (const info of inner.list(prefix)) {
        if (listings === 1 && ++n === 4) throw new BackendError('connection reset', true);
        yield info;
      }
    };
    const keys = await listKeys(withRetry(flaky, { sleep: async () => {} }), 'l/');
    expect(keys).toEqual(['l/0', 'l/1', 'l/2', 'l/3', 'l/4', 'l/5']);
    expect(listings).toBe(2);
  });

  it('caps and jitters the backoff', () => {
    expect(backoffDelay(1, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelay(1, 100, 1000, () => 0.999)).toBeCloseTo(99.95);
    expect(backoffDelay(10, 100, 1000, () => 0)).toBe(500);
    expect(backoffDelay(10, 100, 1000, () => 0.999)).toBeLessThan(1000);
  });
});
