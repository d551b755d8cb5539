import { describe, expect, it } from 'vitest';
import { natsServers, streamReplicas } from './nats-cluster.ts';

describe('a NATS address and the copies a stream keeps', () => {
  it('splits a cluster address into its members', () => {
    expect(natsServers('nats://a:4222')).toEqual(['nats://a:4222']);
    expect(natsServers('tls://a:1, tls://b:2,,tls://c:3 ')).toEqual(['tls://a:1', 'tls://b:2', 'tls://c:3']);
    expect(natsServers(['nats://a:1,nats://b:2', 'nats://c:3'])).toEqual(['nats://a:1', 'nats://b:2', 'nats://c:3']);
  });

  it('R1 on one server, R3 on a cluster of three or more, the members known on a smaller one', () => {
    expect(streamReplicas(undefined, {})).toBe(1);
    expect(streamReplicas({ connect_urls: ['a:1'] }, {})).toBe(1);
    expect(streamReplicas({ cluster: 'paris', connect_urls: ['a:1', 'b:1', 'c:1'] }, {})).toBe(3);
    expect(streamReplicas({ cluster: 'paris', connect_urls: ['a:1', 'b:1', 'c:1', 'd:1', 'e:1'] }, {})).toBe(3);
    expect(streamReplicas({ cluster: 'paris', connect_urls: ['a:1', 'b:1'] }, {})).toBe(2);
  });

  it('CAIRN_NATS_REPLICAS overrides it, and a bad value is refused by name', () => {
    expect(streamReplicas({ cluster: 'paris', connect_urls: ['a:1', 'b:1', 'c:1'] }, { CAIRN_NATS_REPLICAS: '1' })).toBe(1);
    expect(streamReplicas(undefined, { CAIRN_NATS_REPLICAS: '5' })).toBe(5);
    expect(() => streamReplicas(undefined, { CAIRN_NATS_REPLICAS: 'three' })).toThrow(/CAIRN_NATS_REPLICAS/);
  });
});
