// Two writers racing on one stream through their deciders, on real JetStream: each decides on
// the same revision, both append expecting it, exactly one wins. The loser either finds, on
// reading the stream again, that nothing is left to do, or is refused; nothing is written twice.
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import type { KnownEvent, Policy } from '@cairn/contracts';
import { useHarness } from '@cairn/testing';
import { ApprovalRefused, approvalDecider, jobDecider, policyDecider, initialJobState, PolicyInvalidError, tokenDecider, userDecider, UserRefused } from '@cairn/jobs';
import { handleCommand } from './decider.ts';
import { WrongExpectedRevisionError } from './errors.ts';
import { JetStreamEventLog } from './jetstream-event-log.adapter.ts';

const h = useHarness();
const meta = { site: 'race', actor: { kind: 'service' as const, id: 'racer' } };

async function twoWriters() {
  const server = await h.nats();
  const logs = [];
  for (let i = 0; i < 2; i++) {
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    logs.push(await JetStreamEventLog.open({ nc, site: 'race' }));
  }
  return logs as [JetStreamEventLog, JetStreamEventLog];
}

async function types(log: JetStreamEventLog, streamId: string): Promise<string[]> {
  const out: KnownEvent[] = [];
  for await (const r of log.readStream(streamId)) out.push(r.event);
  return out.map((e) => e.type);
}

