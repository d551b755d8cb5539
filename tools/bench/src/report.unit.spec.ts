import { describe, expect, it } from 'vitest';
import { checkTargets, median, replaceSection, summarize, type RunResult } from './report.ts';

const MiB = 1024 * 1024;

function run(tool: string, n: number, fullMs: number, incrementalMs: number, restoreMs: number, growth: number, rss: number): RunResult {
  return {
    tool, run: n, diskBytes: 2000 * 1e6, fullMs, fullRssBytes: rss, fullRepoBytes: 800 * MiB,
    incrementalMs, incrementalRssBytes: rss / 2, growthBytes: growth, restoreMs, restoreRssBytes: rss / 2,
    cpuMs: { full: fullMs, incremental: incrementalMs, restore: restoreMs },
  };
}

describe('benchmark report', () => {
  it('takes medians per tool and checks the targets against restic', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const results = [
      run('restic', 1, 10_000, 6000, 8000, 400 * MiB, 120 * MiB),
      run('restic', 2, 12_000, 5000, 9000, 400 * MiB, 130 * MiB),
      run('restic', 3, 11_000, 7000, 7000, 400 * MiB, 125 * MiB),
      run('cairn', 1, 3000, 250, 4000, 100 * MiB, 300 * MiB),
      run('cairn', 2, 4000, 300, 4000, 100 * MiB, 300 * MiB),
      run('cairn', 3, 5000, 350, 4000, 100 * MiB, 300 * MiB),
    ];
    const [restic, cairn] = summarize(results);
    expect(restic!.fullMBps).toBeCloseTo(2000 / 11);
    expect(cairn!.incrementalS).toBeCloseTo(0.3);
    const checks = Object.fromEntries(checkTargets(cairn!, restic!).map((c) => [c.name, c.met]));
    expect(checks).toEqual({ 'full backup': false, 'incremental time': true, 'incremental growth': true, restore: true, 'peak RSS': true });
  });

  it('replaces a marked section of a document and leaves the rest', () => {
    const doc = 'intro\n<!-- r:begin -->\nold\n<!-- r:end -->\noutro\n';
    expect(replaceSection(doc, 'r', 'new')).toBe('intro\n<!-- r:begin -->\nnew\n<!-- r:end -->\noutro\n');
    expect(replaceSection('x', 'r', 'new')).toBe('x\n\n<!-- r:begin -->\nnew\n<!-- r:end -->\n');
  });
});
