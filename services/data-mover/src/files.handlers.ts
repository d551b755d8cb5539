// File-level restore on the data mover: the BrowseFiles, RestoreFiles, OpenFileDownload and SearchFiles
// commands, and the file index built after each backup (RestorePointCommitted, unless the
// policy wants none: the transfer labelled the manifest) and dropped with its restore point
// (RestorePointExpired).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { eventStreamName, eventSubjectFilter, type CommandPayloadMap, type KnownEvent } from '@cairn/contracts';
import { CommandContext, CommandHandler, JetStreamContext, JetStreamHandler } from '@cairn/messaging';
import { FileBrowser } from './file-browser.ts';

// Refusals (FilesRefused, RestoreRefused) reach the caller as they are, with their code and
// details; anything else as the route's failureCode with its message.
@Controller()
export class FilesHandlers {
  constructor(@Inject(FileBrowser) private readonly files: FileBrowser) {}

  @CommandHandler('data-mover', 'SearchFiles', { failureCode: 'search_failed' })
  search(@Payload() p: CommandPayloadMap['SearchFiles'], @Ctx() ctx: CommandContext) {
    return this.files.search(p, ctx.actor, ctx.command.id, ctx.trace);
  }

  @CommandHandler('data-mover', 'BrowseFiles', { failureCode: 'browse_failed' })
  browse(@Payload() p: CommandPayloadMap['BrowseFiles'], @Ctx() ctx: CommandContext) {
    return this.files.browse(p, ctx.actor, ctx.command.id, ctx.trace);
  }

  @CommandHandler('data-mover', 'OpenFileDownload', { failureCode: 'download_failed' })
  openDownload(@Payload() p: CommandPayloadMap['OpenFileDownload'], @Ctx() ctx: CommandContext) {
    return this.files.openDownload(p, ctx.actor, ctx.command.id, ctx.trace);
  }

  @CommandHandler('data-mover', 'RestoreFiles', { failureCode: 'restore_failed' })
  restoreFiles(@Payload() p: CommandPayloadMap['RestoreFiles'], @Ctx() ctx: CommandContext) {
    return this.files.restoreFiles(p, ctx.actor, ctx.command.id, ctx.trace, ctx.info.vouchedBy === 'user' && ctx.actor.kind === 'user');
  }
}

/** Builds file indexes after backups and drops them with their restore points. */
export function fileIndexHandlers(site: string) {
  @Controller()
  class FileIndexHandlers {
    constructor(@Inject(FileBrowser) private readonly files: FileBrowser) {}

    @JetStreamHandler({ stream: eventStreamName(site), durable: 'data-mover-file-index', filterSubject: eventSubjectFilter(site, 'job'), ackWaitMs: 60_000, maxDeliver: 3 })
    async committed(@Payload() event: KnownEvent, @Ctx() ctx: JetStreamContext) {
      if (event.type !== 'RestorePointCommitted') return;
      // An index build waits for an appliance (tens of seconds): keep the delivery ours meanwhile.
      const beat = setInterval(() => ctx.working(), 15_000);
      try {
        await this.files.buildIndex(event.data.restorePointId);
      } finally {
        clearInterval(beat);
      }
    }

    @JetStreamHandler({ stream: eventStreamName(site), durable: 'data-mover-file-index-expiry', filterSubject: eventSubjectFilter(site, 'restorepoint'), ackWaitMs: 30_000 })
    async expired(@Payload() event: KnownEvent) {
      if (event.type === 'RestorePointExpired' || event.type === 'RestorePointDeleted') await this.files.dropIndex(event.data.restorePointId);
    }
  }
  return FileIndexHandlers;
}
