// The one conformance suite every Backend runs (directory, S3, each wrapper): the rules of
// backend.ts written as tests. A backend's spec calls `backendContract(name, make)`.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BackendError, NotFoundError, type Backend, type ObjectInfo } from '../backend.ts';

export interface BackendContractOptions {
  /** Reason to skip listing more than 1000 keys (one S3 page); undefined runs it. */
  skipLargeList?: string;
  /** Reason to skip the race of concurrent `ifNotExists` puts (needs a real conditional put). */
  skipConditionalPutRace?: string;
}

/** A fresh, empty backend per test; it is closed after the test. */
export type MakeBackend = () => Backend | Promise<Backend>;

const INVALID_KEYS = ['', '/abs', 'a/../b', '..', '.', 'a/./b', 'a//b', 'a/', 'a b', 'a\\b', 'ü', 'a?b', 'x'.repeat(600)];

export function backendContract(name: string, makeBackend: MakeBackend, options: BackendContractOptions = {}): void {
  describe(`Backend contract: ${name}`, () => {
    const open: Backend[] = [];
    const fresh = async (): Promise<Backend> => {
      const b = await makeBackend();
      open.push(b);
      return b;
    };
    afterEach(async () => {
      for (const b of open.splice(0)) await b.close?.();
    });

    it('put/get roundtrip, overwrite, empty and 5 MiB objects', async () => {
      const b = await fresh();
      expect(await b.put('a/one', bytes('hello'))).toBe(true);
      expect(text(await b.get('a/one'))).toBe('hello');
      expect(await b.put('a/one', bytes('replaced'))).toBe(true);
      expect(text(await b.get('a/one'))).toBe('replaced');

      await b.put('empty', new Uint8Array(0));
      expect((await b.get('empty')).length).toBe(0);
      expect((await b.stat('empty')).size).toBe(0);

      const big = randomBytes(5 * 1024 * 1024);
      await b.put('big/object', big);
      expect(Buffer.from(await b.get('big/object')).equals(big)).toBe(true);
    });

    it('getRange returns exact slices and rejects ranges past the end', async () => {
      const b = await fresh();
      const data = randomBytes(10_000);
      await b.put('r/obj', data);
      const slice = async (off: number, len: number) => Buffer.from(await b.getRange('r/obj', off, len));
      expect((await slice(0, 100)).equals(data.subarray(0, 100))).toBe(true);
      expect((await slice(4321, 1234)).equals(data.subarray(4321, 5555))).toBe(true);
      expect((await slice(9_000, 1_000)).equals(data.subarray(9_000))).toBe(true);
      expect((await slice(0, 10_000)).equals(data)).toBe(true);
      expect((await slice(0, 0)).length).toBe(0);
      expect((await slice(5_000, 0)).length).toBe(0);
      expect((await slice(10_000, 0)).length).toBe(0);
      await expectPermanent(b.getRange('r/obj', 9_999, 2));
      await expectPermanent(b.getRange('r/obj', 10_000, 1));
      await expectPermanent(b.getRange('r/obj', 20_000, 10));
      await expectPermanent(b.getRange('r/obj', 20_000, 0));
      await expectPermanent(b.getRange('r/obj', -1, 10));
      await expectPermanent(b.getRange('r/obj', 0, -1));
      await expectPermanent(b.getRange('r/obj', 1.5, 1));
    });

    it('stat and exists', async () => {
      const b = await fresh();
      await b.put('s/x', bytes('12345'));
      const info = await b.stat('s/x');
      expect(info.key).toBe('s/x');
      expect(info.size).toBe(5);
      expect(info.mtime).toBeInstanceOf(Date);
      expect(Number.isNaN(info.mtime.getTime())).toBe(false);
      expect(await b.exists('s/x')).toBe(true);
      expect(await b.exists('s/y')).toBe(false);
      expect(await b.exists('s')).toBe(false);
    });

    it('ifNotExists leaves an existing object alone', async () => {
      const b = await fresh();
      expect(await b.put('c/k', bytes('first'), { ifNotExists: true })).toBe(true);
      expect(await b.put('c/k', bytes('second'), { ifNotExists: true })).toBe(false);
      expect(text(await b.get('c/k'))).toBe('first');
    });

    it.skipIf(options.skipConditionalPutRace !== undefined)(
      `concurrent ifNotExists puts: exactly one wins${skipNote(options.skipConditionalPutRace)}`,
      async () => {
        const b = await fresh();
        const contents = Array.from({ length: 8 }, (_, i) => bytes(`writer-${i}`));
        const results = await Promise.all(contents.map((c) => b.put('race/k', c, { ifNotExists: true })));
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(text(await b.get('race/k'))).toBe(`writer-${results.indexOf(true)}`);
      },
    );

    it('list yields every key under a prefix exactly once', async () => {
      const b = await fresh();
      const keys = ['data/ab/1', 'data/ab/2', 'data/abc', 'data/b/3', 'index/x', 'top'];
      for (const k of keys) await b.put(k, bytes(k));
      expect(await listKeys(b, '')).toEqual([...keys].sort());
      expect(await listKeys(b, 'data/')).toEqual(['data/ab/1', 'data/ab/2', 'data/abc', 'data/b/3']);
      expect(await listKeys(b, 'data/ab')).toEqual(['data/ab/1', 'data/ab/2', 'data/abc']);
      expect(await listKeys(b, 'data/ab/')).toEqual(['data/ab/1', 'data/ab/2']);
      expect(await listKeys(b, 'data/b/3')).toEqual(['data/b/3']);
      expect(await listKeys(b, 'nothing/')).toEqual([]);
      const infos = await collect(b.list('data/ab/'));
      expect(infos.map((i) => i.size)).toEqual(['data/ab/1'.length, 'data/ab/2'.length]);
      expect(infos.every((i) => i.mtime instanceof Date)).toBe(true);
    });

    it.skipIf(options.skipLargeList !== undefined)(
      `list pages through more than 1000 keys${skipNote(options.skipLargeList)}`,
      async () => {
        const b = await fresh();
        const keys = Array.from({ length: 1_010 }, (_, i) => `many/${String(i).padStart(5, '0')}`);
        await inParallel(keys, 16, (k) => b.put(k, bytes('x')));
        await b.put('other/x', bytes('x'));
        const listed = await listKeys(b, 'many/');
        expect(listed).toHaveLength(keys.length);
        expect(listed).toEqual(keys);
      },
    );

    it('delete removes and is idempotent', async () => {
      const b = await fresh();
      await b.put('d/k', bytes('x'));
      await b.delete('d/k');
      expect(await b.exists('d/k')).toBe(false);
      await expect(b.get('d/k')).rejects.toBeInstanceOf(NotFoundError);
      await b.delete('d/k');
      await b.delete('never/existed');
      expect(await listKeys(b, 'd/')).toEqual([]);
    });

    it('missing objects throw a permanent NotFoundError carrying the key', async () => {
      const b = await fresh();
      const calls = [() => b.get('missing/k'), () => b.getRange('missing/k', 0, 1), () => b.getRange('missing/k', 0, 0), () => b.stat('missing/k')];
      for (const call of calls) {
        const e = await call().then(() => undefined, (err: unknown) => err);
        expect(e).toBeInstanceOf(NotFoundError);
        expect((e as NotFoundError).transient).toBe(false);
        expect((e as NotFoundError).key).toBe('missing/k');
      }
    });

    it('invalid keys and prefixes are rejected before any I/O', async () => {
      const b = await fresh();
      for (const key of INVALID_KEYS) {
        await expectPermanent(b.put(key, bytes('x')), key);
        await expectPermanent(b.get(key), key);
        await expectPermanent(b.getRange(key, 0, 1), key);
        await expectPermanent(b.stat(key), key);
        await expectPermanent(b.exists(key), key);
        await expectPermanent(b.delete(key), key);
      }
      for (const prefix of ['/', '../', 'a/../', 'a//', '/abs']) {
        await expectPermanent(collect(b.list(prefix)), prefix);
      }
      expect(await listKeys(b, '')).toEqual([]);
    });
  });
}

function skipNote(reason: string | undefined): string {
  return reason === undefined ? '' : ` (skipped: ${reason})`;
}

async function expectPermanent(p: Promise<unknown>, label = ''): Promise<void> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e, `expected a permanent BackendError ${label}`).toBeInstanceOf(BackendError);
  expect((e as BackendError).transient, label).toBe(false);
  expect(e).not.toBeInstanceOf(NotFoundError);
}

export async function collect(it: AsyncIterable<ObjectInfo>): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of it) out.push(info);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

export async function listKeys(b: Backend, prefix: string): Promise<string[]> {
  return (await collect(b.list(prefix))).map((i) => i.key);
}

async function inParallel<T>(items: T[], width: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: width }, lane));
}

function bytes(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}
