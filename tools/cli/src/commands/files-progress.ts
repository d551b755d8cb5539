// How far `cairn files get --zip` / `--into-vm` got: the data mover publishes
// `{ disk, bytesDone, bytesPlanned }` on `cairn.<site>.progress.<progressId>` (the id the CLI put
// in RestoreFiles); drawn on stderr like `backup --wait`: one redrawn line on a terminal, a line
// per tenth otherwise, nothing with --json (stdout keeps only the answer).
import { progressLine } from './operate.command.ts';

export interface FileProgress {
  readonly disk: string;
  readonly bytesDone: number;
  readonly bytesPlanned: number | null;
}

/** Turns progress messages into stderr writes; pure apart from `write` and the clock it is given. */
export class FileProgressPrinter {
  private lastAt: number;
  private lastDone = 0;
  private rate = 0;
  private printedTenth = -1;
  private drawn = false;

  constructor(private readonly label: string, private readonly mode: 'tty' | 'lines' | 'quiet', private readonly write: (s: string) => void, now: number) {
    this.lastAt = now;
  }

  update(p: FileProgress, now: number): void {
    if (now - this.lastAt >= 500) {
      this.rate = ((p.bytesDone - this.lastDone) * 1000) / (now - this.lastAt);
      this.lastAt = now; this.lastDone = p.bytesDone;
    }
    const line = `  ${this.label} ${progressLine(p.disk, p.bytesDone, p.bytesPlanned, this.rate)}`;
    if (this.mode === 'tty') {
      this.write(`\r${line}        `);
      this.drawn = true;
    } else if (this.mode === 'lines') {
      // Without a total, a line per 64 MiB.
      const step = p.bytesPlanned ? Math.floor((p.bytesDone / p.bytesPlanned) * 10) : Math.floor(p.bytesDone / (64 * 1024 * 1024));
      if (step > this.printedTenth) { this.printedTenth = step; this.write(`${line}\n`); }
    }
  }

  /** Ends the redrawn line (before the answer is printed). */
  end(): void {
    if (this.drawn) { this.write('\n'); this.drawn = false; }
  }
}

export function progressMode(json: boolean, isTty: boolean | undefined): 'tty' | 'lines' | 'quiet' {
  if (json) return 'quiet';
  return isTty ? 'tty' : 'lines';
}
