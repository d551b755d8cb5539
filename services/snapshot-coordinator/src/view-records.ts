// Open views as the coordinator remembers them across restarts: a JSON snapshot under the data
// dir (replaced atomically) and a journal of the changes since (one line each). Together with the naming-prefix scan in the
// adapter, this lets a restarted coordinator keep live views until their lease ends and
// remove everything else a crashed run left.
import { mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { View } from '@cairn/hypervisor';
import type { TraceContext } from '@cairn/contracts';

export interface ViewRecord {
  readonly snapshotId: string;
  readonly jobId: string;
  /** Which configured hypervisor instance holds the view. */
  readonly instance: string;
  readonly view: View;
  readonly expiresAt: string;
  /** The trace of the command that opened it: a release by the lease reaper continues it. */
  readonly trace?: TraceContext;
}

/** Records whose lease has run out at `now`. */
export function expiredRecords(records: Iterable<ViewRecord>, now: Date): ViewRecord[] {
  return [...records].filter((r) => Date.parse(r.expiresAt) <= now.getTime());
}

export class ViewRecordFile {
  #records = new Map<string, ViewRecord>();
  #writing: Promise<void> = Promise.resolve();
  /** The write that has not started yet: later changes join it. */
  #queued: Promise<void> | undefined;
  /** Changes not written yet (journal lines), and lines in the journal since the last snapshot. */
  #pending: string[] = [];
  #journalLines = 0;
  /** The journal, open for appending while changes come (an open, a mkdir and a close per write
   *  were a third of the records' cost at thousands of views: the 1,000-VM scale profile). */
  #journalFile: FileHandle | undefined;
  #dirMade = false;

  constructor(readonly file: string) {}

  /** Changes since the snapshot `file`: one JSON line each (`{"put":record}` / `{"delete":id}`). */
  get journal(): string { return `${this.file}.journal`; }

  async load(): Promise<ViewRecord[]> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as { views?: ViewRecord[] };
      this.#records = new Map((parsed.views ?? []).map((r) => [r.snapshotId, r]));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read view records ${this.file}: ${(e as Error).message}`, { cause: e });
      this.#records = new Map();
    }
    let text = '';
    try { text = await readFile(this.journal, 'utf8'); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read view records ${this.journal}: ${(e as Error).message}`, { cause: e });
    }
    const lines = text.split('\n').filter((l) => l.length > 0);
    this.#journalLines = lines.length;
    for (const [i, line] of lines.entries()) {
      let change: { put?: ViewRecord; delete?: string };
      try { change = JSON.parse(line) as typeof change; } catch (e) {
        // Only the last line can be cut short (a crash while appending): that change never returned.
        if (i === lines.length - 1 && !text.endsWith('\n')) break;
        throw new Error(`cannot read view records ${this.journal}, line ${i + 1}: ${(e as Error).message}`, { cause: e });
      }
      if (change.put) this.#records.set(change.put.snapshotId, change.put);
      else if (change.delete) this.#records.delete(change.delete);
    }
    return this.all();
  }

  all(): ViewRecord[] { return [...this.#records.values()]; }
  get(snapshotId: string): ViewRecord | undefined { return this.#records.get(snapshotId); }

  async put(r: ViewRecord): Promise<void> {
    this.#records.set(r.snapshotId, r);
    this.#pending.push(JSON.stringify({ put: r }));
    await this.#flush();
  }

  async delete(snapshotId: string): Promise<void> {
    if (!this.#records.delete(snapshotId)) return;
    this.#pending.push(JSON.stringify({ delete: snapshotId }));
    await this.#flush();
  }

  #flush(): Promise<void> {
    // Writes are serialised. A change is one line appended to the journal (thousands of views
    // opened and released at once cost one short append each, shared by the changes made while
    // an append waits); once the journal is longer than twice the open views (and 1,000
    // lines), the whole set is written as the snapshot (atomically) and the journal emptied.
    // Replaying the journal over a newer snapshot gives the same set: each line sets or
    // removes one record, and the snapshot holds the result of all of them.
    if (this.#queued) return this.#queued;
    const write = this.#writing.catch(() => undefined).then(async () => {
      this.#queued = undefined; // from here on a change needs the next write
      const lines = this.#pending;
      this.#pending = [];
      if (lines.length === 0) return;
      if (!this.#dirMade) {
        await mkdir(dirname(this.file), { recursive: true });
        this.#dirMade = true;
      }
      if (this.#journalLines + lines.length > Math.max(1000, 2 * this.#records.size)) {
        const tmp = `${this.file}.tmp`;
        await writeFile(tmp, JSON.stringify({ views: this.all() }, null, 1));
        await rename(tmp, this.file);
        await this.#closeJournal();
        await writeFile(this.journal, '');
        this.#journalLines = 0;
        return;
      }
      this.#journalFile ??= await open(this.journal, 'a');
      await this.#journalFile.appendFile(`${lines.join('\n')}\n`);
      this.#journalLines += lines.length;
    });
    this.#queued = write;
    this.#writing = write;
    return write;
  }

  /** Waits for the writes under way and closes the journal (a later change opens it again). */
  async close(): Promise<void> {
    await this.#writing.catch(() => undefined);
    await this.#closeJournal();
  }

  async #closeJournal(): Promise<void> {
    const f = this.#journalFile;
    this.#journalFile = undefined;
    await f?.close();
  }
}
