// The exporter of an instant recovery session (`cairn serve-restore-point`): the disks of one
// restore point served read-only over NBD on a unix socket, in a process of its own (started by
// the data mover, in its own process group) so the running VM keeps reading its disks while data movers restart. The VM's
// writes never reach it: they stay in QEMU's local overlays.
import { chmod, rm } from 'node:fs/promises';
import { NbdServer, fromRepositoryDisk } from '@cairn/nbd';
import type { Repository } from '@cairn/repository';

export interface ServedRestorePoint {
  close(): Promise<void>;
}

/** Serves each disk of the restore point under its own name at `socket` (read-only). */
export async function serveRestorePoint(repository: Repository, restorePointId: string, disks: readonly string[], socket: string, o: { shared?: boolean } = {}): Promise<ServedRestorePoint> {
  const server = new NbdServer();
  for (const disk of disks) {
    const reader = await repository.openDisk(restorePointId, disk);
    server.addExport(disk, { source: fromRepositoryDisk(reader), description: `Cairn restore point ${restorePointId} disk ${disk} (read-only; instant recovery)` });
  }
  await rm(socket, { force: true }); // left by an exporter that was killed
  await server.listen({ path: socket });
  if (o.shared) await chmod(socket, 0o666); // libvirt's QEMU user connects; the directory around it decides who can reach it
  return {
    async close() {
      await server.close();
      await rm(socket, { force: true });
    },
  };
}
