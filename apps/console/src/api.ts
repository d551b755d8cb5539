// The console's only way to the gateway: same-origin fetch with the session cookie, the CSRF
// header on every change, and RFC 7807 problems turned into errors that say what went wrong.
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(readonly status: number, message: string, readonly code?: string) {
    super(message);
  }
}

export async function api<T>(path: string, init: { method?: 'GET' | 'POST' | 'DELETE'; body?: unknown; headers?: Record<string, string> } = {}): Promise<T> {
  const method = init.method ?? 'GET';
  const headers: Record<string, string> = { Accept: 'application/json', ...init.headers };
  if (method !== 'GET') headers['X-Cairn-CSRF'] = '1';
  if (init.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, credentials: 'same-origin', ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}) });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const p = (body ?? {}) as { detail?: string; title?: string; code?: string; errors?: { path: string; message: string }[] };
    const fields = p.errors?.length ? ` (${p.errors.map((e) => `${e.path}: ${e.message}`).join('; ')})` : '';
    throw new ApiError(res.status, `${p.detail ?? p.title ?? `${res.status} ${res.statusText}`}${fields}`, p.code);
  }
  return body as T;
}

export const post = <T>(path: string, body?: unknown, headers?: Record<string, string>) => api<T>(path, { method: 'POST', body: body ?? {}, ...(headers ? { headers } : {}) });

export const del = <T>(path: string) => api<T>(path, { method: 'DELETE' });

