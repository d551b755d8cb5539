import { describe, expect, it } from 'vitest';
import { healthGauges, parseListenAddress } from './service-endpoints.ts';

describe('a service process\'s HTTP endpoints', () => {
  it('reads host:port, loopback when the host is left out, and refuses the rest by example', () => {
    expect(parseListenAddress('127.0.0.1:9101')).toEqual({ host: '127.0.0.1', port: 9101 });
    expect(parseListenAddress(':0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseListenAddress('[::1]:9100')).toEqual({ host: '::1', port: 9100 });
    expect(() => parseListenAddress('9100')).toThrow(/host:port/);
    expect(() => parseListenAddress('a:70000')).toThrow(/host:port/);
  });

  it('exports the numbers of a health detail, one level deep, in snake case', () => {
    const g = healthGauges({
      status: { position: 12, head: '14', lag: 2, projecting: true, replica: 'catalogue@h#1', startedAt: '2026-12-06T03:00:00Z' },
      leader: false, jobsOpen: 3, worker: 'data-mover@1', instances: [{ connected: true }], deep: { a: { b: 1 } },
    });
    expect(Object.fromEntries(g)).toEqual({ status_position: 12, status_head: 14, status_lag: 2, status_projecting: 1, leader: 0, jobs_open: 3 });
  });
});