describe('two writers race on one stream (real JetStream)', () => {
  it('job stream: two schedulers start the same job; one JobStarted, the other finds it started', async () => {
    const [a, b] = await twoWriters();
    const requested = await handleCommand(a, 'job-j1', jobDecider, { kind: 'request', data: { jobId: 'j1', vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' } }, { meta, known: { state: initialJobState(), revision: -1n } });
    const known = { state: requested.state, revision: requested.revision };
    const results = await Promise.all([a, b].map((log, i) => handleCommand(log, 'job-j1', jobDecider, { kind: 'start', snapshotId: `snap-${i}` }, { meta, known })));
    expect(results.filter((r) => r.events.length > 0)).toHaveLength(1);
    expect(results.filter((r) => r.events.length === 0 && r.retries === 1)).toHaveLength(1);
    expect(await types(a, 'job-j1')).toEqual(['JobRequested', 'JobStarted']);
  });

  it('job stream: a coordinator recording a view races a cancel on the same revision: exactly one append expecting it lands', async () => {
    const [a, b] = await twoWriters();
    const r0 = await handleCommand(a, 'job-j2', jobDecider, { kind: 'request', data: { jobId: 'j2', vmId: 'vm1', policyId: null, mode: 'auto', trigger: 'manual' } }, { meta });
    const r1 = await handleCommand(a, 'job-j2', jobDecider, { kind: 'start', snapshotId: 's2' }, { meta, known: { state: r0.state, revision: r0.revision } });
    const known = { state: r1.state, revision: r1.revision };
    const taken = { jobId: 'j2', snapshotId: 's2', nbd: { socket: '/x', exports: [{ disk: 'd0', exportName: 'e', sizeBytes: 1, mode: 'full' as const, reason: 'first' }] } };
    // Without retries: exactly one append expecting that revision succeeds.
    const settled = await Promise.allSettled([
      handleCommand(a, 'job-j2', jobDecider, { kind: 'recordSnapshot', data: taken }, { meta, known, maxRetries: 0 }),
      handleCommand(b, 'job-j2', jobDecider, { kind: 'cancel', reason: 'operator' }, { meta, known, maxRetries: 0 }),
    ]);
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const lost = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(WrongExpectedRevisionError);
    expect((await types(a, 'job-j2')).slice(2)).toHaveLength(1);
  });

  it('policy stream: two creates of one policy id; one PolicyCreated, the other refused as a conflict', async () => {
    const [a, b] = await twoWriters();
    const policy: Policy = {
      policyId: 'p1', name: 'nightly', selector: { names: ['web'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
      retention: { last: 2, daily: 7, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'default', priority: 0,
    };
    const known = { state: policyDecider.initialState(), revision: -1n };
    const settled = await Promise.allSettled([a, b].map((log, i) => handleCommand(log, 'policy-p1', policyDecider, {
      kind: 'create', policy: { ...policy, name: `nightly-${i}` }, knownRepositories: ['default'],
    }, { meta, known })));
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const lost = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(PolicyInvalidError);
    expect((lost.reason as PolicyInvalidError).code).toBe('conflict');
    expect(await types(a, 'policy-p1')).toEqual(['PolicyCreated']);
  });

  it('policy stream: two updates decided on the same revision without retries; exactly one lands', async () => {
    const [a, b] = await twoWriters();
    const policy: Policy = {
      policyId: 'p2', name: 'nightly', selector: { names: ['web'] }, schedule: { cron: '0 2 * * *', timezone: 'UTC' },
      retention: { last: 2, daily: 7, weekly: 0, monthly: 0, yearly: 0 }, repository: 'default', keyRef: 'default', priority: 0,
    };
    const created = await handleCommand(a, 'policy-p2', policyDecider, { kind: 'create', policy, knownRepositories: ['default'] }, { meta });
    const known = { state: created.state, revision: created.revision };
    const settled = await Promise.allSettled([a, b].map((log, i) => handleCommand(log, 'policy-p2', policyDecider, {
      kind: 'update', policy: { ...policy, priority: i + 1 }, knownRepositories: ['default'],
    }, { meta, known, maxRetries: 0 })));
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    expect((settled.find((s) => s.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedRevisionError);
    expect(await types(a, 'policy-p2')).toEqual(['PolicyCreated', 'PolicyUpdated']);
  });

  it('user stream: two gateways create the same user at once; one UserCreated, the other refused as a conflict', async () => {
    const [a, b] = await twoWriters();
    const context = { endorsementRequired: false, otherEnabledAdministrators: 1 };
    const settled = await Promise.allSettled([a, b].map((log, i) => handleCommand(log, 'user-ann', userDecider, {
      kind: 'create', userId: 'ann', roles: [i === 0 ? 'operator' : 'auditor'], context,
    }, { meta, known: { state: userDecider.initialState(), revision: -1n } })));
    expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    const lost = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(UserRefused);
    expect((lost.reason as UserRefused).code).toBe('conflict');
    expect(await types(a, 'user-ann')).toEqual(['UserCreated']);
    // Two revocations of one token decided on the same revision: one TokenRevoked, the other finds it revoked.
    const issued = await handleCommand(a, 'token-t1', tokenDecider, {
      kind: 'issue', tokenId: 't1', userId: 'ann', name: 'x', tokenSha256: 'a'.repeat(64), expiresAt: null, user: { exists: true, roles: ['operator'], disabled: false, keys: [] },
    }, { meta });
    const revokes = await Promise.all([a, b].map((log) => handleCommand(log, 'token-t1', tokenDecider, { kind: 'revoke' }, { meta, known: { state: issued.state, revision: issued.revision } })));
    expect(revokes.filter((r) => r.events.length === 1)).toHaveLength(1);
    expect(await types(a, 'token-t1')).toEqual(['TokenIssued', 'TokenRevoked']);
  });

  it('approval stream: two administrators approve at once; exactly one ApprovalGranted, the other refused (not pending) or conflicting', async () => {
    const [a, b] = await twoWriters();
    const check = { required: false, now: new Date() };
    const requested = await handleCommand(a, 'approval-ap1', approvalDecider, {
      kind: 'request', approvalId: 'ap1', action: { kind: 'delete-restore-point', restorePointId: 'rp1' }, requestedBy: 'ann', check,
    }, { meta });
    const known = { state: requested.state, revision: requested.revision };
    // Without retries: one append expecting the revision lands, the other conflicts.
    const raced = await Promise.allSettled([a, b].map((log, i) => handleCommand(log, 'approval-ap1', approvalDecider, { kind: 'grant', approvedBy: i === 0 ? 'bob' : 'carl', check }, { meta, known, maxRetries: 0 })));
    expect(raced.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    expect((raced.find((s) => s.status === 'rejected') as PromiseRejectedResult).reason).toBeInstanceOf(WrongExpectedRevisionError);
    // With retries: the loser reads the stream again and is refused, the approval is no longer pending.
    const again = await Promise.allSettled([a, b].map((log, i) => handleCommand(log, 'approval-ap1', approvalDecider, { kind: 'reject', rejectedBy: i === 0 ? 'bob' : 'carl', check }, { meta, known })));
    expect(again.every((s) => s.status === 'rejected' && s.reason instanceof ApprovalRefused && s.reason.code === 'conflict')).toBe(true);
    expect(await types(a, 'approval-ap1')).toEqual(['ApprovalRequested', 'ApprovalGranted']);
  });
});
