// The replication service: copies restore points to other sites' repositories (only what they
// lack, resumable, verified there without the key) and keeps the copies other sites send here.
export { startReplication, type StartReplicationOptions, type RunningReplication, type ReplicationHealth } from './replication.main.ts';
export { Replication, ReplicationRefused, type CopyReport, type ReplicationConfig } from './replication.service.ts';
export { ReplicaReceiver, type ReceiverOptions } from './replica-receiver.ts';
export { RemoteSink, TargetUnavailableError, type RemoteSinkOptions, type SinkStats } from './remote-sink.ts';
export { packIds, unpackIds } from './transfer-protocol.ts';
