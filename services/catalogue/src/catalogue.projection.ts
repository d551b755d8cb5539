// How each event changes the catalogue's read models, as SQL statements: pure functions of the
// event (no database handle here), so they are easy to read, to test and to replay. The store
// runs the statements of one event, and moves the checkpoint, in a single transaction.
import { isEventType, upcast, type CairnEvent, type EventOf, type EventType, type KnownEvent, type RecordedEvent } from '@cairn/contracts';

export type SqlValue = string | number | bigint | null;
export interface SqlStatement {
  readonly sql: string;
  readonly params: readonly SqlValue[];
}

/** Where and when an event happened, as the read models record it. */
interface At {
  readonly position: number;
  readonly time: string;
  readonly site: string;
}

const sql = (text: string, ...params: SqlValue[]): SqlStatement => ({ sql: text, params });

/** Bytes in IEC units, as the CLI prints them (`36.8 MiB`); the exact count goes beside it. */
function iec(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n; let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

type Handler<K extends EventType> = (event: EventOf<K>, at: At) => SqlStatement[];
type Handlers = { [K in EventType]?: Handler<K> };

type PhaseName = 'schedule' | 'snapshot' | 'transfer' | 'commit' | 'release';

/** A phase begins (or begins again on a retry); a phase already running keeps its start. */
function phaseStarted(jobId: string, phase: PhaseName, time: string, detail: string | null): SqlStatement {
  return sql(
    `INSERT INTO job_phases (job_id, phase, state, started_at, ended_at, detail) VALUES (?, ?, 'running', ?, NULL, ?)
     ON CONFLICT (job_id, phase) DO UPDATE SET
       started_at = CASE WHEN job_phases.state = 'running' THEN job_phases.started_at ELSE excluded.started_at END,
       state = 'running', ended_at = NULL, detail = COALESCE(excluded.detail, job_phases.detail)`,
    jobId, phase, time, detail,
  );
}

/** A phase ends; one never seen starting is recorded as starting and ending at once. */
function phaseEnded(jobId: string, phase: PhaseName, state: 'done' | 'failed', time: string, detail: string | null): SqlStatement {
  return sql(
    `INSERT INTO job_phases (job_id, phase, state, started_at, ended_at, detail) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (job_id, phase) DO UPDATE SET
       state = excluded.state, ended_at = excluded.ended_at, detail = COALESCE(excluded.detail, job_phases.detail)`,
    jobId, phase, state, time, time, detail,
  );
}

/** A job that ends abnormally leaves no phase running. */
function closeRunningPhases(jobId: string, time: string, detail: string): SqlStatement {
  return sql(`UPDATE job_phases SET state = 'failed', ended_at = ?, detail = ? WHERE job_id = ? AND state = 'running'`, time, detail, jobId);
}

function touchJob(jobId: string, time: string, set = '', ...params: SqlValue[]): SqlStatement {
  return sql(`UPDATE jobs SET updated_at = ?${set ? `, ${set}` : ''} WHERE job_id = ?`, time, ...params, jobId);
}

/** The snapshot phase begins: asked with a JobStarted v2, or by a SnapshotRequested (older logs). */
function snapshotRequested(jobId: string, s: { snapshotId: string; disks?: readonly string[] }, time: string): SqlStatement[] {
  return [
    touchJob(jobId, time, 'snapshot_id = ?', s.snapshotId),
    phaseStarted(jobId, 'snapshot', time, s.disks ? `disks ${s.disks.join(', ')}` : 'all disks'),
  ];
}

function upsertDisk(vmId: string, name: string, sizeBytes: number, time: string): SqlStatement {
  return sql(
    `INSERT INTO disks (vm_id, name, size_bytes, attached_at, detached_at) VALUES (?, ?, ?, ?, NULL)
     ON CONFLICT (vm_id, name) DO UPDATE SET
       size_bytes = excluded.size_bytes,
       attached_at = CASE WHEN disks.detached_at IS NULL THEN disks.attached_at ELSE excluded.attached_at END,
       detached_at = NULL`,
    vmId, name, sizeBytes, time,
  );
}

const touchVm = (vmId: string, time: string) => sql(`UPDATE vms SET updated_at = ? WHERE vm_id = ?`, time, vmId);

/** The newest test restore of a restore point that ran (refused ones did not), as the stats count it. */
const NEWEST_TEST_STATUS = `(SELECT t.status FROM test_restores t WHERE t.restore_point_id = restore_points.restore_point_id
  AND t.status <> 'refused' ORDER BY t.position DESC LIMIT 1)`;

/** After a test restore changes: its restore point's newest outcome, looked up again. */
const refreshLastTest = (testRestoreId: string) => sql(
  `UPDATE restore_points SET last_test_status = ${NEWEST_TEST_STATUS}
   WHERE restore_point_id = (SELECT restore_point_id FROM test_restores WHERE test_restore_id = ?)`,
  testRestoreId,
);

const handlers: Handlers = {
  ReplicationPolicyCreated: ({ data }, at) => [sql(
    `INSERT INTO replication_policies (policy_id, site, name, body, created_at, deleted_at, position) VALUES (?, ?, ?, ?, ?, NULL, ?)
     ON CONFLICT (policy_id) DO NOTHING`,
    data.policyId, at.site, data.name, JSON.stringify(data), at.time, at.position,
  )],
  ReplicationPolicyDeleted: ({ data }, at) => [sql(`UPDATE replication_policies SET deleted_at = ? WHERE policy_id = ?`, at.time, data.policyId)],
  ReplicaCommitted: ({ data }, at) => [sql(
    `INSERT INTO replicas (restore_point_id, target_site, source_site, vm_id, vm_name, job_id, policy_id, repository_id, committed_at,
       source_committed_at, disks, chunks_sent, bytes_sent, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (restore_point_id, target_site) DO NOTHING`,
    data.restorePointId, data.targetSite, data.sourceSite, data.vmId, data.vmName, data.jobId, data.policyId, data.repositoryId, at.time,
    data.sourceCommittedAt, JSON.stringify(data.disks), data.chunksSent, data.bytesSent, at.position,
  )],
  // The source let the restore point go and the target removed its replica: it is listed no more.
  ReplicaExpired: ({ data }) => [sql(`DELETE FROM replicas WHERE restore_point_id = ? AND target_site = ?`, data.restorePointId, data.targetSite)],
  VmDiscovered: ({ data }, at) => [
    sql(
      `INSERT INTO vms (vm_id, name, site, hypervisor_kind, hypervisor_host, tags, discovered_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (vm_id) DO UPDATE SET name = excluded.name, site = excluded.site,
         hypervisor_kind = excluded.hypervisor_kind, hypervisor_host = excluded.hypervisor_host,
         tags = excluded.tags, updated_at = excluded.updated_at, removed_at = NULL`,
      data.vmId, data.name, at.site, data.hypervisor.kind, data.hypervisor.host, JSON.stringify(data.tags), at.time, at.time,
    ),
    // A discovery lists every disk the VM has now: the ones not listed have left it.
    sql(
      `UPDATE disks SET detached_at = ? WHERE vm_id = ? AND detached_at IS NULL AND name NOT IN (SELECT value FROM json_each(?))`,
      at.time, data.vmId, JSON.stringify(data.disks.map((d) => d.name)),
    ),
    ...data.disks.map((d) => upsertDisk(data.vmId, d.name, d.sizeBytes, at.time)),
  ],
  VmPowerStateChanged: ({ data }, at) => [sql(`UPDATE vms SET power_state = ?, updated_at = ? WHERE vm_id = ?`, data.state, at.time, data.vmId)],
  // Gone from its hypervisor: still listed (its restore points stay), marked removed.
  VmRemoved: ({ data }, at) => [sql(`UPDATE vms SET removed_at = ?, power_state = NULL, updated_at = ? WHERE vm_id = ?`, at.time, at.time, data.vmId)],
  DiskAttached: ({ data }, at) => [upsertDisk(data.vmId, data.disk.name, data.disk.sizeBytes, at.time), touchVm(data.vmId, at.time)],
  DiskDetached: ({ data }, at) => [
    sql(`UPDATE disks SET detached_at = ? WHERE vm_id = ? AND name = ? AND detached_at IS NULL`, at.time, data.vmId, data.disk),
    touchVm(data.vmId, at.time),
  ],

  JobRequested: ({ data }, at) => [
    sql(
      `INSERT INTO jobs (job_id, vm_id, policy_id, site, mode, trigger, slot, state, attempt, requested_at, updated_at, position)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'requested', 0, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING`,
      data.jobId, data.vmId, data.policyId, at.site, data.mode, data.trigger, data.slot ?? null, at.time, at.time, at.position,
    ),
    phaseStarted(data.jobId, 'schedule', at.time, data.slot ? `${data.trigger}, slot ${data.slot}` : data.trigger),
  ],
  JobStarted: ({ data }, at) => [
    // A late start never reopens a job that has already ended.
    sql(
      `UPDATE jobs SET state = 'running', attempt = ?, started_at = COALESCE(started_at, ?), updated_at = ?
       WHERE job_id = ? AND state IN ('requested', 'running')`,
      data.attempt, at.time, at.time, data.jobId,
    ),
    phaseEnded(data.jobId, 'schedule', 'done', at.time, `attempt ${data.attempt}`),
    // v2 asks for the snapshot with the start (v1: the SnapshotRequested that follows).
    ...(data.snapshot ? snapshotRequested(data.jobId, data.snapshot, at.time) : []),
  ],
  SnapshotRequested: ({ data }, at) => snapshotRequested(data.jobId, data, at.time),
  SnapshotTaken: ({ data }, at) => [
    touchJob(data.jobId, at.time, 'snapshot_id = ?', data.snapshotId),
    phaseEnded(data.jobId, 'snapshot', 'done', at.time, data.nbd.exports.map((x) => `${x.disk}: ${x.mode} (${x.reason})`).join('; ')),
    sql(`UPDATE jobs SET consistency = ?, consistency_reason = ?, vm_config = ? WHERE job_id = ?`,
      data.consistency?.level ?? null, data.consistency?.reason ?? null, data.vmConfig ? JSON.stringify(data.vmConfig) : null, data.jobId),
  ],
  SnapshotFailed: ({ data }, at) => [touchJob(data.jobId, at.time), phaseEnded(data.jobId, 'snapshot', 'failed', at.time, data.reason)],
  SnapshotReleased: ({ data }, at) => [touchJob(data.jobId, at.time), phaseEnded(data.jobId, 'release', 'done', at.time, data.cause)],
  TransferQueued: ({ data }, at) => [touchJob(data.jobId, at.time), phaseStarted(data.jobId, 'transfer', at.time, `queued on ${data.queue}`)],
  TransferStarted: ({ data }, at) => [
    touchJob(data.jobId, at.time, 'worker = ?', data.worker),
    phaseStarted(data.jobId, 'transfer', at.time, `taken by ${data.worker}`),
  ],
  RestorePointCommitted: ({ data }, at) => {
    const sum = (f: (d: (typeof data.disks)[number]) => number) => data.disks.reduce((n, d) => n + f(d), 0);
    const bytesRead = sum((d) => d.bytesRead);
    return [
      sql(
        `INSERT INTO restore_points (restore_point_id, job_id, vm_id, policy_id, site, created_at, position, parent_id,
           size_bytes, bytes_read, bytes_stored, last_test_status)
         VALUES (?, ?, ?, (SELECT policy_id FROM jobs WHERE job_id = ?), ?, ?, ?, ?, ?, ?, ?,
           -- test restores logged before their restore point (never in practice) still count
           (SELECT t.status FROM test_restores t WHERE t.restore_point_id = ? AND t.status <> 'refused' ORDER BY t.position DESC LIMIT 1))
         ON CONFLICT (restore_point_id) DO NOTHING`,
        data.restorePointId, data.jobId, data.vmId, data.jobId, at.site, at.time, at.position, data.parentId,
        sum((d) => d.sizeBytes), bytesRead, sum((d) => d.bytesStored), data.restorePointId,
      ),
      ...data.disks.map((d) => sql(
        `INSERT INTO restore_point_disks (restore_point_id, name, size_bytes, bytes_read, bytes_stored, chunks_new, chunks_reused)
         VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        data.restorePointId, d.name, d.sizeBytes, d.bytesRead, d.bytesStored, d.chunksNew, d.chunksReused,
      )),
      touchJob(data.jobId, at.time, 'restore_point_id = ?', data.restorePointId),
      phaseEnded(data.jobId, 'transfer', 'done', at.time, `${iec(bytesRead)} read (${bytesRead} B)`),
      phaseEnded(data.jobId, 'commit', 'done', at.time, `restore point ${data.restorePointId}`),
    ];
  },
  JobCompleted: ({ data }, at) => [
    sql(
      `UPDATE jobs SET state = 'completed', ended_at = ?, updated_at = ?, restore_point_id = ?, bytes_read = ?,
         bytes_stored = ?, duration_ms = ? WHERE job_id = ?`,
      at.time, at.time, data.restorePointId, data.bytesRead, data.bytesStored, data.durationMs, data.jobId,
    ),
  ],
  JobFailed: ({ data }, at) => [
    sql(
      `UPDATE jobs SET state = 'failed', ended_at = ?, updated_at = ?, failure_phase = ?, failure_reason = ?,
         failure_retryable = ? WHERE job_id = ?`,
      at.time, at.time, data.phase, data.reason, data.retryable ? 1 : 0, data.jobId,
    ),
    phaseEnded(data.jobId, data.phase, 'failed', at.time, data.reason),
    closeRunningPhases(data.jobId, at.time, `job failed in ${data.phase}`),
  ],
  JobCancelled: ({ data }, at) => [
    sql(`UPDATE jobs SET state = 'cancelled', ended_at = ?, updated_at = ?, cancel_reason = ? WHERE job_id = ?`,
      at.time, at.time, data.reason, data.jobId),
    closeRunningPhases(data.jobId, at.time, `cancelled: ${data.reason}`),
  ],

  // A restore job (stream restore-<id>) is a job of kind restore: requested (schedule phase),
  // taken by a mover with its plan (transfer phase: what is written), then completed or failed.
  RestoreRequested: ({ data }, at) => [
    sql(
      `INSERT INTO jobs (job_id, kind, vm_id, policy_id, site, mode, trigger, state, attempt, requested_at, updated_at, position, restore_point_id)
       VALUES (?, 'restore', COALESCE((SELECT vm_id FROM restore_points WHERE restore_point_id = ?),
         (SELECT vm_id FROM replicas WHERE restore_point_id = ? LIMIT 1), ''), NULL, ?, ?, 'manual', 'requested', 0, ?, ?, ?, ?)
       ON CONFLICT (job_id) DO NOTHING`,
      data.restoreId, data.restorePointId, data.restorePointId, at.site, data.target.kind, at.time, at.time, at.position, data.restorePointId,
    ),
    phaseStarted(data.restoreId, 'schedule', at.time, data.target.kind === 'vm'
      ? `restore of ${data.restorePointId} as VM ${data.target.vmName}` : `restore of ${data.restorePointId} disk ${data.target.disk} to ${data.target.path}`),
  ],
  RestoreStarted: ({ data }, at) => [
    sql(
      `UPDATE jobs SET state = 'running', attempt = ?, worker = ?, started_at = COALESCE(started_at, ?), updated_at = ?
       WHERE job_id = ? AND state IN ('requested', 'running')`,
      data.attempt, data.worker, at.time, at.time, data.restoreId,
    ),
    phaseEnded(data.restoreId, 'schedule', 'done', at.time, `attempt ${data.attempt}`),
    phaseStarted(data.restoreId, 'transfer', at.time, `taken by ${data.worker}, reading the ${data.source === 'replica' ? 'replica' : 'restore point'}: ${data.disks.map((d) => d.disk).join(', ')}`),
  ],
  RestoreProgressed: ({ data }, at) => [
    touchJob(data.restoreId, at.time),
    sql(`UPDATE job_phases SET detail = ? WHERE job_id = ? AND phase = 'transfer' AND state = 'running'`,
      `${data.disk}: ${iec(data.bytesDone)} of ${iec(data.bytesTotal)} written`, data.restoreId),
  ],
  RestoreCompleted: ({ data }, at) => {
    const written = data.disks.reduce((n, d) => n + d.sizeBytes, 0);
    return [
      sql(`UPDATE jobs SET state = 'completed', ended_at = ?, updated_at = ?, bytes_read = ?, duration_ms = ? WHERE job_id = ?`,
        at.time, at.time, written, data.durationMs, data.restoreId),
      phaseEnded(data.restoreId, 'transfer', 'done', at.time, data.vm
        ? `VM ${data.vm.name} in ${data.vm.dir}${data.vm.started ? ', started' : ''}` : data.disks.map((d) => `${d.disk} to ${d.path}`).join('; ')),
    ];
  },
  RestoreFailed: ({ data }, at) => [
    sql(
      `UPDATE jobs SET state = 'failed', ended_at = ?, updated_at = ?, failure_reason = ?, failure_retryable = 0,
         failure_phase = CASE WHEN state = 'requested' THEN 'schedule' ELSE 'transfer' END WHERE job_id = ?`,
      at.time, at.time, data.reason, data.restoreId,
    ),
    closeRunningPhases(data.restoreId, at.time, `restore failed (${data.code}): ${data.reason}`),
  ],

  // Test restores (stream testrestore-<id>) and what they say of their restore point.
  TestRestoreStarted: ({ data }, at) => [sql(
    `INSERT INTO test_restores (test_restore_id, restore_point_id, vm_id, site, policy_id, status, checks, results, started_at, position)
     VALUES (?, ?, ?, ?, ?, 'running', ?, '[]', ?, ?) ON CONFLICT (test_restore_id) DO NOTHING`,
    data.testRestoreId, data.restorePointId, data.vmId, at.site, data.policyId ?? null, JSON.stringify(data.checks), at.time, at.position,
  ), refreshLastTest(data.testRestoreId)],
  TestRestorePassed: ({ data }, at) => [sql(
    `UPDATE test_restores SET status = 'passed', results = ?, ended_at = ?, duration_ms = ?, screenshot = ? WHERE test_restore_id = ?`,
    JSON.stringify(data.results), at.time, data.durationMs, data.screenshot ? JSON.stringify(data.screenshot) : null, data.testRestoreId,
  ), refreshLastTest(data.testRestoreId)],
  TestRestoreFailed: ({ data }, at) => [sql(
    `UPDATE test_restores SET status = 'failed', results = ?, failed_check = ?, reason = ?, ended_at = ?, duration_ms = ?, screenshot = ? WHERE test_restore_id = ?`,
    JSON.stringify(data.results), data.check, data.reason, at.time, data.durationMs, data.screenshot ? JSON.stringify(data.screenshot) : null, data.testRestoreId,
  ), refreshLastTest(data.testRestoreId)],
  // A scheduled one the data mover would not start: nothing ran; kept with why, started and ended at once.
  TestRestoreRefused: ({ data }, at) => [sql(
    `INSERT INTO test_restores (test_restore_id, restore_point_id, vm_id, site, policy_id, status, checks, results, reason, started_at, ended_at, position)
     VALUES (?, ?, ?, ?, ?, 'refused', '[]', '[]', ?, ?, ?, ?) ON CONFLICT (test_restore_id) DO NOTHING`,
    data.testRestoreId, data.restorePointId, data.vmId, at.site, data.policyId, data.reason, at.time, at.time, at.position,
  ), refreshLastTest(data.testRestoreId)],
  RestorePointDamaged: ({ data }, at) => [sql(
    `UPDATE restore_points SET damaged_at = ?, damage_verify_id = ?, damaged_count = ? WHERE restore_point_id = ?`,
    at.time, data.verifyId, data.damagedCount, data.restorePointId,
  )],
  // A later verify that checked a restore point and found nothing it uses damaged clears its mark (healed).
  VerifyCompleted: ({ data }) => [sql(
    `UPDATE restore_points SET damaged_at = NULL, damage_verify_id = NULL, damaged_count = NULL
     WHERE damaged_at IS NOT NULL AND damage_verify_id <> ? AND restore_point_id IN (SELECT value FROM json_each(?))
       AND restore_point_id NOT IN (SELECT value FROM json_each(?))`,
    data.verifyId, JSON.stringify(data.restorePoints), JSON.stringify(data.affectedRestorePoints),
  )],

  PolicyCreated: ({ data }, at) => [
    // Created again after a delete: the same id comes back as a new version.
    sql(
      `INSERT INTO policies (policy_id, name, site, body, version, created_at, updated_at, deleted_at) VALUES (?, ?, ?, ?, 1, ?, ?, NULL)
       ON CONFLICT (policy_id) DO UPDATE SET name = excluded.name, body = excluded.body, version = policies.version + 1,
         updated_at = excluded.updated_at, deleted_at = NULL, paused_at = NULL`,
      data.policyId, data.name, at.site, JSON.stringify(data), at.time, at.time,
    ),
  ],
  PolicyUpdated: ({ data }, at) => [
    sql(`UPDATE policies SET name = ?, body = ?, version = version + 1, updated_at = ? WHERE policy_id = ?`,
      data.name, JSON.stringify(data), at.time, data.policyId),
  ],
  PolicyDeleted: ({ data }, at) => [
    sql(`UPDATE policies SET deleted_at = ?, updated_at = ? WHERE policy_id = ? AND deleted_at IS NULL`, at.time, at.time, data.policyId),
  ],
  PolicyPaused: ({ data }, at) => [
    sql(`UPDATE policies SET paused_at = ?, updated_at = ? WHERE policy_id = ? AND paused_at IS NULL`, at.time, at.time, data.policyId),
  ],
  PolicyResumed: ({ data }, at) => [
    sql(`UPDATE policies SET paused_at = NULL, updated_at = ? WHERE policy_id = ?`, at.time, data.policyId),
  ],
  // The lock that holds is the longest one recorded (the decider records only longer ones); who
  // made it says why: the data mover's own actor for a policy's immutability, a user for an act.
  RestorePointLocked: (e, at) => [sql(
    `UPDATE restore_points SET locked_until = ?, locked_at = ?, lock_actor_kind = ?, lock_actor_id = ?, lock_causation_id = ?
     WHERE restore_point_id = ? AND (locked_until IS NULL OR locked_until < ?)`,
    e.data.retainUntil, at.time, e.actor.kind, e.actor.id, e.causationId ?? null, e.data.restorePointId, e.data.retainUntil,
  )],
  RestorePointExpired: ({ data }, at) => [
    sql(`UPDATE restore_points SET expired_at = ?, expiry_reason = ? WHERE restore_point_id = ? AND expired_at IS NULL`,
      at.time, data.reason, data.restorePointId),
  ],
  // Deleted after a four-eyes approval: gone like an expired one, with who asked and who approved.
  RestorePointDeleted: ({ data }, at) => [
    sql(`UPDATE restore_points SET expired_at = ?, expiry_reason = ? WHERE restore_point_id = ? AND expired_at IS NULL`,
      at.time, `deleted: requested by ${data.requestedBy}, approved by ${data.approvedBy} (approval ${data.approvalId})`, data.restorePointId),
  ],
};

/** Every event, known or not, joins the audit timeline as it was written. */
export function auditStatement(recorded: RecordedEvent): SqlStatement {
  const e = recorded.event;
  return sql(
    `INSERT INTO audit (position, event_id, time, type, schema_version, site, actor_kind, actor_id, stream_id,
       correlation_id, causation_id, trace, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    Number(recorded.position), e.id, e.time, e.type, e.schemaVersion, e.site, e.actor.kind, e.actor.id, e.streamId,
    e.correlationId, e.causationId, e.trace ? JSON.stringify(e.trace) : null, JSON.stringify(e.data ?? null),
  );
}

/** A log entry that could not be read as an event (what the log's `onInvalid` hands over). */
export interface UnreadableRecord {
  readonly position: bigint;
  readonly location: string;
  readonly error: { readonly message: string };
  readonly payload: Uint8Array;
}

/**
 * The audit row of an unreadable entry: whatever envelope fields it has, its error and the
 * start of its bytes. Deterministic (no clock), so every replica and every rebuild agree.
 */
export function unreadableAuditStatement(record: UnreadableRecord): SqlStatement {
  let raw: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(Buffer.from(record.payload).toString('utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) raw = parsed as Record<string, unknown>;
  } catch { /* not JSON: described by its error alone */ }
  const text = (v: unknown, fallback: string) => (typeof v === 'string' && v.length > 0 ? v : fallback);
  const actor = (raw.actor ?? {}) as Record<string, unknown>;
  return sql(
    `INSERT INTO audit (position, event_id, time, type, schema_version, site, actor_kind, actor_id, stream_id,
       correlation_id, causation_id, trace, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)`,
    Number(record.position), text(raw.id, `unreadable-${record.position}`), text(raw.time, '1970-01-01T00:00:00.000Z'),
    text(raw.type, 'Unreadable'), typeof raw.schemaVersion === 'number' ? raw.schemaVersion : 0, text(raw.site, ''),
    actor.kind === 'user' ? 'user' : 'service', text(actor.id, 'unknown'), text(raw.streamId, record.location),
    text(raw.correlationId, text(raw.streamId, record.location)), typeof raw.causationId === 'string' ? raw.causationId : null,
    JSON.stringify({ unreadable: record.error.message, location: record.location, payloadBase64: Buffer.from(record.payload.subarray(0, 1024)).toString('base64') }),
  );
}

/** The event at its current version, or null when this build cannot read it (newer type or version). */
export function readable(event: CairnEvent): KnownEvent | null {
  if (!isEventType(event.type)) return null;
  try {
    return upcast(event);
  } catch {
    return null;
  }
}

/** All statements one recorded event turns into (audit first, then its read-model changes). */
export function projectEvent(recorded: RecordedEvent): SqlStatement[] {
  const out = [auditStatement(recorded)];
  const known = readable(recorded.event);
  if (!known) return out;
  const handler = handlers[known.type] as Handler<typeof known.type> | undefined;
  if (handler) {
    out.push(...handler(known as never, { position: Number(recorded.position), time: known.time, site: known.site }));
  }
  return out;
}

/** Event types that change a read model beyond the audit timeline. */
export const PROJECTED_TYPES = Object.keys(handlers) as EventType[];
