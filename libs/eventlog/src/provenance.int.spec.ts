// Provenance in the JetStream log client against a real nats-server: a signing client's events
// pass a checking reader; a forged one (unsigned, or signed by an identity the writer table does
// not allow) is skipped by reads and subscriptions, reported once as a ProvenanceViolation naming
// the signer, and does not stop a checking writer from appending after it.
import { createUser } from '@nats-io/nkeys';
import { jetstream } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { eventSigningString, eventSubject, newEvent, type CairnEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';
import { auditLogProvenance, eventSignerFromSeed, startEventSigning, type EventSigner } from './provenance.ts';
import type { Recorded } from './event-log.port.ts';

const h = useHarness();
const site = 'prov-a';
const signer = (writer: string) => eventSignerFromSeed(writer, new TextDecoder().decode(createUser().getSeed()));

describe('event provenance in the JetStream client', () => {
  it('signs appends, skips and reports forged events, and lets a writer append after them', async () => {
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const [scheduler, mover, admin] = [signer('scheduler'), signer('data-mover'), signer('admin')];
    const keys = new Map([[scheduler.publicKey, 'scheduler'], [mover.publicKey, 'data-mover'], [admin.publicKey, 'admin']]);
    const plain = await JetStreamEventLog.open({ nc, site, provenance: {} });
    const asAdmin = await JetStreamEventLog.open({ nc, site, provenance: { signer: admin } });
    const cutover = await startEventSigning(asAdmin, { site, keys });
    expect(cutover).toBeGreaterThan(0n);
    const violations: string[] = [];
    const checking = (s: EventSigner) => JetStreamEventLog.open({ nc, site, provenance: { signer: s, verify: { keys, legacyBefore: cutover, detectedBy: s.writer, onViolation: (v) => violations.push(v.id) } } });
    const asScheduler = await checking(scheduler);
    const actor = { kind: 'service' as const, id: 'x' };
    const jobId = 'j1';
    const streamId = `job-${jobId}`;
    await asScheduler.append(streamId, [newEvent('JobRequested', { jobId, vmId: 'vm', policyId: null, mode: 'full', trigger: 'manual' }, { site, actor, streamId })], { expectedRevision: 'no_stream' });
    // A compromised data mover: the scheduler's kind, signed with its own key, and one unsigned.
    const forged = newEvent('JobCancelled', { jobId, reason: 'forged' }, { site, actor, streamId });
    const sig = Buffer.from(mover.sign(new TextEncoder().encode(eventSigningString(forged, 'data-mover', mover.publicKey)))).toString('base64url');
    const js = jetstream(nc);
    await js.publish(eventSubject(site, streamId), JSON.stringify({ ...forged, provenance: { writer: 'data-mover', publicKey: mover.publicKey, signature: sig } }), { msgID: forged.id });
    const bare = newEvent('JobCancelled', { jobId, reason: 'unsigned' }, { site, actor, streamId });
    await js.publish(eventSubject(site, streamId), JSON.stringify(bare), { msgID: bare.id });

    const read = async (): Promise<Recorded[]> => { const out: Recorded[] = []; for await (const r of asScheduler.readStream(streamId)) out.push(r); return out; };
    expect((await read()).map((r) => r.event.type)).toEqual(['JobRequested']);
    await waitFor(async () => violations.length === 2, { what: 'two violations recorded' });
    await read();
    expect(violations.length).toBe(2); // once per event and reader
    const reports: CairnEvent[] = [];
    for (const id of [forged.id, bare.id]) for await (const r of asScheduler.readStream(`provenance-${id}`)) reports.push(r.event);
    expect(reports.map((r) => (r.data as { signedBy: string | null; failure: string }))).toEqual([
      expect.objectContaining({ signedBy: 'data-mover', failure: 'not_permitted', detectedBy: 'scheduler' }),
      expect.objectContaining({ signedBy: null, failure: 'unsigned' }),
    ]);
    // The scheduler read the stream at revision 0 and appends after the forged events.
    await asScheduler.append(streamId, [newEvent('JobStarted', { jobId, attempt: 1 }, { site, actor, streamId })], { expectedRevision: 0n });
    const sub = asScheduler.subscribe({ from: 'start', category: 'job' });
    const seen: string[] = [];
    for await (const r of sub) { seen.push(r.event.type); if (seen.length === 2) break; }
    await sub.stop();
    expect(seen).toEqual(['JobRequested', 'JobStarted']);
    // A client without checks sees all four; the audit names the two forged ones.
    const all: string[] = [];
    for await (const r of plain.readStream(streamId)) all.push(r.event.type);
    expect(all).toEqual(['JobRequested', 'JobCancelled', 'JobCancelled', 'JobStarted']);
    const report = await auditLogProvenance(plain, keys);
    expect(report.refused.map((r) => r.eventId).sort()).toEqual([forged.id, bare.id].sort());
    expect(report.legacy).toBe(0);
  }, 60_000);
});
