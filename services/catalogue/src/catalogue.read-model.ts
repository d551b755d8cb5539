// Reads the catalogue's tables into the view shapes of @cairn/catalogue-client. Only reads:
// every write comes from the projection. Ordering is by log position, newest first, so two
// replicas at the same position answer identically.
import {
  DEFAULT_LIMIT, DEFAULT_LONG_LIMIT, CursorError, decodeCursor, encodeCursor, type PageOf,
  type AuditEntry, type CatalogueStats, type DiskView, type JobDetail, type JobPhaseView, type JobView, type PolicyView, type QueryRequest,
  type ReplicaView, type ReplicationPolicyView, type RestorePointDiskView, type LastTestRestore, type RestorePointView, type TestRestoreView, type VmView,
} from '@cairn/catalogue-client';
import type { CatalogueReader, CatalogueStore, Row } from './catalogue-store.port.ts';

const JOB_STATES = ['requested', 'running', 'completed', 'failed', 'cancelled'] as const;
const PHASES = ['schedule', 'snapshot', 'transfer', 'commit', 'release'] as const;

type SQLOutputValue = unknown;

export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
}

/** A cursor this list did not hand out (answered as a bad request). */
export { CursorError };

/**
 * One page of a list ordered by `order` (all ascending or all descending, the last column
 * unique): keyset paging, so a page costs the same wherever it starts and a walk through every
 * page meets each row once.
 */
interface PageQuery {
  /** SELECT … FROM …, without WHERE or ORDER BY. */
  readonly from: string;
  readonly where: string[];
  readonly params: (string | number)[];
  /** Columns of the order (qualified as in `from`) and the row fields that hold them. */
  readonly order: ReadonlyArray<{ readonly column: string; readonly field: string; readonly type: 'string' | 'number' }>;
  readonly direction: 'ASC' | 'DESC';
  readonly after: string | undefined;
  readonly limit: number;
}

const str = (v: SQLOutputValue | undefined): string => String(v ?? '');
const strOrNull = (v: SQLOutputValue | undefined): string | null => (v === null || v === undefined ? null : String(v));
const num = (v: SQLOutputValue | undefined): number => Number(v ?? 0);
const numOrNull = (v: SQLOutputValue | undefined): number | null => (v === null || v === undefined ? null : Number(v));
/** The newest test restore of a point that ran: a refused one did not, and says nothing of it. */
function lastTestRestore(t: Row | undefined): RestorePointView['lastTestRestore'] {
  if (!t) return null;
  return {
    testRestoreId: str(t.test_restore_id), status: str(t.status) as LastTestRestore['status'], at: str(t.ended_at ?? t.started_at),
    durationMs: t.duration_ms === null ? null : num(t.duration_ms), checks: json(t.checks) as string[], failedCheck: strOrNull(t.failed_check),
  };
}

/** `?, ?, …`, one per value (a page holds at most 1,000). */
const marks = (values: readonly unknown[]): string => values.map(() => '?').join(', ');

/** Rows by the value of one column, in their order. */
function groupBy(rows: Row[], column: string): Map<string, Row[]> {
  const out = new Map<string, Row[]>();
  for (const r of rows) {
    const key = str(r[column]);
    const list = out.get(key);
    if (list) list.push(r); else out.set(key, [r]);
  }
  return out;
}

/** One query after another: a PostgreSQL connection runs one statement at a time. */
async function inTurn<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await fn(item));
  return out;
}
const json = (v: SQLOutputValue | undefined): unknown => (v === null || v === undefined ? null : JSON.parse(String(v)));

/** The queries, inside one snapshot of the read models. */
class Reads {
  constructor(private readonly reader: CatalogueReader) {}

  private all(text: string, ...params: (string | number | null)[]): Promise<Row[]> {
    return this.reader.all(text, ...params);
  }

