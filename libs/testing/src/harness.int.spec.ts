import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { useHarness } from './harness.ts';

describe('test harness', () => {
  const h = useHarness();

  it('starts a real nats-server with JetStream in a domain, and restarts it on the same port', async () => {
    const server = await h.nats({ domain: 'site-a' });
    const nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.getAccountInfo();
    expect(info.domain).toBe('site-a');
    await nc.close();
    await server.kill('SIGKILL');
    await server.start();
    const nc2 = await connect({ servers: server.url });
    expect(nc2.getServer()).toContain(String(server.port));
    await nc2.close();
  });

  it('starts a local S3 endpoint', async () => {
    const s3 = await h.s3(['b1']);
    const res = await fetch(`${s3.url}/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('b1');
  });
});
