// `cairn run <service>` that fails to start exits, so that its unit (Restart=on-failure) starts it
// again. Here the NATS server answers connections but its JetStream never answers: one node of a
// three-node cluster whose peers are never started has no meta leader, and answers late or with
// "JetStream system temporarily unavailable". Before, the service printed its error and then
// stayed alive on its NATS connection's reconnects, and a unit that never exits is never
// restarted (CI: infra-systemd.e2e waited 120 s for a catalogue).
import { describe, expect, it } from 'vitest';
import { freePort, startNatsServer } from '@cairn/nats-server';
import { useHarness } from '@cairn/testing';
import { cli } from './e2e-helpers.ts';

describe('cairn run: a service that cannot start', () => {
  const h = useHarness();

  it('exits as unavailable (5) when JetStream does not answer or is unavailable, naming the service', async () => {
    const dir = await h.tmpDir('cairn-run-exit-');
    const [route, peerA, peerB] = await Promise.all([freePort(), freePort(), freePort()]);
    const server = await startNatsServer({
      dir, serverName: 'lonely-1',
      extraConfig: `cluster {\n  name: lonely\n  listen: 127.0.0.1:${route}\n  routes: [nats-route://127.0.0.1:${peerA}, nats-route://127.0.0.1:${peerB}]\n}\n`,
    });
    h.onClose(() => server.stop());
    // The time each try takes is nats.js's JetStream timeout (5 s); cli() kills it after 90 s.
    for (const service of ['catalogue', 'scheduler']) {
      const r = await cli(['--nats', server.url, '--data', `${dir}/${service}`, 'run', service], {}, 90_000);
      // Which of the two a try meets depends on timing: no answer, or the server's 503.
      expect(r.stderr, service).toMatch(new RegExp(`^cairn: ${service}: (NATS did not answer in time|JetStream is not available)`));
      expect(r.code, `${service}: ${r.stderr}`).toBe(5);
    }
  }, 240_000);
});
