// WriteGuestFiles: files restored into a running VM (`cairn files get … --into-vm`). The data
// mover reads them from the restore point and serves them as one stream; this side pulls it
// and writes each file through the VM's guest agent (guest-file-open/write/close), the only
// path into the guest that needs no network. Nothing is replaced without `overwrite`: every
// target is checked before the first byte is written.
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { Readable } from 'node:stream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Refusal, type CommandPayloadMap } from '@cairn/contracts';
import { CommandContext, CommandHandler, pullFileStream } from '@cairn/messaging';
import { GuestFileExistsError, guestFileExists, writeIntoGuest } from '@cairn/guest-files';
import { SnapshotCoordinator } from './snapshot-coordinator.service.ts';
import { SERVICE_NAME } from './snapshot-coordinator.handlers.ts';

export const GUEST_FILES_NATS = Symbol('GUEST_FILES_NATS');

/** Hands out exactly `size` bytes at a time from a stream of chunks. */
export function byteCounts(chunks: AsyncIterator<Buffer>) {
  let rest: Buffer = Buffer.alloc(0);
  return async function* take(size: number): AsyncGenerator<Buffer> {
    let left = size;
    while (left > 0) {
      if (rest.length === 0) {
        const r = await chunks.next();
        if (r.done) throw new Error(`the file stream ended ${left} bytes early`);
        rest = r.value;
      }
      const piece = rest.subarray(0, Math.min(left, rest.length));
      rest = rest.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  };
}

@Controller()
export class GuestFilesHandlers {
  constructor(
    @Inject(SnapshotCoordinator) private readonly coordinator: SnapshotCoordinator,
    @Inject(GUEST_FILES_NATS) private readonly nats: { nc: NatsConnection; site: string },
  ) {}

  @CommandHandler(SERVICE_NAME, 'WriteGuestFiles')
  async write(@Payload() p: CommandPayloadMap['WriteGuestFiles'], @Ctx() _ctx: CommandContext) {
    const chunks = pullFileStream(this.nats.nc, this.nats.site, p.streamId);
    try {
      const agent = await this.coordinator.guestAgentOf(p.vmId);
      if (!p.overwrite) {
        const existing: string[] = [];
        for (const f of p.files) if (await guestFileExists(agent, f.guestPath)) existing.push(f.guestPath);
        if (existing.length) throw new Refusal('conflict', `${existing.join(', ')} ${existing.length === 1 ? 'exists' : 'exist'} in VM ${p.vmId}; nothing was written (pass --overwrite to replace)`);
      }
      const take = byteCounts(chunks);
      const written: string[] = [];
      let bytes = 0;
      for (const f of p.files) {
        try {
          bytes += (await writeIntoGuest(agent, f.guestPath, Readable.from(take(f.size)), { overwrite: p.overwrite ?? false })).bytes;
        } catch (e) {
          if (e instanceof GuestFileExistsError) throw new Refusal('conflict', `${e.message} (VM ${p.vmId})`);
          throw new Refusal('internal', `writing ${f.guestPath} into VM ${p.vmId}: ${(e as Error).message}${written.length ? ` (already written: ${written.join(', ')})` : ''}`);
        }
        written.push(f.guestPath);
      }
      return { written, bytes };
    } finally {
      // Ends the stream at the data mover (a cancel when not read to its end).
      await chunks.return(undefined);
    }
  }
}
