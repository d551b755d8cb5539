// The bridge in a child process killed with SIGKILL mid-stream (while the collector holds the
// answer to a batch it already received): the restarted bridge resumes from its checkpoint in
// NATS KV, every event arrives at least once, and the re-sent ones carry the same event ids.
import { describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { createJetStreamEventLog } from '@cairn/eventlog';
import type { CairnEvent } from '@cairn/contracts';
import { useHarness, waitFor, hecEventIds, startHttpCollector } from '@cairn/testing';
import { appendJob, jobEvents } from './testing/job-events.ts';

const fixture = fileURLToPath(new URL('./testing/bridge-fixture.ts', import.meta.url));

describe('audit bridge crash', () => {
  const h = useHarness();

  it('re-sends the unacknowledged tail with the same ids after SIGKILL, and misses nothing', async () => {
    const site = 'site-k';
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    const collector = await startHttpCollector();
    h.onClose(() => collector.stop());

    const events: CairnEvent[] = [];
    for (let j = 0; j < 8; j++) events.push(...jobEvents(site, `k${j}`, j % 3 === 0 ? 'failed' : 'completed'));
    const half = events.length / 2;
    await appendJob(log, events.slice(0, half));
    // Hold the answer to the batch that carries the 13th event: received, never acknowledged.
    const marker = events[12]!.id;
    collector.hold = (r) => hecEventIds(r.body).includes(marker);

    const startBridge = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
        env: { ...process.env, CAIRN_NATS_URL: server.url, CAIRN_SITE: site, CAIRN_HEC_URL: collector.url },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      h.onClose(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      await waitFor(() => {
        if (child.exitCode !== null) throw new Error(`bridge exited: ${out}`);
        return out.includes('ready');
      }, { timeoutMs: 30_000, what: 'the bridge process to start' });
      return child;
    };

    const received = () => collector.requests.flatMap((r) => hecEventIds(r.body));
    const first = await startBridge();
    await appendJob(log, events.slice(half)); // live, while the first bridge runs
    await waitFor(() => received().includes(marker), { timeoutMs: 20_000, what: 'the held batch' });
    const before = new Set(received());
    expect(before.size).toBeLessThan(events.length); // it stopped mid-stream
    first.kill('SIGKILL');
    await new Promise<void>((resolve) => (first.exitCode !== null || first.signalCode !== null ? resolve() : first.once('exit', () => resolve())));

    collector.hold = () => false;
    const second = await startBridge();
    await waitFor(() => new Set(received()).size === events.length, { timeoutMs: 30_000, what: 'every event after the restart' });

    const all = received();
    expect(new Set(all)).toEqual(new Set(events.map((e) => e.id)));
    // The held batch was sent again, with the same ids.
    expect(all.filter((id) => id === marker).length).toBeGreaterThanOrEqual(2);
    // A duplicate is the same event: every copy of an id carries the same body.
    const copies = new Map<string, Set<string>>();
    for (const r of collector.requests) {
      for (const line of r.body.split('\n').filter(Boolean)) {
        const o = JSON.parse(line) as { event: { id: string } };
        const set = copies.get(o.event.id) ?? new Set<string>();
        set.add(JSON.stringify(o.event));
        copies.set(o.event.id, set);
      }
    }
    for (const set of copies.values()) expect(set.size).toBe(1);
    second.kill('SIGTERM');
  }, 60_000);
});
