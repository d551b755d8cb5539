// The audit stream on a real JetStream: the bridge seals the log into the hash chain (also
// across a restart that re-sends everything), `readAuditChain` + `verifyChain` pass on the
// clean stream and name the exact record in a copy of the stream where one was removed,
// reordered or altered.
import { describe, expect, it } from 'vitest';
import { connect, headers } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { verifyChain, type ChainedRecord } from '@cairn/audit';
import { createJetStreamEventLog, NatsKvCheckpointStore, type Recorded } from '@cairn/eventlog';
import type { CairnEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { startAuditBridge } from './audit-bridge.service.ts';
import { auditStream, readAuditChain, type AuditStreamLocation } from './audit-chain.adapter.ts';
import { checkpointName } from './target-forwarder.ts';
import { appendJob, jobEvents } from './testing/job-events.ts';

describe('audit hash chain on JetStream', () => {
  const h = useHarness();

  it('seals the log once, verifies clean, and points at the tampered record in a copy', async () => {
    const site = 'site-c';
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    const store = await NatsKvCheckpointStore.open(nc, 'cairn_audit_test_c');
    const events: CairnEvent[] = [...jobEvents(site, 'c1', 'completed'), ...jobEvents(site, 'c2', 'failed')];
    await appendJob(log, events.slice(0, 6));
    const location = auditStream(site);
    const count = async () => (await (await jetstreamManager(nc)).streams.info(location.stream)).state.messages;

    const start = () => startAuditBridge({ nc, site, checkpointStore: store, targets: [{ kind: 'chain', name: 'chain', batch: { maxBatch: 3, maxDelayMs: 20 } }] });
    const first = await start();
    await waitFor(async () => (await count().catch(() => 0)) === 6, { what: 'six sealed records' });
    await first.close();
    // As after a crash before any checkpoint: everything is sent again; nothing is sealed twice.
    await store.reset(checkpointName('chain'));
    const second = await start();
    h.onClose(() => second.close());
    await appendJob(log, events.slice(6));
    await waitFor(async () => (await store.load(checkpointName('chain'))) === BigInt(events.length), { what: 'the checkpoint at the head' });
    expect(await count()).toBe(events.length);

    const chain = await readAuditChain(nc, location);
    expect(chain.map((r) => r.event.id)).toEqual(events.map((e) => e.id));
    const logged: Recorded[] = [];
    for await (const r of log.readAll()) logged.push(r);
    expect(chain.map((r) => r.position)).toEqual(logged.map((r) => r.position));
    expect(chain.map((r) => r.event)).toEqual(logged.map((r) => r.event));
    const clean = verifyChain(chain);
    expect(clean).toMatchObject({ ok: true, count: events.length });

    // A copy of the audit stream that allows deletes: remove one record there.
    const copy: AuditStreamLocation = { stream: 'AUDIT_COPY', subject: 'copy.audit.chain' };
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: copy.stream, subjects: [copy.subject] });
    const js = jetstream(nc);
    const copyRecords = async (records: readonly ChainedRecord<CairnEvent>[]) => {
      for (const r of records) {
        const hd = headers();
        hd.set('Cairn-Position', r.position.toString());
        hd.set('Cairn-Chain-Prev', r.prevHash);
        hd.set('Cairn-Chain-Hash', r.hash);
        await js.publish(copy.subject, JSON.stringify(r.event), { headers: hd });
      }
    };
    await copyRecords(chain);
    expect(verifyChain(await readAuditChain(nc, copy)).ok).toBe(true);
    await jsm.streams.deleteMessage(copy.stream, 4); // the 4th record
    const removed = verifyChain(await readAuditChain(nc, copy));
    expect(!removed.ok && removed.problem).toMatchObject({ kind: 'removed', position: chain[4]!.position, eventId: chain[4]!.event.id });

    // Altered (the JobFailed reason rewritten) and reordered, in memory.
    const altered = chain.map((r) => (r.event.type === 'JobFailed' ? { ...r, event: { ...r.event, data: { ...(r.event.data as object), reason: 'nothing to see' } } } : r));
    const a = verifyChain(altered);
    const failed = chain.find((r) => r.event.type === 'JobFailed')!;
    expect(!a.ok && a.problem).toMatchObject({ kind: 'altered', position: failed.position, eventId: failed.event.id });
    const reordered = [...chain.slice(0, 2), chain[3]!, chain[2]!, ...chain.slice(4)];
    const o = verifyChain(reordered);
    expect(!o.ok && o.problem).toMatchObject({ kind: 'reordered', index: 2, eventId: chain[3]!.event.id });
  }, 60_000);
});
