// CoalescedRound: never two rounds at once; triggers during a round share the one after it.
import { describe, expect, it } from 'vitest';
import { CoalescedRound } from './coalesced-round.ts';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => { open = r; });
  return { open, opened };
}

describe('CoalescedRound', () => {
  it('runs one round at a time and coalesces the triggers that come during one into one more round', async () => {
    let active = 0;
    let maxActive = 0;
    const gates: Array<ReturnType<typeof gate>> = [];
    const started: number[] = [];
    const r = new CoalescedRound(async () => {
      active++; maxActive = Math.max(maxActive, active);
      const g = gate(); gates.push(g); started.push(gates.length);
      await g.opened;
      active--;
    });
    const first = r.run();
    const during = [r.run(), r.run(), r.run()];
    expect(during[0]).toBe(during[1]);
    expect(gates).toHaveLength(1);
    gates[0]!.open();
    await first;
    await new Promise((res) => setImmediate(res));
    expect(gates).toHaveLength(2); // the three triggers made one more round
    const duringSecond = r.run(); // asked while the second runs: a third round after it
    gates[1]!.open();
    await Promise.all(during);
    await new Promise((res) => setImmediate(res));
    expect(gates).toHaveLength(3);
    gates[2]!.open();
    await duringSecond;
    expect(maxActive).toBe(1);
    expect(started).toEqual([1, 2, 3]);
  });

  it('a failed round rejects its callers, and the next trigger runs a new round', async () => {
    let n = 0;
    const r = new CoalescedRound(async () => { n++; if (n === 1) throw new Error('boom'); });
    await expect(r.run()).rejects.toThrow('boom');
    await r.run();
    expect(n).toBe(2);
  });
});
