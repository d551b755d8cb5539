// A subscription stopped before anything was delivered ends its iteration promptly.
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { useHarness } from '@cairn/testing';
import { createJetStreamEventLog } from './jetstream-event-log.adapter.ts';

describe('JetStream subscription stop', () => {
  const h = useHarness();

  it('ends the iteration when stopped on an empty log, before and after the consumer exists', async () => {
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: 'stop' });
    for (const delayMs of [0, 300]) {
      const sub = log.subscribe({ from: 'start' });
      const ended = (async () => { for await (const _ of sub) { /* nothing to deliver */ } return 'ended'; })();
      await new Promise((r) => setTimeout(r, delayMs));
      await sub.stop();
      const outcome = await Promise.race([ended, new Promise((r) => setTimeout(() => r('hung'), 5_000))]);
      expect(outcome).toBe('ended');
    }
  });
});
