// File-level restore on the data mover: the BrowseFiles, RestoreFiles and SearchFiles
// commands, and the file index built after each backup (RestorePointCommitted, when the
// policy wants it; default on) and dropped with its restore point (RestorePointExpired).
import { Controller, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { eventStreamName, eventSubjectFilter, type CommandPayloadMap, type KnownEvent } from '@cairn/contracts';
import { fold, type EventLog } from '@cairn/eventlog';
import { policyDecider } from '@cairn/jobs';
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

  @CommandHandler('data-mover', 'RestoreFiles', { failureCode: 'restore_failed' })
  restoreFiles(@Payload() p: CommandPayloadMap['RestoreFiles'], @Ctx() ctx: CommandContext) {
    return this.files.restoreFiles(p, ctx.actor, ctx.command.id, ctx.trace, ctx.info.vouchedBy === 'user' && ctx.actor.kind === 'user');
  }
}

/** Whether the policy of a job wants file indexes (a manual job outside any policy: yes). */
async function indexWanted(log: EventLog, jobId: string): Promise<boolean> {
  let policyId: string | null = null;
  for await (const r of log.readStream(`job-${jobId}`)) {
    if (r.event.type === 'JobRequested') { policyId = r.event.data.policyId; break; }
  }
  if (!policyId) return true;
  const events: KnownEvent[] = [];
  for await (const r of log.readStream(`policy-${policyId}`)) events.push(r.event);
  return fold(policyDecider, events).policy?.fileIndex !== false;
}

export const FILE_INDEX_LOG = Symbol('FILE_INDEX_LOG');

/** Builds file indexes after backups and drops them with their restore points. */
export function fileIndexHandlers(site: string) {
  @Controller()
  class FileIndexHandlers {
    constructor(@Inject(FileBrowser) private readonly files: FileBrowser, @Inject(FILE_INDEX_LOG) private readonly log: EventLog) {}

    @JetStreamHandler({ stream: eventStreamName(site), durable: 'data-mover-file-index', filterSubject: eventSubjectFilter(site, 'job'), ackWaitMs: 60_000, maxDeliver: 3 })
    async committed(@Payload() event: KnownEvent, @Ctx() ctx: JetStreamContext) {
      if (event.type !== 'RestorePointCommitted') return;
      if (!(await indexWanted(this.log, event.data.jobId))) return;
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
