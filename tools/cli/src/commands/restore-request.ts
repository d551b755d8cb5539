// Starts a restore job from the CLI (RequestRestore) and hands it to restore-job.ts to follow.
// Kept apart from restore-job.ts so that what a restore loads before its request is sent is the
// command bus alone: the follower (the event log client, the restore decider, the progress line)
// loads while the data mover records the request (operate.command.ts).
import { randomUUID } from 'node:crypto';
import type { RestoreRequestTarget } from '@cairn/contracts';
import { accepted } from '../cli-replies.ts';
import { output, type Session } from '../session.ts';

/** Starts a restore job; with `wait`, follows it to its end. */
export async function startRestore(s: Session, restorePointId: string, target: RestoreRequestTarget, o: { wait: boolean; timeoutMs: number; restoreId?: string; bandwidthBytesPerSec?: number }): Promise<void> {
  const restoreId = o.restoreId ?? randomUUID();
  const limit = o.bandwidthBytesPerSec ? { bandwidthBytesPerSec: o.bandwidthBytesPerSec } : {};
  const reply = s.bus.send('data-mover', 'RequestRestore', { restoreId, restorePointId, target, ...limit }, { idempotencyKey: restoreId });
  // Started after the send: the request leaves in this turn (the NATS client flushes in a
  // microtask), the follower's modules load while the reply is on its way.
  const follower = o.wait ? import('./restore-job.ts') : undefined;
  // A refused request leaves the follower's import unread: that is not an error of its own.
  follower?.catch(() => undefined);
  accepted(await reply, 'restore not started');
  if (!follower) {
    output(s, { restoreId }, () => `restore ${restoreId} requested; follow it with \`cairn job watch ${restoreId}\``);
    return;
  }
  await (await follower).watchRestore(s, restoreId, o.timeoutMs);
}
