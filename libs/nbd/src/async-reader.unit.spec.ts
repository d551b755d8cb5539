import { describe, expect, it } from 'vitest';
import { AsyncReader } from './async-reader.ts';
import { feedCopy } from './byte-pump.ts';
import { NbdConnectionClosedError } from './protocol.ts';

describe('AsyncReader', () => {
  it('reassembles reads across chunk boundaries and hands leftovers on', async () => {
    const r = new AsyncReader(1024);
    const first = r.read(5);
    r.push(Buffer.from('he'));
    feedCopy(r, Buffer.from('llo wor'));
    expect((await first).toString()).toBe('hello');
    expect((await r.read(3)).toString()).toBe(' wo');
    expect(r.takeRemaining().toString()).toBe('r');
  });

  it('pauses the source when too much is buffered and resumes when drained', async () => {
    const calls: string[] = [];
    const r = new AsyncReader(10, { pause: () => calls.push('pause'), resume: () => calls.push('resume') });
    r.push(Buffer.alloc(8));
    r.push(Buffer.alloc(8));
    expect(calls).toEqual(['pause']);
    await r.read(16);
    expect(calls).toEqual(['pause', 'resume']);
  });

  it('rejects pending and later reads once failed', async () => {
    const r = new AsyncReader(10);
    const pending = r.read(4);
    r.fail();
    await expect(pending).rejects.toBeInstanceOf(NbdConnectionClosedError);
    await expect(r.read(1)).rejects.toBeInstanceOf(NbdConnectionClosedError);
  });
});
