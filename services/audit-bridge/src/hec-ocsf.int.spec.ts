// HTTP targets against a loopback collector: Splunk HEC batches (auth, form, size limit),
// OCSF records over HTTP and to a file that validate against the documented class schema,
// and a collector that is down (then answering 503) for a few seconds: the bridge stops
// reading (bounded queue), retries with backoff, and afterwards every event has arrived.
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { connect } from '@nats-io/transport-node';
import { createJetStreamEventLog, NatsKvCheckpointStore } from '@cairn/eventlog';
import type { CairnEvent } from '@cairn/contracts';
import { startAuditBridge } from './audit-bridge.service.ts';
import { OcsfEntityManagement } from './ocsf.mapping.ts';
import { checkpointName } from './target-forwarder.ts';
import { useHarness, waitFor, hecEventIds, startHttpCollector } from '@cairn/testing';
import { appendJob, jobEvents } from './testing/job-events.ts';

interface HecObject { time: number; host: string; source: string; sourcetype: string; event: CairnEvent & { position: string } }

describe('audit bridge to HTTP collectors (HEC, OCSF)', () => {
  const h = useHarness();

  it('sends HEC batches and valid OCSF records, and loses nothing while the collector is down', async () => {
    const site = 'site-h';
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    const collector = await startHttpCollector();
    h.onClose(() => collector.stop());
    const file = join(await h.tmpDir(), 'ocsf.jsonl');
    const store = await NatsKvCheckpointStore.open(nc, 'cairn_audit_test_h');

    const events: CairnEvent[] = [...jobEvents(site, 'a', 'completed'), ...jobEvents(site, 'b', 'failed')];
    await appendJob(log, events);
    const batch = { maxBatch: 4, maxDelayMs: 50, queueSize: 3, minBackoffMs: 50, maxBackoffMs: 400 };
    const bridge = await startAuditBridge({
      nc, site, checkpointStore: store,
      targets: [
        { kind: 'hec', name: 'splunk', url: collector.url, token: 's3cr3t', host: 'cairn-1', batch },
        { kind: 'ocsf-http', name: 'ocsf', url: `${collector.url}/ocsf`, batch },
        { kind: 'ocsf-file', name: 'ocsf-file', path: file, batch },
      ],
    });
    h.onClose(() => bridge.close());

    const hec = () => collector.requests.filter((r) => r.path === '/services/collector/event' && r.status === 200);
    const ocsf = () => collector.requests.filter((r) => r.path === '/ocsf' && r.status === 200);
    const ids = (reqs: typeof collector.requests) => new Set(reqs.flatMap((r) => hecEventIds(r.body)));
    const ocsfIds = (lines: string[]) => new Set(lines.map((l) => (JSON.parse(l) as OcsfEntityManagement).metadata.uid));
    const ocsfLines = () => ocsf().flatMap((r) => r.body.split('\n').filter(Boolean));
    const fileLines = async () => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean);

    await waitFor(async () => ids(hec()).size === events.length && ocsfIds(ocsfLines()).size === events.length
      && ocsfIds(await fileLines()).size === events.length, { timeoutMs: 20_000, what: 'every event at every target' });

    // HEC form: path, token, batches of at most 4 objects with the documented fields.
    for (const r of hec()) {
      expect(r.headers['authorization']).toBe('Splunk s3cr3t');
      const objs = r.body.split('\n').map((l) => JSON.parse(l) as HecObject);
      expect(objs.length).toBeLessThanOrEqual(4);
      for (const o of objs) {
        const e = events.find((x) => x.id === o.event.id)!;
        expect(o).toMatchObject({ time: Date.parse(e.time) / 1000, host: 'cairn-1', source: `cairn:${site}`, sourcetype: 'cairn:event' });
        expect(o.event).toMatchObject({ type: e.type, actor: e.actor, data: e.data, correlationId: e.correlationId });
      }
    }
    expect(hec().some((r) => r.body.split('\n').length > 1)).toBe(true);

    // OCSF: every record (over HTTP and in the file) validates against the class schema.
    for (const line of [...ocsfLines(), ...(await fileLines())]) {
      const rec: unknown = JSON.parse(line);
      const errors = [...Value.Errors(OcsfEntityManagement, rec)].map((e) => `${e.path}: ${e.message}`);
      expect(errors).toEqual([]);
    }
    const failed = ocsfLines().map((l) => JSON.parse(l) as OcsfEntityManagement).find((r) => r.unmapped.cairn.type === 'JobFailed')!;
    expect(failed).toMatchObject({ class_uid: 3004, status: 'Failure', severity_id: 4, entity: { uid: 'job-b', type: 'job', name: 'b' } });
    const requested = ocsfLines().map((l) => JSON.parse(l) as OcsfEntityManagement).find((r) => r.unmapped.cairn.type === 'JobRequested')!;
    expect(requested).toMatchObject({ activity_id: 1, type_uid: 300401, actor: { user: { uid: 'alice@example.com' } } });

    // The collector goes away: the HEC and OCSF-HTTP targets fall behind, reading pauses at the
    // queue bound, their checkpoints stay; the file target carries on.
    await collector.stop();
    const more: CairnEvent[] = [];
    for (const j of ['c', 'd', 'e']) more.push(...jobEvents(site, j, j === 'd' ? 'failed' : 'completed'));
    const head = await appendJob(log, more);
    await waitFor(() => bridge.health().targets.find((t) => t.name === 'splunk')!.failures >= 2, { what: 'HEC failures while down' });
    await waitFor(async () => ocsfIds(await fileLines()).size === events.length + more.length, { what: 'file target unaffected' });
    for (const name of ['splunk', 'ocsf']) {
      const t = bridge.health().targets.find((x) => x.name === name)!;
      expect(t.queued).toBeLessThanOrEqual(3);
      expect(BigInt(t.checkpoint)).toBeLessThan(head);
    }
    expect(bridge.health().ok).toBe(false);
    await new Promise((r) => setTimeout(r, 2000)); // down for a while
    // Back, but busy at first.
    collector.answer = 503;
    await collector.start();
    await waitFor(() => collector.requests.some((r) => r.status === 503), { what: 'a 503 answer' });
    collector.answer = 200;

    const all = [...events, ...more];
    await waitFor(() => ids(hec()).size === all.length && ocsfIds(ocsfLines()).size === all.length, { timeoutMs: 20_000, what: 'every event after the outage' });
    expect([...ids(hec())].sort()).toEqual(all.map((e) => e.id).sort());
    await waitFor(async () => (await store.load(checkpointName('splunk'))) === head && (await store.load(checkpointName('ocsf'))) === head, { what: 'checkpoints at the head' });
    expect(bridge.health().ok).toBe(true);
  }, 60_000);
});
