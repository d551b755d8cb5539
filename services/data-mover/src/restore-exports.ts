// Restore points served over NBD (the ground instant recovery stands on): each export reads
// the restore point through the repository reader, and writes go to a copy-on-write overlay
// in a temp file, so the restore point itself never changes.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdServer, copyOnWrite, fromRepositoryDisk, type CopyOnWriteDisk } from '@cairn/nbd';
import type { DiskReader } from '@cairn/repository';

/** What an export serves: shown by `cairn restore-export list` (ListRestoreExports). */
export interface ExportInfo {
  readonly restorePointId: string;
  readonly disk: string;
  /** `restore`: asked for by an operator (cairn restore --nbd); `files`: a file-browsing appliance reads it; `test-restore`: a test restore boots it. */
  readonly purpose: 'restore' | 'files' | 'test-restore';
}

export class RestoreExports {
  private server: NbdServer | undefined;
  private readonly disks = new Map<string, CopyOnWriteDisk>();
  private readonly info = new Map<string, ExportInfo & { readonly sizeBytes: number; readonly since: string }>();

  constructor(private readonly runDir: string) {}

  get socket(): string {
    return join(this.runDir, 'restore-nbd.sock');
  }

  async add(exportName: string, disk: DiskReader, info: ExportInfo): Promise<{ socket: string; exportName: string }> {
    if (this.disks.has(exportName)) throw new Error(`an export named ${exportName} is already served`);
    await mkdir(join(this.runDir, 'overlays'), { recursive: true });
    if (!this.server) {
      this.server = new NbdServer();
      await this.server.listen({ path: this.socket });
    }
    const cow = await copyOnWrite(fromRepositoryDisk(disk), { overlay: { dir: join(this.runDir, 'overlays') }, maxOverlayBytes: 64 * 1024 ** 3 });
    this.disks.set(exportName, cow);
    this.info.set(exportName, { ...info, sizeBytes: disk.sizeBytes, since: new Date().toISOString() });
    this.server.addExport(exportName, { source: cow, description: 'Cairn restore point (writes kept in an overlay)' });
    return { socket: this.socket, exportName };
  }

  async remove(exportName: string): Promise<boolean> {
    const disk = this.disks.get(exportName);
    if (!disk) return false;
    this.server?.removeExport(exportName);
    this.disks.delete(exportName);
    this.info.delete(exportName);
    await disk.close();
    return true;
  }

  names(): string[] {
    return [...this.disks.keys()];
  }

  /** Every export served now, by name. */
  list(): Array<ExportInfo & { exportName: string; socket: string; sizeBytes: number; since: string }> {
    return [...this.info].map(([exportName, i]) => ({ exportName, socket: this.socket, ...i })).sort((a, b) => a.exportName.localeCompare(b.exportName));
  }

  async close(): Promise<void> {
    for (const name of [...this.disks.keys()]) await this.remove(name);
    await this.server?.close();
    this.server = undefined;
  }
}
