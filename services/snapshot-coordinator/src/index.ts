// The snapshot coordinator service: point-in-time views of VM disks for backup jobs, their
// leases and clean-up, and the hypervisor inventory as events.
export { startSnapshotCoordinator, type StartOptions, type RunningCoordinator, type RunningCoordinator as RunningSnapshotCoordinator, type Health } from './snapshot-coordinator.main.ts';
export { SnapshotCoordinator, SnapshotCommandError, chainFor, type CoordinatorSettings, type CoordinatorLogger } from './snapshot-coordinator.service.ts';
export { CoordinatorConfig, parseCoordinatorConfig } from './snapshot-coordinator.config.ts';
export { SERVICE_NAME } from './snapshot-coordinator.handlers.ts';
export { defaultScratchDir } from './libvirt-instance.ts';
