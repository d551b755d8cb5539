// Who may do what through the API: each route needs one permission, each role grants a set.
// The matrix is documented in docs/security.md (API roles) and checked on every route.
import type { Role } from '@cairn/contracts';

export type Permission =
  /** Every GET: inventory, restore points, jobs, policies, audit, users, tokens, approvals. */
  | 'read'
  /** Start (and cancel) backups. */
  | 'backup'
  /** Create or change protection policies. */
  | 'policy'
  /** Restore disks of restore points. */
  | 'restore'
  /** Users, tokens, and four-eyes requests and approvals. */
  | 'admin';

export const PERMISSIONS: readonly Permission[] = ['read', 'backup', 'policy', 'restore', 'admin'];

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  administrator: ['read', 'backup', 'policy', 'restore', 'admin'],
  operator: ['read', 'backup', 'policy', 'restore'],
  'restore-operator': ['read', 'restore'],
  auditor: ['read'],
};

export function allows(roles: readonly Role[], permission: Permission): boolean {
  return roles.some((r) => ROLE_PERMISSIONS[r]?.includes(permission));
}
