// The chunked, deduplicated, encrypted repository: restore points of VM disks on a
// directory or S3.
export * from './backend/backend.ts';
