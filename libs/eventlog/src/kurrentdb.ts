// The KurrentDB adapters, apart from the package's main entry: their gRPC client takes
// ~0.15 CPU-s to evaluate, so only code that talks to a KurrentDB imports
// `@cairn/eventlog/kurrentdb` (the CLI and the services on JetStream never load it).
export { KurrentDbEventLog, type KurrentDbEventLogOptions } from './kurrentdb-event-log.adapter.ts';
export { startKurrentDbRelay, type KurrentDbRelayOptions, type RunningRelay } from './kurrentdb-relay.adapter.ts';
