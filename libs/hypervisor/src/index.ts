// Hypervisor integration: the adapter port every hypervisor implements, the QMP client, and
// the QEMU adapters (running VMs through QMP, powered-off VMs through their qcow2 files).
export type * from './hypervisor.port.ts';
export { QmpClient, type QmpClientOptions, type QmpEvent, type QmpGreeting } from './qmp/qmp-client.ts';
export { QmpError, QmpTimeoutError, QmpConnectionError } from './qmp/qmp-errors.ts';
export { QemuAdapter, UnknownVmError, UnknownDiskError, DiskBusyError, type QemuAdapterConfig, type AdapterLogger } from './qemu/qemu.adapter.ts';
export { QemuOfflineAdapter, type QemuOfflineAdapterConfig, type OfflineVmConfig } from './qemu/qemu-offline.adapter.ts';
export { GuestAgentClient, GuestAgentError, FreezeGuard, type FreezeOutcome } from './qemu/guest-agent.ts';
export { PREFIX as CAIRN_OBJECT_PREFIX, isViewId, liveBitmapName } from './qemu/naming.ts';
export { imageInfo, type ImageInfo, type ImageBitmap } from './qemu/qemu-img.ts';
