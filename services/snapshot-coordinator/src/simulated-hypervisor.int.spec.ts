// The simulated hypervisor in the coordinator: refused unless CAIRN_SIMULATED_HYPERVISOR=1 (a
// production coordinator never reports VMs that do not exist); with it, its VMs are discovered
// into the log like any hypervisor's, as kind `simulated`.
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { pino } from 'pino';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { useHarness, waitFor } from '@cairn/testing';
import { parseCoordinatorConfig } from './snapshot-coordinator.config.ts';
import { startSnapshotCoordinator } from './snapshot-coordinator.main.ts';

describe('the simulated hypervisor in the coordinator', () => {
  const h = useHarness();
  afterEach(() => { delete process.env['CAIRN_SIMULATED_HYPERVISOR']; });

  it('is refused without CAIRN_SIMULATED_HYPERVISOR=1, and discovers its VMs with it', async () => {
    const nats = await h.nats();
    const nc = await connect({ servers: nats.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: 'sim' });
    const config = async () => parseCoordinatorConfig({ site: 'sim', natsUrl: nats.url, dataDir: await h.tmpDir('cairn-sim-coord-'), simulated: { name: 'simulated', vms: 50 } });
    delete process.env['CAIRN_SIMULATED_HYPERVISOR'];
    await expect(startSnapshotCoordinator({ nc, log, logger: pino({ level: 'silent' }), config: await config() })).rejects.toThrow(/load tests only: set CAIRN_SIMULATED_HYPERVISOR=1/);

    process.env['CAIRN_SIMULATED_HYPERVISOR'] = '1';
    const c = await startSnapshotCoordinator({ nc, log, logger: pino({ level: 'silent' }), config: await config() });
    h.onClose(() => c.close());
    const discovered = await waitFor(async () => {
      const found: Array<{ name: string; kind: string }> = [];
      for await (const r of log.readAll({ category: 'vm' })) {
        if (r.event.type === 'VmDiscovered') {
          const d = r.event.data as { name: string; hypervisor: { kind: string } };
          found.push({ name: d.name, kind: d.hypervisor.kind });
        }
      }
      return found.length === 50 ? found : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: '50 simulated VMs discovered' });
    expect(new Set(discovered.map((d) => d.kind))).toEqual(new Set(['simulated']));
    expect(discovered.map((d) => d.name)).toContain('sim-00050');
  });

  it('spreads its VMs over several simulated hosts: each VM once, on its block of hosts', async () => {
    const nats = await h.nats();
    const nc = await connect({ servers: nats.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site: 'sim' });
    process.env['CAIRN_SIMULATED_HYPERVISOR'] = '1';
    const c = await startSnapshotCoordinator({
      nc, log, logger: pino({ level: 'silent' }),
      config: parseCoordinatorConfig({ site: 'sim', natsUrl: nats.url, dataDir: await h.tmpDir('cairn-sim-coord-'), simulated: { name: 'simulated', vms: 10, hosts: 3 } }),
    });
    h.onClose(() => c.close());
    const hostOf = await waitFor(async () => {
      const found = new Map<string, string>();
      for await (const r of log.readAll({ category: 'vm' })) {
        if (r.event.type === 'VmDiscovered') found.set(r.event.data.name, r.event.data.hypervisor.host);
      }
      return found.size === 10 ? found : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: '10 simulated VMs discovered' });
    expect([...hostOf.keys()].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `sim-${String(i + 1).padStart(5, '0')}`));
    expect(hostOf.get('sim-00001')).toBe('simulated-1');
    expect(hostOf.get('sim-00004')).toBe('simulated-2');
    expect(hostOf.get('sim-00010')).toBe('simulated-3');
    expect(new Set(hostOf.values())).toEqual(new Set(['simulated-1', 'simulated-2', 'simulated-3']));
  });
});
