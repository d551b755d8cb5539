// The data mover service: transfers snapshots into restore points, restores disks.
export { startDataMover, type StartDataMoverOptions, type RunningDataMover } from './data-mover.main.ts';
export { DataMover, TransferRefused, RestoreRefused } from './data-mover.service.ts';
export { runTransfer, connectNbdEndpoint, type TransferInput, type TransferResult, type TransferOptions } from './transfer.ts';
export { TransferBandwidth, type BandwidthLimits, type Throttle } from './bandwidth.ts';
export { planReads, readAhead } from './extent-plan.ts';
export { RestoreExports } from './restore-exports.ts';
export { checkRestoreTarget, RestoreTargetRefused } from './restore-target.ts';
export { RestoreJobs, RestoreJobRefused, type RestoreJobsConfig } from './restore-job.ts';
export { InstantRecoveries, type ExporterLauncher, type InstantConfig } from './instant-recovery.ts';
