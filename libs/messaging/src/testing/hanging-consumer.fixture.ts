// A consumer process for the crash test: binds one durable consumer whose handler announces
// the message on stdout and then never finishes, so the test can SIGKILL it mid-handler.
// Usage: tsx hanging-consumer.fixture.ts <natsUrl> <stream> <durable> <filterSubject> <ackWaitMs>
import { JetStreamServer } from '../jetstream.server.ts';
import { ACTOR, SITE } from './site.ts';

const [url, stream, durable, filterSubject, ackWaitMs] = process.argv.slice(2);
if (!url || !stream || !durable || !filterSubject || !ackWaitMs) {
  console.error('usage: hanging-consumer.fixture.ts <natsUrl> <stream> <durable> <filterSubject> <ackWaitMs>');
  process.exit(2);
}

const server = new JetStreamServer({ servers: url, site: SITE, actor: ACTOR });
server.addJetStreamHandler({ stream, durable, filterSubject, ackWaitMs: Number(ackWaitMs) }, (_payload, ctx) => {
  process.stdout.write(`HANDLING ${ctx.info.streamSequence} ${ctx.deliveryCount} ${Date.now()}\n`);
  return new Promise(() => undefined);
});
server.listen((err?: unknown) => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  process.stdout.write('READY\n');
});
