// Reads one restore job from its stream `restore-<id>` and folds it with the restore decider.
import type { KnownEvent } from '@cairn/contracts';
import { fold, type EventStreamReader } from '@cairn/eventlog';
import { restoreDecider, restoreJobView } from '@cairn/jobs';
import type { RestoreJobReader } from './restore-jobs.controller.ts';

export function restoreJobReader(log: EventStreamReader): RestoreJobReader {
  return {
    async get(restoreId) {
      const events: KnownEvent[] = [];
      for await (const r of log.readStream(`restore-${restoreId}`)) events.push(r.event);
      return restoreJobView(fold(restoreDecider, events));
    },
  };
}
