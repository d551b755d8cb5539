// Identifiers the repository makes up: time-sortable restore point ids and random ids.
import { randomBytes } from 'node:crypto';

/** `20261125T030102Z-<12 hex>`: sorts by creation time, unique without coordination. */
export function newRestorePointId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  return `${stamp}-${randomBytes(6).toString('hex')}`;
}

export const randomId = (bytes = 8): string => randomBytes(bytes).toString('hex');