  private async page(q: PageQuery): Promise<{ rows: Row[]; next: string | null }> {
    const where = [...q.where];
    const params = [...q.params];
    if (q.after !== undefined) {
      const key = decodeCursor(q.after, q.order.map((o) => o.type));
      // Row values compare column by column, as the ORDER BY sorts.
      where.push(`(${q.order.map((o) => o.column).join(', ')}) ${q.direction === 'ASC' ? '>' : '<'} (${q.order.map(() => '?').join(', ')})`);
      params.push(...key);
    }
    const rows = (await this.all(
      `${q.from} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${q.order.map((o) => `${o.column} ${q.direction}`).join(', ')} LIMIT ?`,
      ...params, q.limit + 1,
    ));
    const more = rows.length > q.limit;
    const page = more ? rows.slice(0, q.limit) : rows;
    const last = page.at(-1);
    return {
      rows: page,
      next: more && last ? encodeCursor(q.order.map((o) => (o.type === 'number' ? num(last[o.field]) : str(last[o.field])))) : null,
    };
  }

  private one(text: string, ...params: (string | number | null)[]): Promise<Row | undefined> {
    return this.reader.one(text, ...params);
  }

  async listReplicas(q: QueryRequest<'replica.list'>): Promise<ReplicaView[]> {
    return (await this.replicaPage(q)).items;
  }

