// An in-memory Backend for unit tests of code built on the contract (and of the wrappers):
// same key rules and errors as the real backends, no I/O. Not for production.
import { NotFoundError, type Backend, type ObjectInfo } from '../backend.ts';
import { assertValidKey, assertValidPrefix, assertValidRange, rangePastEnd } from '../keys.ts';

export class MemoryBackend implements Backend {
  readonly location: string;
  private readonly objects = new Map<string, { data: Uint8Array; mtime: Date }>();

  constructor(name = 'test') {
    this.location = `memory:${name}`;
  }

  async put(key: string, data: Uint8Array, options: { ifNotExists?: boolean } = {}): Promise<boolean> {
    assertValidKey(key);
    if (options.ifNotExists && this.objects.has(key)) return false;
    // Copy: the caller may reuse its buffer, as it may with a real backend.
    this.objects.set(key, { data: Uint8Array.from(data), mtime: new Date() });
    return true;
  }

  async get(key: string): Promise<Uint8Array> {
    return Uint8Array.from(this.object(key).data);
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    assertValidRange(key, offset, length);
    const { data } = this.object(key);
    if (offset + length > data.length) throw rangePastEnd(key, this.location, offset, length, data.length);
    return data.slice(offset, offset + length);
  }

  async stat(key: string): Promise<ObjectInfo> {
    const o = this.object(key);
    return { key, size: o.data.length, mtime: o.mtime };
  }

  async exists(key: string): Promise<boolean> {
    assertValidKey(key);
    return this.objects.has(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    for (const [key, o] of [...this.objects]) {
      if (key.startsWith(prefix)) yield { key, size: o.data.length, mtime: o.mtime };
    }
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    this.objects.delete(key);
  }

  /** Puts are visible at once: nothing to flush. */
  async flush(): Promise<void> {}

  async close(): Promise<void> {}

  /** Number of stored objects (for assertions). */
  get size(): number {
    return this.objects.size;
  }

  private object(key: string) {
    assertValidKey(key);
    const o = this.objects.get(key);
    if (!o) throw new NotFoundError(key, this.location);
    return o;
  }
}
