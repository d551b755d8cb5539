// Sizes and rates as operators write them: IEC units (KiB, MiB, GiB), exact bytes in --json.

/** Bytes per second from a number or `20MiB` / `512KiB/s` / `1GiB`; undefined stays undefined. */
export function rateBytesPerSec(rate: number | string | undefined): number | undefined {
  if (rate === undefined || typeof rate === 'number') return rate;
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*(B|KiB|MiB|GiB)?(?:\/s)?$/.exec(rate.trim());
  if (!m) throw new RangeError(`cannot read the rate ${JSON.stringify(rate)}: give bytes per second, e.g. 20MiB, 512KiB or 1048576`);
  return Math.round(Number(m[1]) * { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[(m[2] ?? 'B') as 'B' | 'KiB' | 'MiB' | 'GiB']);
}
