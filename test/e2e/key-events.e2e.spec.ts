// Repository key operations are security events with the person who did them: `cairn repo init`,
// `cairn repo key rotate` and `cairn repo key export-recovery` (the real CLI in a child process)
// record RepositoryInitialized, RepositoryKeyRotated and RecoveryKeyExported in the site's log at
// once when a stack is reachable; done offline, they wait in the repository's key journal and
// the data mover publishes them when it starts, exactly once (also after a restart, also with
// two movers at once). `cairn audit --kind/--actor/--stream` finds them; the audit bridge hands
// them to a SIEM (OCSF); no passphrase, key or recovery key appears in any event, output or log.
// Real nats-server, JetStream log, catalogue, data movers, audit bridge, directory repositories.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { KnownEvent } from '@cairn/contracts';
import { createJetStreamEventLog, type JetStreamEventLog } from '@cairn/eventlog';
import { DirectoryBackend, decodeRecoveryKey, openRepository, type Repository } from '@cairn/repository';
import { useHarness, waitFor } from '@cairn/testing';
import { startCatalogue } from '@cairn/catalogue';
import { startDataMover, type RunningDataMover } from '@cairn/data-mover';
import { startAuditBridge, type OcsfEntityManagement } from '@cairn/audit-bridge';
import { pino } from 'pino';
import { cli, type CliResult } from './e2e-helpers.ts';

const site = 'site-keys';
const h = useHarness();
const PASS_1 = 'first passphrase, long enough 7c1e';
const PASS_2 = 'second passphrase, rotated in 9b4d';
let nc: NatsConnection;
let natsUrl: string;
let log: JetStreamEventLog;
let base: string;
let ocsfFile: string;
/** Everything the services logged (pino JSON lines), to look for secrets in. */
let serviceLog = '';
const cliOutput: string[] = [];
const logger = pino({ level: 'info' }, new Writable({ write(chunk: Buffer, _enc, done) { serviceLog += chunk.toString('utf8'); done(); } }));

beforeAll(async () => {
  base = await h.tmpDir('cairn-key-events-');
  const nats = await h.nats();
  natsUrl = nats.url;
  nc = await connect({ servers: natsUrl });
  h.onClose(() => nc.drain());
  log = await createJetStreamEventLog({ nc, site });
  h.onClose(() => log.close());
  const catalogue = await startCatalogue({ nc, site, dataDir: ':memory:', log, logger });
  h.onClose(() => catalogue.close());
  ocsfFile = join(base, 'ocsf.jsonl');
  const bridge = await startAuditBridge({ nc, site, logger, targets: [{ kind: 'chain', name: 'chain' }, { kind: 'ocsf-file', name: 'ocsf', path: ocsfFile }] });
  h.onClose(() => bridge.close());
}, 60_000);

/** `cairn` with the operator `user`; online (the site's NATS) or offline (no Cairn reachable). */
async function cairn(args: string[], o: { user: string; online: boolean; env?: Record<string, string> }): Promise<CliResult> {
  const where = o.online ? ['--nats', natsUrl, '--site', site] : ['--data', join(base, 'no-stack')];
  const r = await cli(['--json', ...where, ...args], { CAIRN_USER: o.user, CAIRN_NATS_URL: '', ...o.env });
  cliOutput.push(r.stdout, r.stderr);
  return r;
}

async function streamEvents(streamId: string): Promise<KnownEvent[]> {
  const out: KnownEvent[] = [];
  for await (const r of log.readStream(streamId)) out.push(r.event);
  return out;
}

async function mover(repo: Repository): Promise<RunningDataMover> {
  const m = await startDataMover({ nc, log, site, repositories: new Map([['default', repo]]), restoreRoots: [base], logger, runDir: join(base, `run-${Math.random().toString(36).slice(2, 8)}`) });
  return m;
}

async function openWith(dir: string, passphrase: string): Promise<Repository> {
  const repo = await openRepository(new DirectoryBackend(dir), { passphrase });
  h.onClose(() => repo.close());
  return repo;
}

