// The event log: one port, adapters for NATS JetStream (default) and memory, projections with
// checkpoints, and command handling over deciders. The KurrentDB adapters have their own entry,
// `@cairn/eventlog/kurrentdb` (kurrentdb.ts), so that importing this one never loads a gRPC client.
export * from './event-log.port.ts';
export * from './errors.ts';
export * from './decider.ts';
export * from './checkpoint-store.ts';
export * from './projection-runner.ts';
export * from './provenance.ts';
export { decodeRecord } from './codec.ts';
export { nativeSigner, verifyNkeySignature } from './ed25519.ts';
export { InMemoryEventLog, InMemoryEventStore, type StoredRecord } from './in-memory-event-log.adapter.ts';
export { NatsKvCheckpointStore } from './nats-kv-checkpoint-store.adapter.ts';
export {
  JetStreamEventLog, createJetStreamEventLog, REVISION_HEADER, EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER,
  type JetStreamEventLogOptions,
} from './jetstream-event-log.adapter.ts';
export {
  startHubRelay, hubSiteSubject, HUB_SITES_PREFIX, ORIGIN_SEQ_HEADER, ORIGIN_SUBJECT_HEADER,
  type HubRelayOptions, type RunningHubRelay, type HubRelaySiteStatus,
} from './hub-relay.adapter.ts';
export * from './audit-stream.adapter.ts';
