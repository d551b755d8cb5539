// Test fixtures (real QEMU processes, guest-like writes, NBD read helpers): only tests import
// `@cairn/hypervisor/testing`; production code never does.
export { startQemuVm, guestWrite, createTestDisk, type QemuVm, type QemuVmOptions, type TestDiskSpec } from './qemu-vm.ts';
export { GuestWriter, applyWrites, blocksWritten, type LoggedWrite } from './guest-writer.ts';
export { readExport, readExportWithNbdcopy, dirtyBlocks, dirtyBlocksWithNbdinfo, nbdUri } from './nbd-tools.ts';
export { reconfigureDisk, uploadFlat, generatedDisk, powerOffVm, destroyVm } from './vmware-fixtures.ts';