/** init, rotate to PASS_2, export the recovery key: the three acts, by `user`. */
async function threeActs(dir: string, user: string, online: boolean): Promise<{ repositoryId: string; outputs: Array<Record<string, unknown>>; recoveryFile: string }> {
  const passFile = join(base, `pass2-${user}`);
  await writeFile(passFile, PASS_2 + '\n', { mode: 0o600 });
  const recoveryFile = join(base, `recovery-${user}.txt`);
  const runs = [
    await cairn(['repo', 'init', '--repo', dir], { user, online, env: { CAIRN_REPO_PASSPHRASE: PASS_1 } }),
    await cairn(['repo', 'key', 'rotate', '--repo', dir, '--new-passphrase-file', passFile], { user, online, env: { CAIRN_REPO_PASSPHRASE: PASS_1 } }),
    await cairn(['repo', 'key', 'export-recovery', '--repo', dir, '--out', recoveryFile], { user, online, env: { CAIRN_REPO_PASSPHRASE: PASS_2 } }),
  ];
  for (const r of runs) expect(r.code, r.stderr).toBe(0);
  const outputs = runs.map((r) => JSON.parse(r.stdout) as Record<string, unknown>);
  return { repositoryId: outputs[0]!['repositoryId'] as string, outputs, recoveryFile };
}

