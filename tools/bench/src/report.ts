// Turns measured runs into medians, ratios to restic and a check against the targets of
// issue 3, as a text table for the terminal and Markdown for docs/benchmarks.md.

export interface RunResult {
  readonly tool: string;
  readonly run: number;
  readonly diskBytes: number;
  readonly fullMs: number;
  readonly fullRssBytes: number;
  readonly fullRepoBytes: number;
  readonly incrementalMs: number;
  readonly incrementalRssBytes: number;
  readonly growthBytes: number;
  readonly restoreMs: number;
  readonly restoreRssBytes: number;
  /** CPU time (user + system) of each command, NaN when not measurable. */
  readonly cpuMs: { readonly full: number; readonly incremental: number; readonly restore: number };
  /** Cairn only: time inside the operation (no process start-up, no key derivation). */
  readonly inProcess?: { readonly fullMs: number; readonly incrementalMs: number; readonly restoreMs: number; readonly incrementalReadBytes: number };
}

export interface ToolSummary {
  readonly tool: string;
  readonly runs: number;
  readonly fullMBps: number;
  readonly incrementalS: number;
  readonly growthBytes: number;
  readonly repoBytes: number;
  readonly restoreMBps: number;
  readonly peakRssBytes: number;
  readonly cpuS: { readonly full: number; readonly incremental: number; readonly restore: number };
  readonly inProcess?: { readonly fullMBps: number; readonly incrementalS: number; readonly restoreMBps: number; readonly incrementalReadBytes: number };
}

export interface Ratios {
  /** Speed ratios (> 1 = faster than restic). */
  readonly full: number;
  readonly incrementalSpeedup: number;
  readonly restore: number;
  /** Size ratios (< 1 = smaller than restic). */
  readonly growth: number;
  readonly peakRss: number;
}

export const MB = 1e6;
export const MiB = 1024 * 1024;

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const mbps = (bytes: number, ms: number): number => bytes / MB / (ms / 1000);

export function summarize(results: readonly RunResult[]): ToolSummary[] {
  const tools = [...new Set(results.map((r) => r.tool))];
  return tools.map((tool) => {
    const rs = results.filter((r) => r.tool === tool);
    const inProcess = rs.every((r) => r.inProcess)
      ? {
          fullMBps: median(rs.map((r) => mbps(r.diskBytes, r.inProcess!.fullMs))),
          incrementalS: median(rs.map((r) => r.inProcess!.incrementalMs / 1000)),
          restoreMBps: median(rs.map((r) => mbps(r.diskBytes, r.inProcess!.restoreMs))),
          incrementalReadBytes: median(rs.map((r) => r.inProcess!.incrementalReadBytes)),
        }
      : undefined;
    return {
      tool,
      runs: rs.length,
      fullMBps: median(rs.map((r) => mbps(r.diskBytes, r.fullMs))),
      incrementalS: median(rs.map((r) => r.incrementalMs / 1000)),
      growthBytes: median(rs.map((r) => r.growthBytes)),
      repoBytes: median(rs.map((r) => r.fullRepoBytes)),
      restoreMBps: median(rs.map((r) => mbps(r.diskBytes, r.restoreMs))),
      peakRssBytes: median(rs.map((r) => Math.max(r.fullRssBytes, r.incrementalRssBytes, r.restoreRssBytes))),
      cpuS: {
        full: median(rs.map((r) => r.cpuMs.full / 1000)),
        incremental: median(rs.map((r) => r.cpuMs.incremental / 1000)),
        restore: median(rs.map((r) => r.cpuMs.restore / 1000)),
      },
      ...(inProcess ? { inProcess } : {}),
    };
  });
}

export function ratios(s: ToolSummary, restic: ToolSummary): Ratios {
  return {
    full: s.fullMBps / restic.fullMBps,
    incrementalSpeedup: restic.incrementalS / s.incrementalS,
    restore: s.restoreMBps / restic.restoreMBps,
    growth: s.growthBytes / restic.growthBytes,
    peakRss: s.peakRssBytes / restic.peakRssBytes,
  };
}

/** Issue 3's targets for Cairn, relative to restic. */
export const TARGETS = { full: 3, incrementalSpeedup: 20, growth: 0.5, restore: 2, peakRssBytes: 512 * MiB } as const;

export interface TargetCheck {
  readonly name: string;
  readonly target: string;
  readonly measured: string;
  readonly met: boolean;
}

