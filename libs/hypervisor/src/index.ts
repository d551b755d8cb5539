// Hypervisor integration: the adapter port every hypervisor implements, the QMP client, the
// QEMU adapters (running VMs through QMP, powered-off VMs through their qcow2 files) and the
// libvirt adapter (domains through libvirt's backup API).
export type * from './hypervisor.port.ts';
export { QmpClient, type QmpClientOptions, type QmpEvent, type QmpGreeting } from './qmp/qmp-client.ts';
export { connectStartedQmp, type StartedQmpOptions } from './qmp/qmp-started.ts';
export { QmpError, QmpTimeoutError, QmpConnectionError } from './qmp/qmp-errors.ts';
export { QemuAdapter, UnknownVmError, UnknownDiskError, DiskBusyError, type QemuAdapterConfig, type AdapterLogger } from './qemu/qemu.adapter.ts';
export { QemuOfflineAdapter, type QemuOfflineAdapterConfig, type OfflineVmConfig } from './qemu/qemu-offline.adapter.ts';
export { QemuStoppedFallbackAdapter, type QemuStoppedFallbackConfig } from './qemu/qemu-stopped.adapter.ts';
export { GuestAgentClient, GuestAgentError, FreezeGuard, type FreezeOutcome } from './qemu/guest-agent.ts';
export { PREFIX as CAIRN_OBJECT_PREFIX, isViewId, liveBitmapName } from './qemu/naming.ts';
export { imageInfo, type ImageInfo, type ImageBitmap } from './qemu/qemu-img.ts';
export { StoragePoolError, poolRefusal, type PoolVolume } from './libvirt/storage-pool.ts';
export { LibvirtAdapter, DomainExistsError, DomainRunningError, type LibvirtAdapterConfig } from './libvirt/libvirt.adapter.ts';
export { Virsh, VirshError, type VirshOptions } from './libvirt/virsh.ts';
export { startOrFollowCopies, pivotCopies, removeDomain, parseBlockJobInfo, BlockCopyError, type CopyTarget, type CopyState } from './libvirt/instant-domain.ts';
export {
  parseDomainXml, libvirtVmConfig, domainXmlForRestore, hostSpecificParts, liveDisks, DomainXmlError,
  type LiveDisk, type DomainSummary, type DomainDisk, type DomainNic, type LibvirtVmConfig, type HostPath, type SecretRef, type DefineOptions,
} from './libvirt/domain-xml.ts';
export { planLibvirtBackup, checkpointName, parseCheckpointName, type ChainRecord, type LibvirtBackupPlan, type LibvirtDiskPlan } from './libvirt/checkpoint-plan.ts';
export { DomainEventWatcher, parseEventLine, type DomainEvent } from './libvirt/domain-events.ts';
export { qemuCommandLine, newMac, NBD_RECONNECT_DELAY_S, type QemuLaunch, type QemuLaunchDisk } from './qemu/qemu-command-line.ts';
export { mirrorAndPivot, mirrorProgress, mirrorJobId, mirrorTargetNode, type MirrorDisk, type MirrorProgress } from './qemu/instant-mirror.ts';
export type { QemuVmConfig } from './qemu/vm-config.ts';
export { VmwareAdapter, SNAPSHOT_PREFIX as VMWARE_SNAPSHOT_PREFIX, dirtyExtents, vmwareVmConfig, type VmwareAdapterConfig } from './vmware/vmware.adapter.ts';
export { VsphereClient, VsphereError, readCredentialsFile, type VsphereCredentials, type VsphereTls } from './vmware/vsphere-client.ts';
export { moRef, soapResponse, SoapFault, type MoRef } from './vmware/vsphere-xml.ts';
export { changedAreasPlan, type ChangedArea, type ChangedAreasPlan } from './vmware/vmware-cbt.ts';
export type { VmwareVm, VmwareDisk, VmwareNic } from './vmware/vmware-inventory.ts';
export { libvirtConfigFromVmware, VmwareTranslationError, type VmwareToLibvirtOptions } from './vmware/vmware-to-libvirt.ts';
export { SimulatedAdapter, simulatedBlock, simulatedVmName, type SimulatedAdapterConfig } from './simulated/simulated.adapter.ts';