describe('repository key operations in the audit trail', () => {
  let onlineRepo = '';

  it('online: init, rotate and export-recovery are in the log at once, with the operator as actor, and in `cairn audit`', async () => {
    const dir = join(base, 'repo-online');
    const { repositoryId, outputs } = await threeActs(dir, 'alice', true);
    onlineRepo = repositoryId;
    for (const o of outputs) expect(o['event']).toMatchObject({ recorded: 'event-log', actor: 'user:alice', site });
    const events = await streamEvents(`repository-${repositoryId}`);
    expect(events.map((e) => e.type)).toEqual(['RepositoryInitialized', 'RepositoryKeyRotated', 'RecoveryKeyExported']);
    expect(events.map((e) => e.id)).toEqual(outputs.map((o) => (o['event'] as { eventId: string }).eventId));
    for (const e of events) expect(e.actor).toEqual({ kind: 'user', id: 'alice' });
    const [init, rotated, exported] = events;
    expect(init).toMatchObject({ data: { repositoryId, wrapping: 'passphrase', chunkSize: 262144 } });
    expect(rotated).toMatchObject({ data: { repositoryId, wrapping: 'passphrase', openedWith: 'passphrase', keyId: outputs[1]!['keyId'] } });
    expect(rotated!.type === 'RepositoryKeyRotated' && init!.type === 'RepositoryInitialized' && rotated!.data.previousKeyIds).toEqual([init!.type === 'RepositoryInitialized' ? init!.data.keyId : '']);
    expect(exported).toMatchObject({ data: { repositoryId, fingerprint: outputs[2]!['fingerprint'], openedWith: 'passphrase', file: join(base, 'recovery-alice.txt') } });

    // The data mover opening this repository finds its journal already in the log: nothing twice.
    const m = await mover(await openWith(dir, PASS_2));
    await m.close();
    expect((await streamEvents(`repository-${repositoryId}`)).map((e) => e.id)).toEqual(events.map((e) => e.id));

    // `cairn audit` by kind and actor, and by the repository's stream.
    const byKind = await waitFor(async () => {
      const r = await cairn(['audit', '--kind', 'RepositoryKeyRotated', '--actor', 'alice'], { user: 'auditor', online: true });
      const items = JSON.parse(r.stdout) as Array<{ eventId: string; type: string; actor: { id: string } }>;
      return items.length > 0 ? items : undefined;
    }, { timeoutMs: 30_000, intervalMs: 300, what: 'RepositoryKeyRotated in cairn audit' });
    expect(byKind.map((e) => [e.eventId, e.type, e.actor.id])).toEqual([[rotated!.id, 'RepositoryKeyRotated', 'alice']]);
    const nobody = await cairn(['audit', '--kind', 'RepositoryKeyRotated', '--actor', 'bob'], { user: 'auditor', online: true });
    expect(JSON.parse(nobody.stdout)).toEqual([]);
    const byStream = await cairn(['audit', '--stream', `repository-${repositoryId}`], { user: 'auditor', online: true });
    expect((JSON.parse(byStream.stdout) as Array<{ type: string }>).map((e) => e.type).sort()).toEqual(['RecoveryKeyExported', 'RepositoryInitialized', 'RepositoryKeyRotated']);
    const table = await cli(['--nats', natsUrl, '--site', site, 'audit', '--kind', 'RecoveryKeyExported'], { CAIRN_NATS_URL: '' });
    expect(table.stdout).toMatch(/RecoveryKeyExported\s+user:alice\s+repository-/);
  }, 180_000);

  it('offline: the acts wait in the key journal; the data mover publishes each exactly once, also after a restart and with two movers', async () => {
    const dir = join(base, 'repo-offline');
    const { repositoryId, outputs } = await threeActs(dir, 'bob', false);
    for (const o of outputs) expect(o['event']).toMatchObject({ recorded: 'key-journal', actor: 'user:bob' });
    const streamId = `repository-${repositoryId}`;
    expect(await streamEvents(streamId)).toEqual([]);

    const repo = await openWith(dir, PASS_2);
    const journal = (await repo.keyJournal()).entries;
    expect(journal.map((e) => e.act)).toEqual(['init', 'rotate', 'export-recovery']);
    // Two movers start at once on the unpublished journal (a second repository object, as another process has).
    const [first, second] = await Promise.all([mover(repo), mover(await openWith(dir, PASS_2))]);
    const events = await streamEvents(streamId);
    expect(events.map((e) => e.type)).toEqual(['RepositoryInitialized', 'RepositoryKeyRotated', 'RecoveryKeyExported']);
    expect(events.map((e) => e.id)).toEqual(journal.map((e) => e.id));
    expect(events.map((e) => e.time)).toEqual(journal.map((e) => e.time)); // when it was done, not when it was published
    for (const e of events) expect(e.actor).toEqual({ kind: 'user', id: 'bob' });
    await Promise.all([first.close(), second.close()]);

    // Another offline rotation while no mover runs: the next start adds it, and only it; one more restart adds nothing.
    const rotatedAgain = await cairn(['repo', 'key', 'rotate', '--repo', dir, '--new-passphrase-file', join(base, 'pass2-bob')], { user: 'carol', online: false, env: { CAIRN_REPO_PASSPHRASE: PASS_2 } });
    expect(rotatedAgain.code, rotatedAgain.stderr).toBe(0);
    const lateId = (JSON.parse(rotatedAgain.stdout) as { event: { eventId: string } }).event.eventId;
    for (let restart = 0; restart < 2; restart++) {
      const again = await mover(await openWith(dir, PASS_2));
      await again.close();
      const now = await streamEvents(streamId);
      expect(now.map((e) => e.id)).toEqual([...journal.map((e) => e.id), lateId]);
      expect(now.at(-1)).toMatchObject({ type: 'RepositoryKeyRotated', actor: { kind: 'user', id: 'carol' } });
    }
    const all: string[] = [];
    for await (const r of log.readAll()) if (r.event.streamId === streamId) all.push(r.event.id);
    expect(all).toHaveLength(4);

    // The audit bridge hands them on: OCSF, entity the repository, the person as actor; the recovery key export is High.
    const records = await waitFor(async () => {
      const lines = (await readFile(ocsfFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as OcsfEntityManagement);
      const mine = lines.filter((r) => r.entity.uid === streamId);
      return mine.length >= 4 ? mine : undefined;
    }, { timeoutMs: 30_000, intervalMs: 200, what: 'the OCSF records of the offline acts' });
    expect(records.map((r) => [r.unmapped.cairn.type, r.activity_name, r.severity, r.status])).toEqual([
      ['RepositoryInitialized', 'Create', 'Medium', 'Success'],
      ['RepositoryKeyRotated', 'Update', 'Medium', 'Success'],
      ['RecoveryKeyExported', 'Read', 'High', 'Success'],
      ['RepositoryKeyRotated', 'Update', 'Medium', 'Success'],
    ]);
    expect(records.map((r) => 'user' in r.actor ? r.actor.user.uid : r.actor.app_name)).toEqual(['bob', 'bob', 'bob', 'carol']);
    expect(records.map((r) => r.metadata.uid)).toEqual([...journal.map((e) => e.id), lateId]);
  }, 180_000);

  it('no passphrase, key or recovery key in any event, CLI output, service log or SIEM record', async () => {
    expect(onlineRepo).not.toBe('');
    const secrets = [PASS_1, PASS_2];
    for (const user of ['alice', 'bob']) {
      const recoveryKey = (await readFile(join(base, `recovery-${user}.txt`), 'utf8')).trim();
      const { keys } = decodeRecoveryKey(recoveryKey);
      secrets.push(recoveryKey.split(':')[2]!, recoveryKey.split(':')[2]!.replaceAll('-', ''), keys.dataKey.toString('hex'), keys.idKey.toString('hex'),
        keys.dataKey.toString('base64'), keys.idKey.toString('base64'));
    }
    const events: string[] = [];
    for await (const r of log.readAll()) events.push(JSON.stringify(r.event));
    expect(events.join('\n')).toContain('RecoveryKeyExported');
    const texts = { events: events.join('\n'), cli: cliOutput.join('\n'), services: serviceLog, ocsf: await readFile(ocsfFile, 'utf8') };
    expect(texts.services).toContain('key operation recorded in the event log');
    for (const [where, text] of Object.entries(texts)) {
      for (const secret of secrets) expect(text.includes(secret), `a secret in ${where}`).toBe(false);
    }
  });
});