  async replicaPage(q: QueryRequest<'replica.list'>): Promise<PageOf<ReplicaView>> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.restorePointId) { where.push('restore_point_id = ?'); params.push(q.restorePointId); }
    if (q.vmId) { where.push('vm_id = ?'); params.push(q.vmId); }
    if (q.sourceSite) { where.push('source_site = ?'); params.push(q.sourceSite); }
    if (q.site) { where.push('target_site = ?'); params.push(q.site); }
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM replicas', where, params, direction: 'DESC', after: q.after, limit: q.limit ?? DEFAULT_LIMIT,
      order: [
        { column: 'position', field: 'position', type: 'number' }, { column: 'restore_point_id', field: 'restore_point_id', type: 'string' },
        { column: 'target_site', field: 'target_site', type: 'string' },
      ],
    }));
    return { next, items: rows.map((r) => ({
      restorePointId: str(r.restore_point_id), vmId: str(r.vm_id), vmName: str(r.vm_name), jobId: strOrNull(r.job_id), policyId: strOrNull(r.policy_id),
      sourceSite: str(r.source_site), site: str(r.target_site), repositoryId: str(r.repository_id), committedAt: str(r.committed_at),
      sourceCommittedAt: str(r.source_committed_at), disks: json(r.disks) as ReplicaView['disks'], chunksSent: num(r.chunks_sent), bytesSent: num(r.bytes_sent),
    })) };
  }

  /**
   * Exact aggregates over every backup job and restore point, as of one log position: the
   * running totals the projection's triggers keep (catalogue.totals.ts), read in one snapshot
   * with the checkpoint, plus the running jobs by phase (a query over running jobs only).
   */
  async stats(): Promise<CatalogueStats> {
    const checkpoint = await this.one(`SELECT position FROM checkpoint WHERE name = 'catalogue'`);
    const t = (await this.one(`SELECT * FROM catalogue_totals WHERE id = 1`)) ?? {};
    const liveRps = num(t.rp_live);
    return {
      position: num(checkpoint?.position),
      jobsByState: Object.fromEntries(JOB_STATES.map((s) => [s, num(t[`jobs_${s}`])])),
      runningByPhase: await this.runningByPhase(),
      restorePoints: { total: num(t.rp_total), live: liveRps, expired: num(t.rp_total) - liveRps },
      bytesRead: num(t.bytes_read),
      bytesStored: num(t.bytes_stored),
      liveBytesRead: num(t.live_bytes_read),
      liveBytesStored: num(t.live_bytes_stored),
      completed: { jobs: num(t.jobs_completed), bytesRead: num(t.completed_bytes_read), durationMs: num(t.completed_duration_ms) },
      vms: num(t.vms),
      testRestores: { running: num(t.tr_running), passed: num(t.tr_passed), failed: num(t.tr_failed), refused: num(t.tr_refused) },
      restorePointsBootTested: { passed: num(t.rp_tested_passed), failed: num(t.rp_tested_failed), damaged: num(t.rp_damaged) },
    };
  }

  /**
   * The same aggregates summed over every row (what `stats` answered before the running totals:
   * it reads the whole catalogue, ~1 s at 1,000,000 restore points). Tests check the totals
   * against it.
   */
  async recountStats(): Promise<CatalogueStats> {
    const checkpoint = await this.one(`SELECT position FROM checkpoint WHERE name = 'catalogue'`);
    const jobsByState: Record<string, number> = Object.fromEntries(JOB_STATES.map((s) => [s, 0]));
    for (const r of (await this.all(`SELECT state, COUNT(*) AS n FROM jobs WHERE kind = 'backup' GROUP BY state`))) jobsByState[str(r.state)] = num(r.n);
    const rp = (await this.one(
      `SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE expired_at IS NULL) AS live,
         COALESCE(SUM(bytes_read), 0) AS read, COALESCE(SUM(bytes_stored), 0) AS stored,
         COALESCE(SUM(bytes_read) FILTER (WHERE expired_at IS NULL), 0) AS live_read,
         COALESCE(SUM(bytes_stored) FILTER (WHERE expired_at IS NULL), 0) AS live_stored
       FROM restore_points`,
    ))!;
    const done = (await this.one(
      `SELECT COUNT(*) AS jobs, COALESCE(SUM(bytes_read), 0) AS read, COALESCE(SUM(duration_ms), 0) AS duration
       FROM jobs WHERE kind = 'backup' AND state = 'completed'`,
    ))!;
    return {
      position: num(checkpoint?.position),
      jobsByState,
      runningByPhase: await this.runningByPhase(),
      restorePoints: { total: num(rp.total), live: num(rp.live), expired: num(rp.total) - num(rp.live) },
      bytesRead: num(rp.read),
      bytesStored: num(rp.stored),
      liveBytesRead: num(rp.live_read),
      liveBytesStored: num(rp.live_stored),
      completed: { jobs: num(done.jobs), bytesRead: num(done.read), durationMs: num(done.duration) },
      vms: num((await this.one(`SELECT COUNT(*) AS n FROM vms`))!.n),
      testRestores: Object.fromEntries(await inTurn(['running', 'passed', 'failed', 'refused'], async (st) => [st, num((await this.one(`SELECT COUNT(*) AS n FROM test_restores WHERE status = ?`, st))!.n)])),
      restorePointsBootTested: (await this.bootTested()),
    };
  }

  /** Running backup jobs by their latest running phase (as job.get orders them). */
  private async runningByPhase(): Promise<Record<string, number>> {
    const runningByPhase: Record<string, number> = Object.fromEntries(PHASES.map((p) => [p, 0]));
    for (const r of (await this.all(
      `SELECT phase, COUNT(*) AS n FROM (
         SELECT p.phase, ROW_NUMBER() OVER (PARTITION BY p.job_id ORDER BY p.started_at DESC, CASE p.phase
           WHEN 'schedule' THEN 0 WHEN 'snapshot' THEN 1 WHEN 'transfer' THEN 2 WHEN 'commit' THEN 3 ELSE 4 END DESC) AS rn
         FROM job_phases p JOIN jobs j ON j.job_id = p.job_id
         WHERE j.state = 'running' AND j.kind = 'backup' AND p.state = 'running'
       ) latest WHERE rn = 1 GROUP BY phase`,
    ))) runningByPhase[str(r.phase)] = num(r.n);
    return runningByPhase;
  }

  /** Live restore points by the outcome of their newest test restore, and those marked damaged (summed over every row). */
  private async bootTested(): Promise<NonNullable<CatalogueStats['restorePointsBootTested']>> {
    const r = (await this.one(
      `SELECT COUNT(*) FILTER (WHERE last = 'passed') AS passed, COUNT(*) FILTER (WHERE last = 'failed') AS failed,
         COUNT(*) FILTER (WHERE damaged_at IS NOT NULL) AS damaged
       FROM (SELECT p.damaged_at, (SELECT t.status FROM test_restores t WHERE t.restore_point_id = p.restore_point_id AND t.status <> 'refused' ORDER BY t.position DESC LIMIT 1) AS last
             FROM restore_points p WHERE p.expired_at IS NULL) live`,
    ))!;
    return { passed: num(r.passed), failed: num(r.failed), damaged: num(r.damaged) };
  }

  async listReplicationPolicies(q: QueryRequest<'replicationPolicy.list'>): Promise<ReplicationPolicyView[]> {
    return (await this.replicationPolicyPage(q)).items;
  }

  async replicationPolicyPage(q: QueryRequest<'replicationPolicy.list'>): Promise<PageOf<ReplicationPolicyView>> {
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM replication_policies', where: q.includeDeleted ? [] : ['deleted_at IS NULL'], params: [],
      direction: 'DESC', after: q.after, limit: q.limit ?? DEFAULT_LONG_LIMIT,
      order: [{ column: 'position', field: 'position', type: 'number' }, { column: 'policy_id', field: 'policy_id', type: 'string' }],
    }));
    return { next, items: rows.map((r) => {
      const body = json(r.body) as {
        targetSites: string[]; vmIds?: string[]; trigger: unknown; delayMs: number; bandwidthBytesPerSec?: number;
      };
      return {
        policyId: str(r.policy_id), name: str(r.name), site: str(r.site), targetSites: body.targetSites, vmIds: body.vmIds ?? null,
        trigger: body.trigger, delayMs: body.delayMs, bandwidthBytesPerSec: body.bandwidthBytesPerSec ?? null,
        createdAt: str(r.created_at), deletedAt: strOrNull(r.deleted_at),
      };
    }) };
  }

  async listVms(q: QueryRequest<'vm.list'> = {}): Promise<VmView[]> {
    return (await this.vmPage(q)).items;
  }

  async vmPage(q: QueryRequest<'vm.list'>): Promise<PageOf<VmView>> {
    const { rows, next } = (await this.page({
      from: VM_SELECT, where: [], params: [], direction: 'ASC', after: q.after, limit: q.limit ?? DEFAULT_LONG_LIMIT,
      order: [{ column: 'v.name', field: 'name', type: 'string' }, { column: 'v.vm_id', field: 'vm_id', type: 'string' }],
    }));
    return { next, items: await this.vms(rows) };
  }

  async getVm(vmId: string): Promise<VmView> {
    const row = (await this.one(`${VM_SELECT} WHERE v.vm_id = ?`, vmId));
    if (!row) throw new NotFoundError(`no VM ${vmId} in the catalogue`);
    return (await this.vms([row]))[0]!;
  }

  /** The VMs of a page, their disks read in one statement (not one per VM). */
  private async vms(rows: Row[]): Promise<VmView[]> {
    if (!rows.length) return [];
    const ids = rows.map((r) => str(r.vm_id));
    const disks = groupBy(await this.all(`SELECT * FROM disks WHERE vm_id IN (${marks(ids)}) ORDER BY vm_id, name`, ...ids), 'vm_id');
    return rows.map((r) => this.vm(r, disks.get(str(r.vm_id)) ?? []));
  }

  private vm(r: Row, diskRows: Row[]): VmView {
    const disks: DiskView[] = diskRows.map((d) => ({
      name: str(d.name), sizeBytes: num(d.size_bytes), attachedAt: str(d.attached_at), detachedAt: strOrNull(d.detached_at),
    }));
    return {
      vmId: str(r.vm_id),
      name: str(r.name),
      site: str(r.site),
      hypervisor: { kind: str(r.hypervisor_kind), host: str(r.hypervisor_host) },
      tags: json(r.tags) as string[],
      disks,
      discoveredAt: str(r.discovered_at),
      updatedAt: str(r.updated_at),
      powerState: strOrNull(r.power_state),
      removedAt: strOrNull(r.removed_at),
      lastBackupAt: strOrNull(r.last_backup_at),
      restorePoints: num(r.restore_points),
    };
  }

  async listRestorePoints(q: QueryRequest<'restorePoint.list'>): Promise<RestorePointView[]> {
    return (await this.restorePointPage(q)).items;
  }

  async restorePointPage(q: QueryRequest<'restorePoint.list'>): Promise<PageOf<RestorePointView>> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.vmId) { where.push('vm_id = ?'); params.push(q.vmId); }
    if (!q.includeExpired) where.push('expired_at IS NULL');
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM restore_points', where, params, direction: 'DESC', after: q.after, limit: q.limit ?? DEFAULT_LIMIT,
      order: [{ column: 'position', field: 'position', type: 'number' }, { column: 'restore_point_id', field: 'restore_point_id', type: 'string' }],
    }));
    return { next, items: await this.restorePoints(rows) };
  }

  async getRestorePoint(restorePointId: string): Promise<RestorePointView> {
    const row = (await this.one(`SELECT * FROM restore_points WHERE restore_point_id = ?`, restorePointId));
    if (!row) throw new NotFoundError(`no restore point ${restorePointId} in the catalogue`);
    return (await this.restorePoints([row]))[0]!;
  }

  /**
   * The restore points of a page with their disks, their jobs' consistency and their newest test
   * restore: three statements for the page, not three per restore point.
   */
  private async restorePoints(rows: Row[]): Promise<RestorePointView[]> {
    if (!rows.length) return [];
    const ids = rows.map((r) => str(r.restore_point_id));
    const jobIds = [...new Set(rows.map((r) => str(r.job_id)))];
    const disks = groupBy(await this.all(
      `SELECT * FROM restore_point_disks WHERE restore_point_id IN (${marks(ids)}) ORDER BY restore_point_id, name`, ...ids,
    ), 'restore_point_id');
    const jobs = new Map((await this.all(
      `SELECT job_id, consistency, consistency_reason, vm_config FROM jobs WHERE job_id IN (${marks(jobIds)})`, ...jobIds,
    )).map((j) => [str(j.job_id), j]));
    const tests = new Map((await this.all(
      `SELECT * FROM test_restores t WHERE t.restore_point_id IN (${marks(ids)})
         AND t.position = (SELECT MAX(u.position) FROM test_restores u WHERE u.restore_point_id = t.restore_point_id AND u.status <> 'refused')`, ...ids,
    )).map((t) => [str(t.restore_point_id), t]));
    return rows.map((r) => this.restorePoint(r, disks.get(str(r.restore_point_id)) ?? [], jobs.get(str(r.job_id)), tests.get(str(r.restore_point_id))));
  }

  private restorePoint(r: Row, diskRows: Row[], job: Row | undefined, test: Row | undefined): RestorePointView {
    const disks: RestorePointDiskView[] = diskRows.map((d) => ({
      name: str(d.name), sizeBytes: num(d.size_bytes), bytesRead: num(d.bytes_read), bytesStored: num(d.bytes_stored),
      chunksNew: num(d.chunks_new), chunksReused: num(d.chunks_reused),
    }));
    const bytesRead = num(r.bytes_read);
    const bytesStored = num(r.bytes_stored);
    const parentId = strOrNull(r.parent_id);
    const vmConfig = job?.vm_config ? JSON.parse(str(job.vm_config)) as Record<string, unknown> : null;
    return {
      restorePointId: str(r.restore_point_id),
      jobId: str(r.job_id),
      vmId: str(r.vm_id),
      policyId: strOrNull(r.policy_id),
      site: str(r.site),
      createdAt: str(r.created_at),
      parentId,
      kind: parentId ? 'incremental' : 'full',
      sizeBytes: num(r.size_bytes),
      bytesRead,
      bytesStored,
      changedBytes: bytesRead,
      savedBytes: Math.max(0, bytesRead - bytesStored),
      disks,
      expiredAt: strOrNull(r.expired_at),
      expiryReason: strOrNull(r.expiry_reason),
      // Only where the snapshot recorded them (restore points taken before they were kept have none).
      ...(job?.consistency ? { consistency: str(job.consistency) as 'application' | 'crash', consistencyReason: strOrNull(job.consistency_reason) } : {}),
      ...(vmConfig ? { vmConfig } : {}),
      lastTestRestore: lastTestRestore(test),
      lock: r.locked_until ? {
        until: str(r.locked_until), at: str(r.locked_at),
        source: r.lock_actor_kind === 'user' ? 'act' : 'policy',
        policyId: r.lock_actor_kind === 'user' ? null : strOrNull(r.policy_id),
        actor: { kind: str(r.lock_actor_kind) === 'user' ? 'user' : 'service', id: str(r.lock_actor_id) },
        causationId: strOrNull(r.lock_causation_id),
      } : null,
      damage: r.damaged_at ? { at: str(r.damaged_at), verifyId: str(r.damage_verify_id), damagedCount: num(r.damaged_count) } : null,
    };
  }

  async testRestorePage(q: QueryRequest<'testRestore.list'>): Promise<PageOf<TestRestoreView>> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.vmId) { where.push('vm_id = ?'); params.push(q.vmId); }
    if (q.restorePointId) { where.push('restore_point_id = ?'); params.push(q.restorePointId); }
    if (q.status) { where.push('status = ?'); params.push(q.status); }
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM test_restores', where, params, direction: 'DESC', after: q.after, limit: q.limit ?? DEFAULT_LIMIT,
      order: [{ column: 'position', field: 'position', type: 'number' }, { column: 'test_restore_id', field: 'test_restore_id', type: 'string' }],
    }));
    return { next, items: rows.map((t) => ({
      testRestoreId: str(t.test_restore_id), restorePointId: str(t.restore_point_id), vmId: str(t.vm_id), site: str(t.site),
      status: str(t.status) as TestRestoreView['status'], checks: json(t.checks) as string[], results: json(t.results) as TestRestoreView['results'],
      failedCheck: strOrNull(t.failed_check), reason: strOrNull(t.reason), startedAt: str(t.started_at), endedAt: strOrNull(t.ended_at),
      durationMs: t.duration_ms === null ? null : num(t.duration_ms), screenshot: t.screenshot ? json(t.screenshot) as TestRestoreView['screenshot'] : null,
      policyId: strOrNull(t.policy_id),
    })) };
  }

  async listJobs(q: QueryRequest<'job.list'>): Promise<JobView[]> {
    return (await this.jobPage(q)).items;
  }

  async jobPage(q: QueryRequest<'job.list'>): Promise<PageOf<JobView>> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.state) { where.push('state = ?'); params.push(q.state); }
    if (q.vmId) { where.push('vm_id = ?'); params.push(q.vmId); }
    if (q.kind) { where.push('kind = ?'); params.push(q.kind); }
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM jobs', where, params, direction: 'DESC', after: q.after, limit: q.limit ?? DEFAULT_LIMIT,
      order: [{ column: 'position', field: 'position', type: 'number' }, { column: 'job_id', field: 'job_id', type: 'string' }],
    }));
    return { next, items: rows.map(job) };
  }

  async getJob(jobId: string): Promise<JobDetail> {
    const row = (await this.one(`SELECT * FROM jobs WHERE job_id = ?`, jobId));
    if (!row) throw new NotFoundError(`no job ${jobId} in the catalogue`);
    const phases: JobPhaseView[] = (await this.all(
      `SELECT * FROM job_phases WHERE job_id = ? ORDER BY started_at, CASE phase
         WHEN 'schedule' THEN 0 WHEN 'snapshot' THEN 1 WHEN 'transfer' THEN 2 WHEN 'commit' THEN 3 ELSE 4 END`, jobId,
    )).map((p) => ({
      phase: str(p.phase) as JobPhaseView['phase'],
      state: str(p.state) as JobPhaseView['state'],
      startedAt: str(p.started_at),
      endedAt: strOrNull(p.ended_at),
      detail: strOrNull(p.detail),
    }));
    // Everything correlated with the job, plus whatever was appended to its own stream.
    const stream = str(row.kind) === 'restore' ? `restore-${jobId}` : `job-${jobId}`;
    const events = (await this.all(
      `SELECT * FROM audit WHERE correlation_id = ? OR stream_id = ? ORDER BY position LIMIT 10000`, jobId, stream,
    )).map(auditEntry);
    return { ...job(row), phases, events };
  }

  async listPolicies(q: QueryRequest<'policy.list'>): Promise<PolicyView[]> {
    return (await this.policyPage(q)).items;
  }

  async policyPage(q: QueryRequest<'policy.list'>): Promise<PageOf<PolicyView>> {
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM policies', where: q.includeDeleted ? [] : ['deleted_at IS NULL'], params: [],
      direction: 'ASC', after: q.after, limit: q.limit ?? DEFAULT_LONG_LIMIT,
      order: [{ column: 'name', field: 'name', type: 'string' }, { column: 'policy_id', field: 'policy_id', type: 'string' }],
    }));
    return { next, items: rows.map(policy) };
  }

  async getPolicy(policyId: string): Promise<PolicyView> {
    const row = (await this.one(`SELECT * FROM policies WHERE policy_id = ?`, policyId));
    if (!row) throw new NotFoundError(`no policy ${policyId} in the catalogue`);
    return policy(row);
  }

  async auditTimeline(q: QueryRequest<'audit.timeline'>): Promise<AuditEntry[]> {
    return (await this.auditPage(q)).items;
  }

  async auditPage(q: QueryRequest<'audit.timeline'>): Promise<PageOf<AuditEntry>> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.correlationId) { where.push('correlation_id = ?'); params.push(q.correlationId); }
    if (q.actor) { where.push('actor_id = ?'); params.push(q.actor); }
    if (q.type) { where.push('type = ?'); params.push(q.type); }
    if (q.streamId) { where.push('stream_id = ?'); params.push(q.streamId); }
    // Times compare as instants, whatever offset a writer used.
    if (q.from) { where.push('unixepoch(time, \'subsec\') >= unixepoch(?, \'subsec\')'); params.push(q.from); }
    if (q.to) { where.push('unixepoch(time, \'subsec\') <= unixepoch(?, \'subsec\')'); params.push(q.to); }
    if (q.afterPosition !== undefined) { where.push('position > ?'); params.push(q.afterPosition); }
    const { rows, next } = (await this.page({
      from: 'SELECT * FROM audit', where, params, direction: 'ASC', after: q.after, limit: q.limit ?? DEFAULT_LIMIT,
      order: [{ column: 'position', field: 'position', type: 'number' }],
    }));
    return { next, items: rows.map(auditEntry) };
  }
}

