// Backup domain logic: jobs, policies, schedules and retention. Pure; no I/O.
export * from './decider.ts';
export * from './job.decider.ts';
export * from './policy.decider.ts';
export * from './retention.ts';
export * from './restore-point.decider.ts';
export * from './transfer-work.ts';
export * from './restore.decider.ts';
export * from './rpo.decider.ts';
