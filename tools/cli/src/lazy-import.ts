// The CLI imports most libraries when a command first needs them, so that `cairn --help` and
// `cairn vm list` start without loading NestJS, OpenTelemetry or the repository
// (docs/benchmarks.md "CLI start-up").

/**
 * A CommonJS package imported dynamically: in the esbuild bundle its chunk exports only
 * `default` (module.exports), so its named exports are read from there.
 */
export async function commonJs<M extends object>(loading: Promise<M>): Promise<M> {
  const m = await loading;
  const inner = (m as { default?: unknown }).default;
  return inner && typeof inner === 'object' || typeof inner === 'function' ? { ...(inner as object), ...m } as M : m;
}
