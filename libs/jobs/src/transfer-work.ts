// The work message the scheduler puts on the data movers' queue: everything a mover needs
// to read a snapshot and commit a restore point, without asking anyone.
import { Type, type Static } from '@sinclair/typebox';
import { NbdEndpoint } from '@cairn/contracts';

export const TransferWork = Type.Object({
  jobId: Type.String({ minLength: 1, maxLength: 200 }),
  vmId: Type.String({ minLength: 1, maxLength: 200 }),
  vmName: Type.String({ minLength: 1, maxLength: 256 }),
  snapshotId: Type.String({ minLength: 1, maxLength: 200 }),
  policyId: Type.Union([Type.String(), Type.Null()]),
  repository: Type.String({ minLength: 1, maxLength: 256 }),
  mode: Type.Union([Type.Literal('auto'), Type.Literal('full')]),
  nbd: NbdEndpoint,
}, { $id: 'TransferWork', additionalProperties: false });
export type TransferWork = Static<typeof TransferWork>;

export const TRANSFER_QUEUE = 'transfers';

/** The JetStream work-queue stream of a site (subjects `cairn.<site>.work.>`). */
export function workStreamName(site: string): string {
  return `CAIRN_WORK_${site.toUpperCase().replace(/-/g, '_')}`;
}