export function checkTargets(cairn: ToolSummary, restic: ToolSummary): TargetCheck[] {
  const r = ratios(cairn, restic);
  return [
    { name: 'full backup', target: `≥ ${TARGETS.full}× restic`, measured: `${r.full.toFixed(2)}×`, met: r.full >= TARGETS.full },
    { name: 'incremental time', target: `≥ ${TARGETS.incrementalSpeedup}× faster`, measured: `${r.incrementalSpeedup.toFixed(1)}× faster`, met: r.incrementalSpeedup >= TARGETS.incrementalSpeedup },
    { name: 'incremental growth', target: `≤ ${TARGETS.growth}× restic`, measured: `${r.growth.toFixed(2)}×`, met: r.growth <= TARGETS.growth },
    { name: 'restore', target: `≥ ${TARGETS.restore}× restic`, measured: `${r.restore.toFixed(2)}×`, met: r.restore >= TARGETS.restore },
    { name: 'peak RSS', target: '≤ 512 MiB', measured: `${(cairn.peakRssBytes / MiB).toFixed(0)} MiB`, met: cairn.peakRssBytes <= TARGETS.peakRssBytes },
  ];
}

function ratioCell(value: number, restic: boolean): string {
  return restic ? '1' : Number.isFinite(value) ? `${value.toFixed(2)}×` : 'n/a';
}

/** Markdown table of medians and ratios; restic is the reference row when present. */
export function resultsTable(summaries: readonly ToolSummary[]): string {
  const restic = summaries.find((s) => s.tool === 'restic');
  const lines = [
    '| tool | full backup MB/s | × restic | incremental s | × faster | growth MiB | × restic | restore MB/s | × restic | peak RSS MiB | × restic | repo after full MiB |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const s of summaries) {
    const r = restic ? ratios(s, restic) : undefined;
    const isRef = s.tool === 'restic';
    lines.push(
      `| ${s.tool} | ${s.fullMBps.toFixed(0)} | ${r ? ratioCell(r.full, isRef) : ''} | ${s.incrementalS.toFixed(2)} | ${r ? ratioCell(r.incrementalSpeedup, isRef) : ''} | ${(s.growthBytes / MiB).toFixed(1)} | ${r ? ratioCell(r.growth, isRef) : ''} | ${s.restoreMBps.toFixed(0)} | ${r ? ratioCell(r.restore, isRef) : ''} | ${(s.peakRssBytes / MiB).toFixed(0)} | ${r ? ratioCell(r.peakRss, isRef) : ''} | ${(s.repoBytes / MiB).toFixed(0)} |`,
    );
  }
  return lines.join('\n');
}

/** CPU seconds per operation: steadier than wall time when other jobs share the cores. */
export function cpuTable(summaries: readonly ToolSummary[]): string {
  const restic = summaries.find((s) => s.tool === 'restic');
  const cell = (v: number, ref: number | undefined, isRef: boolean) =>
    `${v.toFixed(2)} | ${isRef ? '1' : ref !== undefined && Number.isFinite(v / ref) ? `${(v / ref).toFixed(2)}×` : ''}`;
  return [
    '| tool | full CPU s | × restic | incremental CPU s | × restic | restore CPU s | × restic |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...summaries.map((s) => {
      const isRef = s.tool === 'restic';
      return `| ${s.tool} | ${cell(s.cpuS.full, restic?.cpuS.full, isRef)} | ${cell(s.cpuS.incremental, restic?.cpuS.incremental, isRef)} | ${cell(s.cpuS.restore, restic?.cpuS.restore, isRef)} |`;
    }),
  ].join('\n');
}

export function targetsTable(checks: readonly TargetCheck[]): string {
  return [
    '| target | aim | measured | met |',
    '| --- | --- | --- | --- |',
    ...checks.map((c) => `| ${c.name} | ${c.target} | ${c.measured} | ${c.met ? 'yes' : '**no**'} |`),
  ].join('\n');
}

/** Plain-text rendering of a Markdown table for the terminal. */
export function plainTable(markdown: string): string {
  const rows = markdown
    .split('\n')
    .filter((l) => !/^\|\s*-/.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim().replace(/\*\*/g, '')));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n');
}

/** Replaces the text between `<!-- name:begin -->` and `<!-- name:end -->`. */
export function replaceSection(doc: string, name: string, body: string): string {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i < 0 || j < i) return `${doc.trimEnd()}\n\n${begin}\n${body}\n${end}\n`;
  return `${doc.slice(0, i + begin.length)}\n${body}\n${doc.slice(j)}`;
}
