import { describe, expect, it } from 'vitest';
import { FileProgressPrinter, progressMode } from './files-progress.ts';

const MiB = 1024 * 1024;

describe('cairn files get progress on stderr', () => {
  it('redraws one line on a terminal with bytes so far, the total, rate and ETA, and ends it', () => {
    const out: string[] = [];
    const p = new FileProgressPrinter('zip', 'tty', (s) => out.push(s), 0);
    p.update({ disk: 'disk0', bytesDone: 10 * MiB, bytesPlanned: 40 * MiB }, 1000);
    p.update({ disk: 'disk0', bytesDone: 20 * MiB, bytesPlanned: 40 * MiB }, 2000);
    p.end();
    expect(out).toEqual([
      '\r  zip disk0 [#####---------------]  25% 10.0 MiB of 40.0 MiB, 10.0 MiB/s, ETA 3 s        ',
      '\r  zip disk0 [##########----------]  50% 20.0 MiB of 40.0 MiB, 10.0 MiB/s, ETA 2 s        ',
      '\n',
    ]);
  });

  it('writes a line per tenth when stderr is no terminal, and nothing with --json', () => {
    const out: string[] = [];
    const p = new FileProgressPrinter('into vm', 'lines', (s) => out.push(s), 0);
    for (let done = 0; done <= 100; done += 5) p.update({ disk: 'disk0', bytesDone: done * MiB, bytesPlanned: 100 * MiB }, done * 100);
    p.end();
    expect(out).toHaveLength(11);
    expect(out[0]).toBe('  into vm disk0 [--------------------]   0% 0 B of 100.0 MiB, 0 B/s\n');
    expect(out[10]).toMatch(/^ {2}into vm disk0 \[#{20}\] 100% 100\.0 MiB of 100\.0 MiB/);
    expect(progressMode(true, true)).toBe('quiet');
    expect(progressMode(false, true)).toBe('tty');
    expect(progressMode(false, false)).toBe('lines');
    const quiet: string[] = [];
    const q = new FileProgressPrinter('zip', progressMode(true, false), (s) => quiet.push(s), 0);
    q.update({ disk: 'disk0', bytesDone: 5, bytesPlanned: 10 }, 10);
    q.end();
    expect(quiet).toEqual([]);
  });
});
