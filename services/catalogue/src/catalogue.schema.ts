// The catalogue's SQLite schema: one table per read model plus the projection checkpoint.
// Bump SCHEMA_VERSION when a table changes: a replica whose file is older rebuilds from the log.
// 12: running totals for catalogue.stats (catalogue_totals, kept by triggers; see catalogue.totals.ts)
// and each restore point's newest test restore outcome (last_test_status).
import { TOTALS_TABLE_DDL } from './catalogue.totals.ts';

export const SCHEMA_VERSION = 12;

export const SCHEMA_DDL = `
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS checkpoint (
  name TEXT PRIMARY KEY,
  position INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS vms (
  vm_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  site TEXT NOT NULL,
  hypervisor_kind TEXT NOT NULL,
  hypervisor_host TEXT NOT NULL,
  tags TEXT NOT NULL,
  discovered_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  power_state TEXT,
  removed_at TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS vms_name ON vms (name, vm_id);

CREATE TABLE IF NOT EXISTS disks (
  vm_id TEXT NOT NULL,
  name TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  attached_at TEXT NOT NULL,
  detached_at TEXT,
  PRIMARY KEY (vm_id, name)
) STRICT;

CREATE TABLE IF NOT EXISTS restore_points (
  restore_point_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  vm_id TEXT NOT NULL,
  policy_id TEXT,
  site TEXT NOT NULL,
  created_at TEXT NOT NULL,
  position INTEGER NOT NULL,
  parent_id TEXT,
  size_bytes INTEGER NOT NULL,
  bytes_read INTEGER NOT NULL,
  bytes_stored INTEGER NOT NULL,
  expired_at TEXT,
  expiry_reason TEXT,
  damaged_at TEXT,
  damage_verify_id TEXT,
  damaged_count INTEGER,
  locked_until TEXT,
  locked_at TEXT,
  lock_actor_kind TEXT,
  lock_actor_id TEXT,
  lock_causation_id TEXT,
  -- status of the newest test restore that ran (not refused): feeds the boot-tested totals
  last_test_status TEXT
) STRICT;
-- list-by-VM pages by (position, id) within a VM; latest-per-VM reads the VM's newest first.
CREATE INDEX IF NOT EXISTS restore_points_vm ON restore_points (vm_id, position, restore_point_id);
-- latest-per-VM (the VM list's newest restore point and live count) without reading the VM's rows.
CREATE INDEX IF NOT EXISTS restore_points_vm_created ON restore_points (vm_id, created_at);
CREATE INDEX IF NOT EXISTS restore_points_vm_live ON restore_points (vm_id) WHERE expired_at IS NULL;
CREATE INDEX IF NOT EXISTS restore_points_position ON restore_points (position);

CREATE TABLE IF NOT EXISTS restore_point_disks (
  restore_point_id TEXT NOT NULL,
  name TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  bytes_read INTEGER NOT NULL,
  bytes_stored INTEGER NOT NULL,
  chunks_new INTEGER NOT NULL,
  chunks_reused INTEGER NOT NULL,
  PRIMARY KEY (restore_point_id, name)
) STRICT;

CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL DEFAULT 'backup',
  vm_id TEXT NOT NULL,
  policy_id TEXT,
  site TEXT NOT NULL,
  mode TEXT NOT NULL,
  trigger TEXT NOT NULL,
  slot TEXT,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  requested_at TEXT NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  updated_at TEXT NOT NULL,
  position INTEGER NOT NULL,
  snapshot_id TEXT,
  worker TEXT,
  restore_point_id TEXT,
  bytes_read INTEGER,
  bytes_stored INTEGER,
  duration_ms INTEGER,
  failure_phase TEXT,
  failure_reason TEXT,
  failure_retryable INTEGER,
  cancel_reason TEXT,
  consistency TEXT,
  consistency_reason TEXT,
  vm_config TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, position);
CREATE INDEX IF NOT EXISTS jobs_vm ON jobs (vm_id, position);
CREATE INDEX IF NOT EXISTS jobs_position ON jobs (position);
CREATE INDEX IF NOT EXISTS jobs_kind ON jobs (kind, position);

CREATE TABLE IF NOT EXISTS job_phases (
  job_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  state TEXT NOT NULL,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  detail TEXT,
  PRIMARY KEY (job_id, phase)
) STRICT;

CREATE TABLE IF NOT EXISTS policies (
  policy_id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  site TEXT NOT NULL,
  body TEXT NOT NULL,
  version INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  deleted_at TEXT,
  paused_at TEXT
) STRICT;

CREATE TABLE IF NOT EXISTS audit (
  position INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  time TEXT NOT NULL,
  type TEXT NOT NULL,
  schema_version INTEGER NOT NULL,
  site TEXT NOT NULL,
  actor_kind TEXT NOT NULL,
  actor_id TEXT NOT NULL,
  stream_id TEXT NOT NULL,
  correlation_id TEXT NOT NULL,
  causation_id TEXT,
  trace TEXT,
  data TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_correlation ON audit (correlation_id, position);
CREATE INDEX IF NOT EXISTS audit_actor ON audit (actor_id, position);
CREATE INDEX IF NOT EXISTS audit_type ON audit (type, position);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time);
CREATE INDEX IF NOT EXISTS audit_stream ON audit (stream_id, position);

CREATE TABLE IF NOT EXISTS replicas (
  restore_point_id TEXT NOT NULL,
  target_site TEXT NOT NULL,
  source_site TEXT NOT NULL,
  vm_id TEXT NOT NULL,
  vm_name TEXT NOT NULL,
  job_id TEXT,
  policy_id TEXT,
  repository_id TEXT NOT NULL,
  committed_at TEXT NOT NULL,
  source_committed_at TEXT NOT NULL,
  disks TEXT NOT NULL,
  chunks_sent INTEGER NOT NULL,
  bytes_sent INTEGER NOT NULL,
  position INTEGER NOT NULL,
  PRIMARY KEY (restore_point_id, target_site)
) STRICT;
CREATE INDEX IF NOT EXISTS replicas_position ON replicas (position);

CREATE TABLE IF NOT EXISTS test_restores (
  test_restore_id TEXT PRIMARY KEY,
  restore_point_id TEXT NOT NULL,
  vm_id TEXT NOT NULL,
  site TEXT NOT NULL,
  policy_id TEXT,
  status TEXT NOT NULL,
  checks TEXT NOT NULL,
  results TEXT NOT NULL,
  failed_check TEXT,
  reason TEXT,
  started_at TEXT NOT NULL,
  ended_at TEXT,
  duration_ms INTEGER,
  screenshot TEXT,
  position INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS test_restores_point ON test_restores (restore_point_id, position);
CREATE INDEX IF NOT EXISTS test_restores_vm ON test_restores (vm_id, position);
CREATE INDEX IF NOT EXISTS test_restores_position ON test_restores (position);

CREATE TABLE IF NOT EXISTS replication_policies (
  policy_id TEXT PRIMARY KEY,
  site TEXT NOT NULL,
  name TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at TEXT NOT NULL,
  deleted_at TEXT,
  position INTEGER NOT NULL
) STRICT;
${TOTALS_TABLE_DDL}`;

/** Tables holding read models (everything a rebuild empties). */
export const READ_MODEL_TABLES = ['vms', 'disks', 'restore_points', 'restore_point_disks', 'jobs', 'job_phases', 'policies', 'audit', 'replicas', 'replication_policies', 'test_restores'] as const;
