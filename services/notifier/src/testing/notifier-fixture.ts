// Runs the notifier in its own process for the crash test: NATS and site from the
// environment, SMTP password in NOTIFY_SMTP_PASSWORD; prints "ready" once started. The test
// kills it with SIGKILL.
import { connect } from '@nats-io/transport-node';
import { startNotifier } from '../notifier.service.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const nc = await connect({ servers: env('CAIRN_NATS_URL') });
const notifier = await startNotifier({ nc, site: env('CAIRN_SITE'), minBackoffMs: 50, maxBackoffMs: 500 });
process.stdout.write('ready\n');
process.on('SIGTERM', () => { void notifier.close().then(() => nc.close()).then(() => process.exit(0)); });
