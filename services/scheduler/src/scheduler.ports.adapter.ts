// The scheduler's ports on NATS: snapshot commands to the coordinator (request/reply) and
// transfer work onto the JetStream work queue (deduplicated by job and snapshot).
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { ensureWorkStream } from '@cairn/work-queue';
import { streamReplicas, workSubject, type Actor } from '@cairn/contracts';
import { CommandBus, JetStreamClient, CommandNoRespondersError, CommandTimeoutError } from '@cairn/messaging';
import { TRANSFER_QUEUE, type TransferWork } from '@cairn/jobs';
import { SnapshotRefused, type SchedulerPorts } from './scheduler.service.ts';

export async function natsSchedulerPorts(nc: NatsConnection, site: string, actor: Actor, snapshotTimeoutMs: number): Promise<SchedulerPorts> {
  const bus = new CommandBus(nc, { site, actor });
  const js = new JetStreamClient(nc);
  await ensureWorkStream(await jetstreamManager(nc), site, streamReplicas(nc.info));
  return {
    async requestSnapshot({ jobId, vmId, snapshotId, mode, policyId, parent, jobRevision, jobPosition, causationId, quiesce }) {
      const reply = await bus.send('snapshot-coordinator', 'RequestSnapshot', {
        jobId, vmId, snapshotId, mode, policyId, parent, jobRevision, ...(jobPosition !== undefined ? { jobPosition } : {}), ...(causationId ? { causationId } : {}), ...(quiesce ? { quiesce } : {}),
      }, {
        idempotencyKey: snapshotId, timeoutMs: snapshotTimeoutMs,
      });
      if (!reply.accepted) {
        if (reply.error.code === 'unavailable' || reply.error.code === 'in_progress') throw new Error(reply.error.message);
        throw new SnapshotRefused(`snapshot coordinator refused: ${reply.error.message}`);
      }
    },
    async releaseSnapshot({ jobId, snapshotId, success, jobRevision, jobPosition, causationId }) {
      const reply = await bus.send('snapshot-coordinator', 'ReleaseSnapshot', {
        jobId, snapshotId, outcome: success ? 'success' : 'failure', ...(success ? {} : { reason: 'the job did not commit a restore point' }),
        jobRevision, ...(jobPosition !== undefined ? { jobPosition } : {}), ...(causationId ? { causationId } : {}),
      }, { idempotencyKey: `release-${snapshotId}`, timeoutMs: snapshotTimeoutMs });
      if (!reply.accepted && reply.error.code !== 'not_found') throw new Error(reply.error.message);
    },
    async requestTestRestore(cmd) {
      const reply = await bus.send('data-mover', 'TestRestore', cmd, { idempotencyKey: cmd.testRestoreId ?? cmd.restorePointId, timeoutMs: 60_000 });
      if (!reply.accepted) throw new Error(`data mover refused the test restore: ${reply.error.message}`);
    },
    async enqueueTransfer(work: TransferWork) {
      await js.publish(workSubject(site, TRANSFER_QUEUE), work, { msgID: `transfer-${work.jobId}-${work.snapshotId}` });
    },
  };
}

export function isTransient(e: unknown): boolean {
  return e instanceof CommandNoRespondersError || e instanceof CommandTimeoutError;
}
