// Event signatures and the writer table as a reader checks them (pure: no log).
import { createUser } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import { eventSigningString, newEvent, type CairnEvent } from '@cairn/contracts';
import { ProvenanceRefusedError, checkProvenance, eventSignerFromSeed, provenanceViolation, signEvent } from './provenance.ts';

const signer = (writer: string) => eventSignerFromSeed(writer, new TextDecoder().decode(createUser().getSeed()));
const gateway = signer('gateway');
const mover = signer('data-mover');
const admin = signer('admin');
const keys = new Map([[gateway.publicKey, 'gateway'], [mover.publicKey, 'data-mover'], [admin.publicKey, 'admin']]);
const site = 'site-a';
const userCreated = (): CairnEvent => newEvent('UserCreated', { userId: 'eve', roles: ['administrator'] }, { site, actor: { kind: 'user', id: 'admin' }, streamId: 'user-eve' });
/** What a compromised identity can do with its own key: sign anything, around the append path. */
const signByHand = (e: CairnEvent, s: ReturnType<typeof signer>, writer = s.writer): CairnEvent => ({
  ...e, provenance: { writer, publicKey: s.publicKey, signature: Buffer.from(s.sign(new TextEncoder().encode(eventSigningString(e, writer, s.publicKey)))).toString('base64url') },
});
const check = (e: CairnEvent, position = 10n, legacyBefore = 5n) => checkProvenance(e, position, { keys, legacyBefore });

describe('event provenance', () => {
  it('an event signed by a writer the table allows passes, naming the writer', () => {
    expect(check(signEvent(userCreated(), gateway))).toEqual({ ok: true, writer: 'gateway', legacy: false });
  });

  it('the append path refuses a kind the writer may not emit', () => {
    expect(() => signEvent(userCreated(), mover)).toThrow(ProvenanceRefusedError);
  });

  it('a kind the signer may not write is refused, naming the identity whose key signed it', () => {
    // A compromised data mover signing by hand, around the append path.
    expect(check(signByHand(userCreated(), mover))).toMatchObject({ ok: false, failure: 'not_permitted', signedBy: 'data-mover' });
    expect(check(signByHand(userCreated(), mover, 'gateway'))).toMatchObject({ ok: false, failure: 'writer_mismatch', signedBy: 'data-mover' });
    const forged = { ...signEvent(newEvent('JobFailed', { jobId: 'j', phase: 'transfer', reason: 'x', retryable: false }, { site, actor: { kind: 'service', id: 'm' }, streamId: 'job-j' }), mover), type: 'UserCreated' } as CairnEvent;
    expect(check(forged)).toMatchObject({ ok: false, failure: 'bad_signature', signedBy: 'data-mover' });
    const claimed = signEvent(userCreated(), gateway);
    const asMover = { ...claimed, provenance: { ...claimed.provenance!, publicKey: mover.publicKey } };
    expect(check(asMover)).toMatchObject({ ok: false, failure: 'bad_signature', signedBy: 'data-mover' });
  });

  it('writer named differently from the key, unknown keys, altered events, unsigned events after the cut-over are refused', () => {
    const signed = signEvent(userCreated(), gateway);
    const outsider = signer('gateway');
    expect(check(signEvent(userCreated(), outsider))).toMatchObject({ ok: false, failure: 'unknown_key', signedBy: null });
    expect(check({ ...signed, data: { userId: 'eve', roles: ['administrator', 'auditor'] } } as CairnEvent)).toMatchObject({ ok: false, failure: 'bad_signature', signedBy: 'gateway' });
    const adminAsGateway = signEvent(userCreated(), admin);
    const relabelled = { ...adminAsGateway, provenance: { ...adminAsGateway.provenance!, writer: 'gateway' } };
    expect(check(relabelled)).toMatchObject({ ok: false, failure: 'bad_signature' });
    expect(check(userCreated(), 10n, 5n)).toMatchObject({ ok: false, failure: 'unsigned', signedBy: null });
    expect(check(userCreated(), 10n, 0n)).toMatchObject({ ok: false, failure: 'unsigned' });
  });

  it('admin (the operator) may bootstrap a user but never write an approval or a token', () => {
    expect(check(signEvent(userCreated(), admin))).toMatchObject({ ok: true, writer: 'admin' });
    const grant = newEvent('ApprovalGranted', { approvalId: '0b9e4bd4-4a3f-4e6c-9d49-b0f59d3f8c11', approvedBy: 'bob' }, { site, actor: { kind: 'user', id: 'bob' }, streamId: 'approval-0b9e4bd4-4a3f-4e6c-9d49-b0f59d3f8c11' });
    expect(() => signEvent(grant, admin)).toThrow(ProvenanceRefusedError);
  });

  it('unsigned events before the recorded cut-over are legacy', () => {
    expect(check(userCreated(), 4n, 5n)).toEqual({ ok: true, writer: null, legacy: true });
  });

  it('a violation report has one id per event and reader', () => {
    const e = userCreated();
    const v = check(e);
    if (v.ok) throw new Error('expected a refusal');
    const a = provenanceViolation(e, 10n, v, { site, detectedBy: 'gateway' });
    const b = provenanceViolation(e, 10n, v, { site, detectedBy: 'gateway' });
    const c = provenanceViolation(e, 10n, v, { site, detectedBy: 'catalogue' });
    expect(a.id).toBe(b.id);
    expect(a.id).not.toBe(c.id);
    expect(a).toMatchObject({ type: 'ProvenanceViolation', streamId: `provenance-${e.id}`, data: { eventId: e.id, failure: 'unsigned', detectedBy: 'gateway', claimedActor: 'user:admin' } });
  });
});

describe('native ed25519 for nkeys', () => {
  it('signs and verifies exactly as nkeys does, both ways', async () => {
    const { fromPublic, fromSeed } = await import('@nats-io/nkeys');
    const { nativeSigner, verifyNkeySignature } = await import('./ed25519.ts');
    const seed = new TextDecoder().decode(createUser().getSeed());
    const kp = fromSeed(new TextEncoder().encode(seed));
    const native = nativeSigner(seed);
    expect(native.publicKey).toBe(kp.getPublicKey());
    const data = new TextEncoder().encode('cairn-event-v2\n{"a":1}');
    expect(Buffer.from(native.sign(data))).toEqual(Buffer.from(kp.sign(data)));
    expect(fromPublic(kp.getPublicKey()).verify(data, native.sign(data))).toBe(true);
    expect(verifyNkeySignature(kp.getPublicKey(), data, kp.sign(data))).toBe(true);
    expect(verifyNkeySignature(kp.getPublicKey(), new TextEncoder().encode('other'), kp.sign(data))).toBe(false);
    expect(verifyNkeySignature('not-a-key', data, kp.sign(data))).toBe(false);
  });
});
