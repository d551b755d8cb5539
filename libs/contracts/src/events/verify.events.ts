// Verify jobs (issue 16): a data mover re-reads and checks a repository's chunks on a schedule
// (stream `verify-<verifyId>`, one per repository and slot: the first mover to record the start
// runs it), and names every restore point that uses a damaged object (`restorepoint-<id>`).
import { Type } from '@sinclair/typebox';
import { lazySchema } from '../lazy-schema.ts';
import { Bytes, Count, Id, Name } from './common.ts';

const Damaged = lazySchema(() => Type.Object({
  kind: Type.Union([Type.Literal('chunk'), Type.Literal('index-page')]),
  id: Type.String({ minLength: 1, maxLength: 200 }),
  damage: Type.String({ minLength: 1, maxLength: 64 }),
}, { additionalProperties: false }));

export const VerifyStartedV1 = lazySchema(() => Type.Object({
  verifyId: Id,
  repository: Name,
  trigger: Type.Union([Type.Literal('schedule'), Type.Literal('manual'), Type.Literal('replication')]),
  /** Restore points to check: those not verified within `olderThanDays` (all when never verified). */
  restorePoints: Count,
  olderThanDays: Count,
  /** Fraction of their distinct chunks read (1 = all). */
  sample: Type.Number({ minimum: 0, maximum: 1 }),
}, { additionalProperties: false }));

export const VerifyCompletedV1 = lazySchema(() => Type.Object({
  verifyId: Id,
  repository: Name,
  /** The restore points checked (so the next verify knows what was, and when). */
  restorePoints: Type.Array(Id, { maxItems: 100_000 }),
  chunksTotal: Count,
  chunksChecked: Count,
  bytesChecked: Bytes,
  pagesChecked: Count,
  damagedCount: Count,
  /** The first 100 damaged objects. */
  damaged: Type.Array(Damaged, { maxItems: 100 }),
  /** Every restore point that uses a damaged object (checked or not). */
  affectedRestorePoints: Type.Array(Id, { maxItems: 100_000 }),
  durationMs: Count,
}, { additionalProperties: false }));

export const RestorePointDamagedV1 = lazySchema(() => Type.Object({
  restorePointId: Id,
  vmId: Id,
  verifyId: Id,
  /** The damaged objects this restore point uses (first 100) and how many in all. */
  damaged: Type.Array(Damaged, { maxItems: 100 }),
  damagedCount: Count,
}, { additionalProperties: false }));

// Test restores (issue 16): a restore point booted in isolation (no network, writes thrown
// away) and judged by checks; stream `testrestore-<testRestoreId>`, written by the data mover.
const Screenshot = lazySchema(() => Type.Object({
  /** Where the PNG of the console is kept (the data mover's data directory). */
  file: Type.String({ minLength: 1, maxLength: 4096 }),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
  bytes: Count,
}, { additionalProperties: false }));

const CheckResult = lazySchema(() => Type.Object({
  check: Name,
  ok: Type.Boolean(),
  detail: Type.String({ maxLength: 4096 }),
}, { additionalProperties: false }));

export const TestRestoreStartedV1 = lazySchema(() => Type.Object({
  testRestoreId: Id,
  restorePointId: Id,
  vmId: Id,
  /** The checks that judge it, e.g. `serial:<pattern>`. */
  checks: Type.Array(Name, { minItems: 1, maxItems: 16 }),
  /** The policy whose `testRestore` schedule asked for it (absent when asked by hand). */
  policyId: Type.Optional(Id),
}, { additionalProperties: false }));

export const TestRestorePassedV1 = lazySchema(() => Type.Object({
  testRestoreId: Id,
  restorePointId: Id,
  vmId: Id,
  results: Type.Array(CheckResult, { maxItems: 16 }),
  screenshot: Type.Union([Screenshot, Type.Null()]),
  durationMs: Count,
}, { additionalProperties: false }));

export const TestRestoreFailedV1 = lazySchema(() => Type.Object({
  testRestoreId: Id,
  restorePointId: Id,
  vmId: Id,
  /** The check that failed (or `boot` when the VM could not be started at all). */
  check: Name,
  reason: Type.String({ minLength: 1, maxLength: 4096 }),
  results: Type.Array(CheckResult, { maxItems: 16 }),
  /** The last lines of the serial console. */
  consoleTail: Type.String({ maxLength: 8192 }),
  screenshot: Type.Union([Screenshot, Type.Null()]),
  durationMs: Count,
}, { additionalProperties: false }));

/**
 * A policy's scheduled test restore the data mover would not start (stream `testrestore-<id>`,
 * the scheduler, only while that stream is empty: nothing started): no restore point there, no
 * NBD exports, an unknown script, or no data mover answering. The test restore did not happen.
 */
export const TestRestoreRefusedV1 = lazySchema(() => Type.Object({
  testRestoreId: Id,
  restorePointId: Id,
  vmId: Id,
  policyId: Id,
  reason: Type.String({ minLength: 1, maxLength: 4096 }),
}, { additionalProperties: false }));
