// Schemas built on first use (issue 20, docs/benchmarks.md "the restore command's CLI until its
// request, the small levers"): TypeBox builds a schema when its `Type.*` call runs, and the
// contracts hold ~900 of them, which every process importing @cairn/contracts paid for at import
// (~12-25 ms of CPU for `cairn restore`, which reads a handful). `lazySchema(() => Type.Object(…))`
// is the schema itself to its callers (same object shape, same symbols, same JSON), built the
// first time anything reads it. Schemas referenced inside a built schema are replaced by what
// they built, so validating a built schema never goes through a proxy.
import type { TSchema } from '@sinclair/typebox';

const built = new WeakMap<object, object>();

/** The built schema behind a lazy one (itself for any other value). */
export function resolveSchema<T>(value: T): T {
  return typeof value === 'object' && value !== null && built.has(value) ? force(value) as T : value;
}

/** Replaces lazy schemas nested in `value` (objects and arrays) by the schemas they build. */
function resolveNested(value: object, seen: WeakSet<object>): void {
  if (seen.has(value)) return;
  seen.add(value);
  for (const key of Reflect.ownKeys(value)) {
    const d = Reflect.getOwnPropertyDescriptor(value, key);
    if (!d || !('value' in d) || typeof d.value !== 'object' || d.value === null) continue;
    if (built.has(d.value)) {
      if (d.writable) (value as Record<PropertyKey, unknown>)[key] = force(d.value);
      continue;
    }
    resolveNested(d.value as object, seen);
  }
}

const builders = new WeakMap<object, () => object>();
/** Objects already walked by resolveNested: a schema built from built schemas walks only its own part. */
const walked = new WeakSet<object>();

function force(proxy: object): object {
  let target = built.get(proxy);
  if (target === proxy) {
    const build = builders.get(proxy)!;
    builders.delete(proxy);
    target = build();
    built.set(proxy, target);
    resolveNested(target, walked);
  }
  return target!;
}

/** `build()`'s schema, built when first read. */
export function lazySchema<T extends TSchema>(build: () => T): T {
  const get = (): object => force(proxy);
  const proxy: object = new Proxy({}, {
    get: (_, key) => Reflect.get(get(), key),
    set: (_, key, value) => Reflect.set(get(), key, value),
    has: (_, key) => Reflect.has(get(), key),
    ownKeys: () => Reflect.ownKeys(get()),
    getOwnPropertyDescriptor: (_, key) => {
      const d = Reflect.getOwnPropertyDescriptor(get(), key);
      return d && { ...d, configurable: true };
    },
    defineProperty: (_, key, d) => Reflect.defineProperty(get(), key, d),
    deleteProperty: (_, key) => Reflect.deleteProperty(get(), key),
    getPrototypeOf: () => Reflect.getPrototypeOf(get()),
  });
  built.set(proxy, proxy);
  builders.set(proxy, build);
  return proxy as T;
}
