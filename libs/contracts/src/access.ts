// Who may do what: each role grants a set of permissions, each API route and each command needs
// one. The one table for the gateway (routes) and the services (commands sent by a person's
// signed key); the matrix is in docs/security.md.
import type { CommandName } from './command.ts';
import type { Role } from './events/security.events.ts';

export type Permission =
  /** Every GET: inventory, restore points, jobs, policies, audit, users, tokens, approvals. */
  | 'read'
  /** Start (and cancel) backups. */
  | 'backup'
  /** Create or change protection policies. */
  | 'policy'
  /** Restore disks of restore points. */
  | 'restore'
  /** Read the files inside restore points: browse, download, write back (an auditor may not). */
  | 'files'
  /** Users, tokens, keys, hypervisors, and four-eyes requests and approvals. */
  | 'admin';

export const PERMISSIONS: readonly Permission[] = ['read', 'backup', 'policy', 'restore', 'files', 'admin'];

export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  administrator: ['read', 'backup', 'policy', 'restore', 'files', 'admin'],
  operator: ['read', 'backup', 'policy', 'restore', 'files'],
  'restore-operator': ['read', 'restore', 'files'],
  auditor: ['read'],
};

export function allows(roles: readonly Role[], permission: Permission): boolean {
  return roles.some((r) => ROLE_PERMISSIONS[r]?.includes(permission));
}

/** The permission a person needs to send each command (with their own key, over NATS). */
export const COMMAND_PERMISSIONS: Readonly<Record<CommandName, Permission>> = {
  RequestBackup: 'backup',
  CancelJob: 'backup',
  CreatePolicy: 'policy',
  UpdatePolicy: 'policy',
  PausePolicy: 'policy',
  ResumePolicy: 'policy',
  DeletePolicy: 'policy',
  // Checked on the person who signed the statement inside it (the hub only carries it).
  ApplyGlobalPolicy: 'policy',
  LockRestorePoint: 'policy',
  CreateReplicationPolicy: 'policy',
  DeleteReplicationPolicy: 'policy',
  ReplicateRestorePoint: 'backup',
  RestoreDisk: 'restore',
  RequestRestore: 'restore',
  StopRestoreExport: 'restore',
  ListRestoreExports: 'read',
  TestRestore: 'restore',
  StartInstant: 'restore',
  FinishInstant: 'restore',
  DiscardInstant: 'restore',
  ListInstant: 'read',
  BrowseFiles: 'files',
  RestoreFiles: 'files',
  SearchFiles: 'files',
  OpenFileDownload: 'files',
  WriteGuestFiles: 'files',
  VerifyReplica: 'read',
  DescribeRepository: 'read',
  // Destructive or infrastructure: administrators only (deletion also needs a four-eyes approval).
  DeleteRestorePoint: 'admin',
  DeleteRepository: 'admin',
  DeclareSiteLost: 'admin',
  RequestApproval: 'admin',
  DecideApproval: 'admin',
  SetSiteAllowedGap: 'admin',
  RepairReplica: 'admin',
  CollectReplicaGarbage: 'admin',
  AddHypervisor: 'admin',
  // Sent by the data mover (a service) at the end of a restore job; a person would need admin.
  DefineRestoredVm: 'admin',
  PrepareInPlaceRestore: 'admin',
  ManageInstantDomain: 'admin',
  RecoverAccess: 'admin',
  // Service-to-service steps of a backup; a person never needs to send them.
  RequestSnapshot: 'admin',
  ReleaseSnapshot: 'admin',
};
