// Domain logic: jobs, policies, schedules and retention; users, tokens and four-eyes approvals,
// and which operator keys and administrators readers trust. Pure; the only I/O is through the
// stream reader passed to the trust loaders.
export * from './decider.ts';
export * from './job.decider.ts';
export * from './policy.decider.ts';
export * from './global-policy.ts';
export * from './retention.ts';
export * from './restore-point.decider.ts';
export * from './replication-policy.decider.ts';
export * from './transfer-work.ts';
export * from './restore.decider.ts';
export * from './rpo.decider.ts';
export * from './expiry.decider.ts';
export * from './replication-lag.decider.ts';
export * from './operator-trust.ts';
export * from './approval.decider.ts';
export * from './user.decider.ts';
export * from './instant.decider.ts';
