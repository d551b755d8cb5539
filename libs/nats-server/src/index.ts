// Starts and supervises a local nats-server process: used by `cairn up` (the embedded
// default) and by the test harness. Never assumes a well-known port is ours.
export { startNatsServer, freePort, type NatsServerOptions, type NatsServerProcess } from './nats-server.process.ts';
export { startNatsCluster, jetStreamMetaLeader, type NatsCluster, type NatsClusterOptions } from './nats-cluster.process.ts';
