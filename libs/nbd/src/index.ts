// @cairn/nbd: a pure-TypeScript NBD client (pipelined, pooled, strict) and server
// (read-only or copy-on-write exports from any BlockSource). See docs/nbd.md.
export { NbdClient, type NbdClientOptions, type NbdExportInfo, type SocketAddress } from './client.ts';
export { NbdPool, type NbdPoolOptions, type NbdReader } from './pool.ts';
export type { BlockSizes } from './client-handshake.ts';
export {
  allocatedExtents, changedExtents, mergeExtents, selectAndMerge, walkExtents,
  type BlockStatusSource, type WalkOptions,
} from './extents.ts';
export { NbdServer, type NbdExport, type NbdServerOptions, type NbdServerTlsOptions } from './server.ts';
export {
  fromRepositoryDisk, isWritable, openFileSource, readChecked,
  type BlockSource, type RepositoryDisk, type WritableBlockSource,
} from './block-source.ts';
export { copyOnWrite, type CopyOnWriteDisk, type CopyOnWriteOptions, type OverlayStore } from './copy-on-write.ts';
export {
  BASE_ALLOCATION, STATE_DIRTY, STATE_HOLE, STATE_ZERO, dirtyBitmapContext,
  NbdConnectionClosedError, NbdOptionError, NbdProtocolError, NbdRequestError, NbdTimeoutError,
  type Extent,
} from './protocol.ts';
