// The scheduler service: policies, due slots → jobs, and each job's lifecycle.
export { startScheduler, type StartSchedulerOptions, type RunningScheduler } from './scheduler.main.ts';
export { Scheduler, SchedulerRefusal, slotJobId, type SchedulerPorts, type VmRecord } from './scheduler.service.ts';
export { schedulerConfig, type SchedulerConfig } from './scheduler.config.ts';
export { natsSchedulerPorts } from './scheduler.ports.adapter.ts';
