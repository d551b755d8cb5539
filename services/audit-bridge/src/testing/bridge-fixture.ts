// Runs the audit bridge in its own process for the crash test: one HEC target, settings from
// the environment; prints "ready" once started. The test kills it with SIGKILL.
import { connect } from '@nats-io/transport-node';
import { startAuditBridge } from '../audit-bridge.service.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const nc = await connect({ servers: env('CAIRN_NATS_URL') });
const bridge = await startAuditBridge({
  nc,
  site: env('CAIRN_SITE'),
  targets: [{ kind: 'hec', name: 'splunk', url: env('CAIRN_HEC_URL'), token: 't', batch: { maxBatch: 5, maxDelayMs: 20, minBackoffMs: 50, maxBackoffMs: 300 } }],
});
process.stdout.write('ready\n');
process.on('SIGTERM', () => { void bridge.close().then(() => nc.close()).then(() => process.exit(0)); });