type Queries = Omit<Reads, 'reader'>;

/**
 * The read models as the query handlers see them: every call reads one consistent snapshot of
 * whichever store is live (`current` changes when a rebuild swaps it).
 */
export class CatalogueReadModel implements Queries {
  constructor(private readonly current: () => CatalogueStore) {}

  private async run<T>(fn: (r: Reads) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const store = this.current();
      try {
        return await store.read((reader) => fn(new Reads(reader)));
      } catch (e) {
        // A rebuild closed this store while swapping in the new one: read that one instead.
        if (store.isOpen || attempt >= 100) throw e;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }

  listReplicas(q: QueryRequest<'replica.list'>) { return this.run((r) => r.listReplicas(q)); }
  replicaPage(q: QueryRequest<'replica.list'>) { return this.run((r) => r.replicaPage(q)); }
  stats() { return this.run((r) => r.stats()); }
  /** `stats` summed over every row (slow at scale; tests compare the running totals with it). */
  recountStats() { return this.run((r) => r.recountStats()); }
  listReplicationPolicies(q: QueryRequest<'replicationPolicy.list'>) { return this.run((r) => r.listReplicationPolicies(q)); }
  replicationPolicyPage(q: QueryRequest<'replicationPolicy.list'>) { return this.run((r) => r.replicationPolicyPage(q)); }
  listVms(q: QueryRequest<'vm.list'> = {}) { return this.run((r) => r.listVms(q)); }
  vmPage(q: QueryRequest<'vm.list'>) { return this.run((r) => r.vmPage(q)); }
  getVm(vmId: string) { return this.run((r) => r.getVm(vmId)); }
  listRestorePoints(q: QueryRequest<'restorePoint.list'>) { return this.run((r) => r.listRestorePoints(q)); }
  restorePointPage(q: QueryRequest<'restorePoint.list'>) { return this.run((r) => r.restorePointPage(q)); }
  getRestorePoint(restorePointId: string) { return this.run((r) => r.getRestorePoint(restorePointId)); }
  testRestorePage(q: QueryRequest<'testRestore.list'>) { return this.run((r) => r.testRestorePage(q)); }
  listJobs(q: QueryRequest<'job.list'>) { return this.run((r) => r.listJobs(q)); }
  jobPage(q: QueryRequest<'job.list'>) { return this.run((r) => r.jobPage(q)); }
  getJob(jobId: string) { return this.run((r) => r.getJob(jobId)); }
  listPolicies(q: QueryRequest<'policy.list'>) { return this.run((r) => r.listPolicies(q)); }
  policyPage(q: QueryRequest<'policy.list'>) { return this.run((r) => r.policyPage(q)); }
  getPolicy(policyId: string) { return this.run((r) => r.getPolicy(policyId)); }
  auditTimeline(q: QueryRequest<'audit.timeline'>) { return this.run((r) => r.auditTimeline(q)); }
  auditPage(q: QueryRequest<'audit.timeline'>) { return this.run((r) => r.auditPage(q)); }
}

const VM_SELECT = `
  SELECT v.*,
    (SELECT MAX(created_at) FROM restore_points r WHERE r.vm_id = v.vm_id) AS last_backup_at,
    (SELECT COUNT(*) FROM restore_points r WHERE r.vm_id = v.vm_id AND r.expired_at IS NULL) AS restore_points
  FROM vms v`;

function job(r: Row): JobView {
  const failed = r.failure_phase !== null && r.failure_phase !== undefined;
  return {
    jobId: str(r.job_id),
    kind: str(r.kind) as JobView['kind'],
    vmId: str(r.vm_id),
    policyId: strOrNull(r.policy_id),
    site: str(r.site),
    mode: str(r.mode),
    trigger: str(r.trigger),
    slot: strOrNull(r.slot),
    state: str(r.state) as JobView['state'],
    attempt: num(r.attempt),
    requestedAt: str(r.requested_at),
    startedAt: strOrNull(r.started_at),
    endedAt: strOrNull(r.ended_at),
    updatedAt: str(r.updated_at),
    snapshotId: strOrNull(r.snapshot_id),
    worker: strOrNull(r.worker),
    restorePointId: strOrNull(r.restore_point_id),
    bytesRead: numOrNull(r.bytes_read),
    bytesStored: numOrNull(r.bytes_stored),
    durationMs: numOrNull(r.duration_ms),
    failure: failed ? { phase: str(r.failure_phase), reason: str(r.failure_reason), retryable: num(r.failure_retryable) === 1 } : null,
    cancelReason: strOrNull(r.cancel_reason),
  };
}

function policy(r: Row): PolicyView {
  const body = json(r.body) as Omit<PolicyView, 'version' | 'createdAt' | 'updatedAt' | 'deletedAt'>;
  return {
    policyId: body.policyId,
    name: body.name,
    site: str(r.site),
    selector: body.selector,
    schedule: body.schedule,
    retention: body.retention,
    repository: body.repository,
    keyRef: body.keyRef,
    priority: body.priority,
    ...(body.immutable !== undefined ? { immutable: body.immutable } : {}),
    ...(body.bandwidthBytesPerSec !== undefined ? { bandwidthBytesPerSec: body.bandwidthBytesPerSec } : {}),
    ...(body.quiesce !== undefined ? { quiesce: body.quiesce } : {}),
    ...(body.fileIndex !== undefined ? { fileIndex: body.fileIndex } : {}),
    ...(body.rpoMinutes !== undefined ? { rpoMinutes: body.rpoMinutes } : {}),
    ...(body.testRestore !== undefined ? { testRestore: body.testRestore } : {}),
    ...(body.managedBy !== undefined ? { managedBy: body.managedBy } : {}),
    ...(body.globalVersion !== undefined ? { globalVersion: body.globalVersion } : {}),
    ...(body.globalPolicyId !== undefined ? { globalPolicyId: body.globalPolicyId } : {}),
    version: num(r.version),
    createdAt: str(r.created_at),
    updatedAt: str(r.updated_at),
    deletedAt: strOrNull(r.deleted_at),
    pausedAt: strOrNull(r.paused_at),
  };
}

function auditEntry(r: Row): AuditEntry {
  return {
    position: num(r.position),
    eventId: str(r.event_id),
    time: str(r.time),
    type: str(r.type),
    schemaVersion: num(r.schema_version),
    site: str(r.site),
    actor: { kind: str(r.actor_kind) as AuditEntry['actor']['kind'], id: str(r.actor_id) },
    streamId: str(r.stream_id),
    correlationId: str(r.correlation_id),
    causationId: strOrNull(r.causation_id),
    trace: json(r.trace) as AuditEntry['trace'],
    data: json(r.data),
  };
}
