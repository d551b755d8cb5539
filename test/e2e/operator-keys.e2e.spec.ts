// Signed operator commands on a secure site (docs/security.md, "How commands sent over NATS are
// authenticated"): CLI commands go straight to NATS, so each carries an ed25519 signature by the
// person's operator key, checked by the service against the user's keys and roles in the log.
// `cairn up` made a key for the local operator, so the CLI works without flags; a person with
// their own key runs a backup that records them; unsigned, forged, stale and revoked-key
// commands and commands outside a role are refused with AccessDenied; a replay in the window
// runs nothing twice; the gateway's commands (it authenticated the person) keep working. An
// insecure site runs unsigned commands and marks the unverified name `authenticated: false`.
import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { createUser } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { CommandBus } from '@cairn/messaging';
import { signCommand, signerFromSeed } from '@cairn/command-auth';
import { identityConnectOptions } from '@cairn/nats-security';
import { commandSubject, type Command, type CommandReply, type KnownEvent } from '@cairn/contracts';
import { startDemoVm, startStack } from '@cairn/cli';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

describe('signed operator commands on a secure site (real NATS with TLS and identities, real QEMU)', () => {
  const h = useHarness();

  it('the CLI signs with operator keys; services check key, freshness and role, and record refusals', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-opkeys-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], secure: true, operator: { kind: 'user', id: 'local-op' } });
    h.onClose(() => stack.stop());
    const site = stack.site;
    const catalogue = new CatalogueClient(stack.nc, { site });
    const vmId = await waitFor(async () => (await catalogue.query('vm.list', {})).items.find((v) => v.name === 'demo')?.vmId, { what: 'demo VM in the catalogue' });
    const d = ['--data', dataDir];
    const events = async (): Promise<KnownEvent[]> => {
      const out: KnownEvent[] = [];
      for await (const r of stack.log.readAll()) out.push(r.event as KnownEvent);
      return out;
    };
    const denied = async () => (await events()).filter((e): e is Extract<KnownEvent, { type: 'AccessDenied' }> => e.type === 'AccessDenied');

    // 1. `cairn up` made user local-op (administrator) and its key; the CLI uses it with no flag.
    const state = JSON.parse(await readFile(join(dataDir, 'stack.json'), 'utf8')) as { operator: { userId: string; keyFile: string } };
    expect(state.operator.userId).toBe('local-op');
    expect((await stat(state.operator.keyFile)).mode & 0o777).toBe(0o600);
    const first = await cli([...d, '--json', 'backup', 'demo']);
    expect(first.code, first.stderr).toBe(0);
    const firstJob = await waitForJobEnd(catalogue, (JSON.parse(first.stdout) as { jobId: string }).jobId, 180_000);
    expect(firstJob.state).toBe('completed');

    // 2. People and their keys, through the gateway like every `cairn user` command.
    for (const [user, role] of [['alice', 'operator'], ['audrey', 'auditor'], ['rita', 'restore-operator']] as const) {
      const r = await cli([...d, 'user', 'add', user, '--role', role]);
      expect(r.code, r.stderr).toBe(0);
    }
    const keyFile = (u: string) => join(dataDir, `${u}.key`);
    const keys: Record<string, string> = {};
    for (const u of ['alice', 'audrey', 'rita']) {
      const r = await cli([...d, '--json', 'user', 'key', 'add', u, '--out', keyFile(u)]);
      expect(r.code, r.stderr).toBe(0);
      keys[u] = (JSON.parse(r.stdout) as { publicKey: string }).publicKey;
      expect((await stat(keyFile(u))).mode & 0o777).toBe(0o600);
    }
    // The seed is only in the file: not in the log, not on the command's output.
    const seedOf = async (u: string) => (JSON.parse(await readFile(keyFile(u), 'utf8')) as { seed: string }).seed;
    const logText = JSON.stringify(await events());
    for (const u of ['alice', 'audrey', 'rita']) expect(logText).not.toContain(await seedOf(u));
    expect(logText).toContain(keys['alice']);

    // 3. Alice (operator) backs up with her key: the job records her as the one who asked.
    const byAlice = await cli([...d, '--operator-key', keyFile('alice'), '--json', 'backup', 'demo']);
    expect(byAlice.code, byAlice.stderr).toBe(0);
    const aliceJob = await waitForJobEnd(catalogue, (JSON.parse(byAlice.stdout) as { jobId: string }).jobId, 180_000);
    expect(aliceJob.state).toBe('completed');
    const requested = (await events()).find((e) => e.type === 'JobRequested' && e.streamId === `job-${aliceJob.jobId}`);
    expect(requested?.actor).toEqual({ kind: 'user', id: 'alice' });
    // CAIRN_OPERATOR_KEY works the same.
    const viaEnv = await cli([...d, '--json', 'backup', 'demo'], { CAIRN_OPERATOR_KEY: keyFile('alice') });
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    await waitForJobEnd(catalogue, (JSON.parse(viaEnv.stdout) as { jobId: string }).jobId, 180_000);

    // 4. The auditor's key cannot start a backup (the 403 of the command path).
    const byAuditor = await cli([...d, '--operator-key', keyFile('audrey'), 'backup', 'demo']);
    expect(byAuditor.code).toBe(7);
    expect(byAuditor.stderr).toMatch(/RequestBackup needs permission backup; user audrey has roles auditor/);
    expect(await denied()).toContainEqual(expect.objectContaining({
      actor: { kind: 'user', id: 'audrey' }, data: expect.objectContaining({ userId: 'audrey', roles: ['auditor'], operation: 'RequestBackup', needed: 'backup', method: 'NATS' }),
    }));

    // 5. The restore operator restores, and cannot delete (needs admin, before any four-eyes check).
    const target = join(dataDir, 'restores', 'restored-by-rita.raw');
    const restored = await cli([...d, '--operator-key', keyFile('rita'), 'restore', aliceJob.restorePointId!, '--to', target]);
    expect(restored.code, restored.stderr).toBe(0);
    const diskRestored = await waitFor(async () => (await events()).find((e) => e.type === 'DiskRestored' && e.data.path === target), { what: 'DiskRestored' });
    expect(diskRestored.actor).toEqual({ kind: 'user', id: 'rita' });
    const rita = signerFromSeed(await seedOf('rita'));
    const ritaBus = new CommandBus(stack.nc, { site, actor: { kind: 'user', id: 'rita' }, signer: rita });
    const del = await ritaBus.send('data-mover', 'DeleteRestorePoint', { restorePointId: aliceJob.restorePointId!, approvalId: randomUUID() });
    expect(del).toMatchObject({ accepted: false, error: { code: 'forbidden', message: expect.stringMatching(/needs permission admin/) } });
    expect((await stack.repository.listRestorePoints()).map((p) => p.id)).toContain(aliceJob.restorePointId);

    // 6. Straight over NATS as the admin identity: unsigned, forged, stale. None runs.
    const admin = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(stack.security!.credentials('admin')) });
    h.onClose(() => admin.close());
    const jobsBefore = (await catalogue.query('job.list', { limit: 500 })).items.length;
    const unsigned = await new CommandBus(admin, { site, actor: { kind: 'user', id: 'alice' } }).send('scheduler', 'RequestBackup', { vmId, mode: 'full' });
    expect(unsigned).toMatchObject({ accepted: false, error: { code: 'unauthenticated', message: expect.stringMatching(/not signed/) } });
    const mallory = signerFromSeed(new TextDecoder().decode(createUser().getSeed()));
    const forged = await new CommandBus(admin, { site, actor: { kind: 'user', id: 'alice' }, signer: mallory }).send('scheduler', 'RequestBackup', { vmId, mode: 'full' });
    expect(forged).toMatchObject({ accepted: false, error: { code: 'unauthenticated', message: expect.stringMatching(/not a current key of user alice/) } });
    const claimsService = await new CommandBus(admin, { site, actor: { kind: 'service', id: `scheduler@${site}` }, signer: signerFromSeed(await seedOf('alice')) })
      .send('scheduler', 'RequestBackup', { vmId, mode: 'full' });
    expect(claimsService).toMatchObject({ accepted: false, error: { code: 'unauthenticated', message: expect.stringMatching(/not signed by a service identity/) } });
    const alice = signerFromSeed(await seedOf('alice'));
    const raw = (name: string, payload: unknown): Command => ({
      id: randomUUID(), name, schemaVersion: 1, idempotencyKey: randomUUID(), actor: { kind: 'user', id: 'alice' }, site, time: new Date().toISOString(), payload,
    });
    const send = async (c: Command) => (await admin.request(commandSubject(site, 'scheduler', c.name), JSON.stringify(c), { timeout: 15_000 })).json<CommandReply>();
    const stale = await send(signCommand(raw('RequestBackup', { vmId, mode: 'full' }), alice, new Date(Date.now() - 10 * 60_000)));
    expect(stale).toMatchObject({ accepted: false, error: { code: 'unauthenticated', message: expect.stringMatching(/stale or replayed/) } });
    // A replay within the window is the same signed command: answered from the first reply, one job.
    const once = signCommand(raw('RequestBackup', { vmId, mode: 'full' }), alice);
    const [r1, r2] = [await send(once), await send(once)];
    expect(r1.accepted).toBe(true);
    expect(r2).toEqual(r1);
    await waitForJobEnd(catalogue, (r1 as { result: { jobId: string } }).result.jobId, 180_000);
    expect((await catalogue.query('job.list', { limit: 500 })).items.length).toBe(jobsBefore + 1);
    // Someone else's name without a key: the CLI sends unsigned and gets a clear refusal.
    const bob = await cli([...d, 'backup', 'demo'], { CAIRN_USER: 'bob' });
    expect(bob.code).toBe(7);
    expect(bob.stderr).toMatch(/not signed: this site accepts only signed commands.*--operator-key/);

    // 7. A revoked key stops working at the next command.
    const revoke = await cli([...d, 'user', 'key', 'revoke', 'alice', keys['alice']!]);
    expect(revoke.code, revoke.stderr).toBe(0);
    const afterRevoke = await cli([...d, '--operator-key', keyFile('alice'), 'backup', 'demo']);
    expect(afterRevoke.code).toBe(7);
    expect(afterRevoke.stderr).toMatch(/is not a current key of user alice \(never added, or revoked\)/);

    const needs = (await denied()).map((e) => `${e.data.userId}:${e.data.needed}`);
    for (const n of ['audrey:backup', 'rita:admin', 'alice:signature', 'alice:current-key', `scheduler@${site}:service-signature`, 'alice:fresh-signature', 'bob:signature']) {
      expect(needs).toContain(n);
    }
    // Unauthenticated claims are recorded by the service that refused them, not as the person.
    expect((await denied()).find((e) => e.data.needed === 'signature' && e.data.userId === 'alice')?.actor).toEqual({ kind: 'service', id: `scheduler@${site}` });

    // 8. The gateway authenticates people itself; its commands (signed with its identity) run.
    const token = (await readFile(join(dataDir, 'secrets', 'api.token'), 'utf8')).trim();
    const viaApi = await fetch(`${stack.gatewayUrl}/v1/backups`, {
      method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ vmId }),
    });
    expect(viaApi.status, await viaApi.clone().text()).toBe(202);
    const apiJob = await waitForJobEnd(catalogue, ((await viaApi.json()) as { jobId: string }).jobId, 180_000);
    expect(apiJob.state).toBe('completed');
    expect((await events()).find((e) => e.type === 'JobRequested' && e.streamId === `job-${apiJob.jobId}`)?.actor).toEqual({ kind: 'user', id: 'admin' });

    // 9. `--operator-key alice.key restore-point delete` with the bootstrap token (admin's): the
    // request is signed as Alice, so it is refused, and nothing is requested in admin's name.
    const approvalsBefore = (await events()).filter((e) => e.type === 'ApprovalRequested').length;
    const mixed = await cli([...d, '--operator-key', keyFile('alice'), '--json', 'restore-point', 'delete', aliceJob.restorePointId!, '--reason', 'mixed']);
    expect(mixed.code, mixed.stdout + mixed.stderr).toBe(7);
    expect((await events()).filter((e) => e.type === 'ApprovalRequested')).toHaveLength(approvalsBefore);

    // No service stepped outside its NATS permissions for any of it (AccessDenied appends included).
    const serverLog = await readFile(stack.nats!.logFile, 'utf8');
    expect(serverLog.split('\n').filter((l) => /Violation/i.test(l))).toEqual([]);
  }, 900_000);

  it('an insecure site runs unsigned commands but records the unverified name as authenticated: false', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-opkeys-insecure-');
    const stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    expect(stack.operator).toBeUndefined();
    const d = ['--data', dataDir];
    const policyBy = async (name: string) => waitFor(async () => {
      for await (const r of stack.log.readAll()) {
        const e = r.event as KnownEvent;
        if (e.type === 'PolicyCreated' && e.data.name === name) return e;
      }
      return undefined;
    }, { what: `PolicyCreated ${name}` });
    const create = (name: string, args: string[] = [], env: Record<string, string> = {}) =>
      cli([...d, ...args, 'policy', 'create', '--name', name, '--vm', 'demo', '--cron', '0 2 * * *', '--timezone', 'UTC'], env);
    const claimed = await create('claimed', [], { CAIRN_USER: 'mallory' });
    expect(claimed.code, claimed.stderr).toBe(0);
    expect((await policyBy('claimed')).actor).toEqual({ kind: 'user', id: 'mallory', authenticated: false });
    // With a current key of the user, the same site records the person as authenticated.
    expect((await cli([...d, 'user', 'add', 'olga', '--role', 'operator'])).code).toBe(0);
    const keyFile = join(dataDir, 'olga.key');
    expect((await cli([...d, 'user', 'key', 'add', 'olga', '--out', keyFile])).code).toBe(0);
    const signed = await create('signed', ['--operator-key', keyFile]);
    expect(signed.code, signed.stderr).toBe(0);
    expect((await policyBy('signed')).actor).toEqual({ kind: 'user', id: 'olga' });
  }, 300_000);
});
