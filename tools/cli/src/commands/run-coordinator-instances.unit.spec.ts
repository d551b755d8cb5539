import { describe, expect, it } from 'vitest';
import { coordinatorInstances } from './run.command.ts';

describe('cairn run snapshot-coordinator: where views are served', () => {
  it('unix sockets by default; with --nbd-listen one TCP port per QEMU instance, with TLS when --nbd-tls-dir is given', () => {
    expect(coordinatorInstances({ qmp: ['/run/q1.sock'] }, '/data')).toEqual([{ name: 'qemu-1', qmpSocket: '/run/q1.sock', nbd: { socketPath: '/data/nbd-1.sock' } }]);
    expect(coordinatorInstances({ qmp: ['/run/q1.sock', '/run/q2.sock'], nbdListen: '10.0.0.5', nbdPorts: '10900-10901', nbdTlsDir: '/etc/cairn/nbd-tls' }, '/data')).toEqual([
      { name: 'qemu-1', qmpSocket: '/run/q1.sock', nbd: { host: '10.0.0.5', port: 10900, tlsDir: '/etc/cairn/nbd-tls' } },
      { name: 'qemu-2', qmpSocket: '/run/q2.sock', nbd: { host: '10.0.0.5', port: 10901, tlsDir: '/etc/cairn/nbd-tls' } },
    ]);
    expect(coordinatorInstances({ qmp: ['/run/q1.sock'], nbdListen: '10.0.0.5' }, '/data')[0]?.nbd).toEqual({ host: '10.0.0.5', port: 10809 });
  });

  it('refuses a range too small for the instances and TLS without a TCP address', () => {
    expect(() => coordinatorInstances({ qmp: ['/a', '/b'], nbdListen: '10.0.0.5', nbdPorts: '10900' }, '/data')).toThrow(/1 ports for 2 QEMU instances/);
    expect(() => coordinatorInstances({ qmp: ['/a'], nbdTlsDir: '/x' }, '/data')).toThrow(/need --nbd-listen/);
    expect(() => coordinatorInstances({ qmp: ['/a'], nbdListen: 'h', nbdPorts: '9-x' }, '/data')).toThrow(/TCP port range/);
  });
});