/** Query-string from the defined values only. */
export function qs(params: Record<string, string | number | boolean | undefined>): string {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

// ---- shapes of the API's answers the console reads (docs/openapi.json has them all) ----------

export type Role = 'administrator' | 'operator' | 'restore-operator' | 'auditor';
export type Permission = 'read' | 'backup' | 'policy' | 'restore' | 'files' | 'admin';
export interface WhoAmI { actor: { kind: 'user'; id: string }; roles: Role[]; permissions: Permission[]; signaturesRequired?: boolean }
export interface Items<T> { items: T[] }

export interface Vm {
  vmId: string; name: string; site: string; hypervisor: { kind: string; host: string }; tags: string[];
  disks: { name: string; sizeBytes: number; detachedAt: string | null }[]; lastBackupAt: string | null; restorePoints: number;
}
export interface RestorePoint {
  restorePointId: string; jobId: string; vmId: string; policyId: string | null; site: string; createdAt: string; parentId: string | null;
  kind: 'full' | 'incremental'; sizeBytes: number; bytesRead: number; bytesStored: number; changedBytes: number; savedBytes: number;
  disks: { name: string; sizeBytes: number; bytesStored: number }[]; expiredAt: string | null;
  consistency?: 'application' | 'crash' | null; consistencyReason?: string | null;
  /** The newest test restore of this point (booted in isolation and checked), where the catalogue has one. */
  lastTestRestore?: { testRestoreId: string; status: 'running' | 'passed' | 'failed'; at: string; durationMs: number | null; checks: string[]; failedCheck: string | null } | null;
  /** A verify found damaged chunks in it (cleared by a later clean verify). */
  damage?: { at: string; verifyId: string; damagedCount: number } | null;
  /** The immutability lock that holds: until when, made by a policy's immutability or by a user's act. */
  lock?: { until: string; at: string; source: 'policy' | 'act'; policyId: string | null; actor: { kind: 'user' | 'service'; id: string }; causationId: string | null } | null;
}
export type JobState = 'requested' | 'running' | 'completed' | 'failed' | 'cancelled';
export interface Job {
  /** A backup, or a restore (then `restorePointId` is the point restored). */
  jobId: string; kind: 'backup' | 'restore'; vmId: string; policyId: string | null; site: string; mode: string; trigger: string; state: JobState;
  requestedAt: string; startedAt: string | null; endedAt: string | null; restorePointId: string | null;
  bytesRead: number | null; bytesStored: number | null; durationMs: number | null; failure: { phase: string; reason: string } | null;
}
export interface AuditEntry {
  position: number; eventId: string; time: string; type: string; site: string; actor: { kind: string; id: string };
  streamId: string; correlationId: string; data: unknown;
}
export interface JobDetail extends Job {
  phases: { phase: string; state: string; startedAt: string; endedAt: string | null; detail: string | null }[];
  events: AuditEntry[];
}
export interface Policy {
  policyId: string; name: string; selector: { names?: string[]; tags?: string[]; hypervisor?: string };
  schedule: { cron: string; timezone: string; window?: { start: string; end: string } };
  retention: { daily: number; weekly: number; monthly: number; yearly: number; last: number };
  repository: string; keyRef: string; priority: number; immutable?: boolean; rpoMinutes?: number; version: number; createdAt?: string; deletedAt: string | null; pausedAt?: string | null;
}
export interface Approval {
  approvalId: string; action: { kind: string; restorePointId?: string; policyId?: string; repository?: string; userId?: string };
  requestedBy: string; requestedAt: string; status: string; reason?: string; approvedBy?: string; rejectedBy?: string; detail?: string;
}
export interface Replica { restorePointId: string; vmId: string; vmName: string; sourceSite: string; site: string; committedAt: string; bytesSent: number }
export interface Health { status: 'ok' | 'degraded'; site: string; nats: string; catalogue: { reachable: boolean; position?: number; lag?: number } }
export interface RestoreJob {
  restoreId: string; state: 'requested' | 'running' | 'completed' | 'failed'; restorePointId: string; requestedAt?: string; endedAt?: string;
  attempts: number; worker?: string; sizeBytes: number; durationMs: number; progress?: { disk: string; bytesDone: number; bytesTotal: number };
  disks: { disk: string; path: string; sizeBytes: number; written: boolean }[]; failure?: { code: string; reason: string };
  vm?: { name: string; dir: string; uuid: string; started: boolean; pid?: number; serialLog: string; startScript?: string; libvirt?: { host: string; domain: string } };
}
export type InstantState = 'starting' | 'serving' | 'mirroring' | 'finished' | 'discarded' | 'failed';
export interface Instant {
  instantId: string; state: InstantState; restorePointId: string; vmName: string; dir: string; startedAt?: string; endedAt?: string;
  running: boolean; pid?: number; serialLog?: string; overlayBytes: number; mirror?: { bytesDone: number; bytesTotal: number; ready: boolean };
  disks: { disk: string; sizeBytes: number; overlay: string; path?: string }[]; failure?: { step: string; reason: string };
}
export interface Paged<T> { items: T[]; next?: string | null }

/** One site as the hub sees it (GET /v1/sites/health at the hub's gateway). */
export interface SiteHealth {
  site: string; leafLink: 'up' | 'down'; lastContactAt: string | null; silent: boolean; allowedGapMs: number;
  eventsAtSite: number | null; eventsCopied: number; eventLag: number | null; relayConnected: boolean;
  failedJobs24h: number; rpoMisses24h: number; restorePoints: number; repositoryBytes: number;
  replication: Array<{ target: string; replicas: number; lastReplicaAt: string; lagMs: number }>;
}
export interface SitesHealth { generatedAt: string; items: SiteHealth[] }

/** A global policy and each site it concerns, as the hub sees them (GET /v1/global-policies at the hub's gateway). */
export interface GlobalPolicyStatus {
  policyId: string; name: string; version: number; withdrawn: boolean; selects: string; signedBy: string[]; publishedAt: string; drift: number;
  sites: Array<{ site: string; selected: boolean; appliedVersion: number | null; state: 'current' | 'behind' | 'refused'; lastError: string | null; lastOfferAt: string | null }>;
}
export interface GlobalPolicies { generatedAt: string; items: GlobalPolicyStatus[] }
