// Open views as the coordinator remembers them across restarts: one JSON file under the data
// dir, replaced atomically on every change. Together with the naming-prefix scan in the
// adapter, this lets a restarted coordinator keep live views until their lease ends and
// remove everything else a crashed run left.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
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

  constructor(readonly file: string) {}

  async load(): Promise<ViewRecord[]> {
    try {
      const parsed = JSON.parse(await readFile(this.file, 'utf8')) as { views?: ViewRecord[] };
      this.#records = new Map((parsed.views ?? []).map((r) => [r.snapshotId, r]));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read view records ${this.file}: ${(e as Error).message}`, { cause: e });
      this.#records = new Map();
    }
    return this.all();
  }

  all(): ViewRecord[] { return [...this.#records.values()]; }
  get(snapshotId: string): ViewRecord | undefined { return this.#records.get(snapshotId); }

  async put(r: ViewRecord): Promise<void> {
    this.#records.set(r.snapshotId, r);
    await this.#flush();
  }

  async delete(snapshotId: string): Promise<void> {
    if (this.#records.delete(snapshotId)) await this.#flush();
  }

  #flush(): Promise<void> {
    // Writes are serialised; each writes the whole current set (one entry per open view). Changes
    // made while a write is queued and not started share it: thousands of views opened and
    // released at once cost a few writes, not one whole-file write each.
    if (this.#queued) return this.#queued;
    const write = this.#writing.catch(() => undefined).then(async () => {
      this.#queued = undefined; // from here on a change needs the next write
      const views = this.all();
      await mkdir(dirname(this.file), { recursive: true });
      const tmp = `${this.file}.tmp`;
      await writeFile(tmp, JSON.stringify({ views }, null, 1));
      await rename(tmp, this.file);
    });
    this.#queued = write;
    this.#writing = write;
    return write;
  }
}
