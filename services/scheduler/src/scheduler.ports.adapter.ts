// The scheduler's ports on NATS: snapshot commands to the coordinator (request/reply) and
// transfer work onto the JetStream work queue (deduplicated by job and snapshot).
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { ensureWorkStream } from '@cairn/work-queue';
import { streamReplicas, workSubject, type Actor, type CommandReply } from '@cairn/contracts';
import { CommandBus, JetStreamClient, CommandNoRespondersError, CommandTimeoutError, MessageTooLargeError } from '@cairn/messaging';
import { TRANSFER_QUEUE, type TransferWork } from '@cairn/jobs';
import { SnapshotRefused, type SchedulerPorts } from './scheduler.service.ts';

/**
 * A snapshot command is asked again, with the same idempotency key, when `attemptMs` pass without
 * an answer: a request (or its reply) in flight through a cluster member that dies is lost, and
 * waiting for the whole `snapshotTimeoutMs` (2 min) left the job, and its host's slot, idle that
 * long (a 3,000-VM scale run's last job, its release sent at the member's SIGKILL). The
 * coordinator answers a repeat of a command it is still running with `in_progress` (asked again
 * after a pause) and one it ran with the stored reply, so a slow snapshot is not taken twice.
 */
export interface SnapshotCommandTiming {
  /** How long one request waits for its answer before it is sent again (default 15 s). */
  readonly attemptMs?: number;
  /** Pause before asking again after an `in_progress` answer (default 2 s). */
  readonly inProgressPauseMs?: number;
  /** How long a transfer's work publish is tried again after it failed (default 30 s). */
  readonly enqueueRetryMs?: number;
}

export async function natsSchedulerPorts(nc: NatsConnection, site: string, actor: Actor, snapshotTimeoutMs: number, timing: SnapshotCommandTiming = {}): Promise<SchedulerPorts> {
  const bus = new CommandBus(nc, { site, actor });
  const attemptMs = timing.attemptMs ?? 15_000;
  const pauseMs = timing.inProgressPauseMs ?? 2_000;
  const enqueueRetryMs = timing.enqueueRetryMs ?? 30_000;
  /** Sends until answered (other than in_progress) or `snapshotTimeoutMs` passed; the last timeout is thrown. */
  const untilAnswered = async <R>(send: (timeoutMs: number) => Promise<CommandReply<R>>): Promise<CommandReply<R>> => {
    const deadline = Date.now() + snapshotTimeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      let reply: CommandReply<R>;
      try {
        reply = await send(Math.max(1, Math.min(attemptMs, left)));
      } catch (e) {
        if (e instanceof CommandTimeoutError && deadline - Date.now() > 0) continue;
        throw e;
      }
      if (reply.accepted || reply.error.code !== 'in_progress' || deadline - Date.now() <= pauseMs) return reply;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  const js = new JetStreamClient(nc);
  await ensureWorkStream(await jetstreamManager(nc), site, streamReplicas(nc.info));
  return {
    async requestSnapshot({ jobId, vmId, snapshotId, mode, policyId, parent, jobRevision, jobPosition, causationId, quiesce }) {
      const reply = await untilAnswered((timeoutMs) => bus.send('snapshot-coordinator', 'RequestSnapshot', {
        jobId, vmId, snapshotId, mode, policyId, parent, jobRevision, ...(jobPosition !== undefined ? { jobPosition } : {}), ...(causationId ? { causationId } : {}), ...(quiesce ? { quiesce } : {}),
      }, {
        idempotencyKey: snapshotId, timeoutMs,
      }));
      if (!reply.accepted) {
        if (reply.error.code === 'unavailable' || reply.error.code === 'in_progress') throw new Error(reply.error.message);
        throw new SnapshotRefused(`snapshot coordinator refused: ${reply.error.message}`);
      }
    },
    async releaseSnapshot({ jobId, snapshotId, success, jobRevision, jobPosition, causationId }) {
      const reply = await untilAnswered((timeoutMs) => bus.send('snapshot-coordinator', 'ReleaseSnapshot', {
        jobId, snapshotId, outcome: success ? 'success' : 'failure', ...(success ? {} : { reason: 'the job did not commit a restore point' }),
        jobRevision, ...(jobPosition !== undefined ? { jobPosition } : {}), ...(causationId ? { causationId } : {}),
      }, { idempotencyKey: `release-${snapshotId}`, timeoutMs }));
      if (!reply.accepted && reply.error.code !== 'not_found') throw new Error(reply.error.message);
    },
    async requestTestRestore(cmd) {
      const reply = await bus.send('data-mover', 'TestRestore', cmd, { idempotencyKey: cmd.testRestoreId ?? cmd.restorePointId, timeoutMs: 60_000 });
      if (!reply.accepted) throw new Error(`data mover refused the test restore: ${reply.error.message}`);
    },
    async enqueueTransfer(work: TransferWork) {
      // TransferQueued is already in the log: a publish that fails is not taken up again before
      // the job's requeue age (60 s). While the cluster elects a new metadata or work-stream
      // leader (a member lost: "jetstream is not enabled", timeouts, for a few seconds) it is
      // tried again here, for up to 30 s; the message id makes a repeat of a stored one a no-op.
      const deadline = Date.now() + enqueueRetryMs;
      for (let attempt = 0; ; attempt++) {
        try {
          await js.publish(workSubject(site, TRANSFER_QUEUE), work, { msgID: `transfer-${work.jobId}-${work.snapshotId}` });
          return;
        } catch (e) {
          if (e instanceof MessageTooLargeError || Date.now() >= deadline) throw e;
          await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)));
        }
      }
    },
  };
}

export function isTransient(e: unknown): boolean {
  return e instanceof CommandNoRespondersError || e instanceof CommandTimeoutError;
}
