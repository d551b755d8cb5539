// The data mover's part of a restore request (issue 20), each build's code (its worktree's
// libs/command-auth and services/data-mover/src/restore-job.ts), alternated by round, on one real
// nats-server and one JetStream event log: the command's authentication as a secure site checks
// it (`SignedCommandPolicy` with endorsed keys only; the root operator's stream of two events and
// the trust root, as `cairn up` records them), then `RestoreJobs.request` with a new restore id
// as `cairn restore` sends it, until 'restore requested' is logged (the decider's read and
// append, the work queue's publish). Prints per build and part the NATS messages the connection
// sent (each a round trip waited for: the same on an idle or a loaded machine), ms and CPU ms,
// medians and ranges. The idempotency claim between the two parts is the same for both.
//
//   npx tsx tools/bench/src/restore-request-ab.ts --builds base=/work/wt/base,mine=<worktree> [--rounds 10] [--per 20]
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, RetentionPolicy } from '@nats-io/jetstream';
import { createUser } from '@nats-io/nkeys';
import { newEvent, RESTORE_QUEUE, workSubject, type Actor, type Command, type RequestRestoreV1, type RestoreWork } from '@cairn/contracts';
import { signCommand, signerFromSeed } from '@cairn/command-auth';
import { JetStreamEventLog } from '@cairn/eventlog';
import { startNatsServer } from '@cairn/nats-server';
import { parseBuilds } from './ab-builds.ts';
import { median } from './report.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const SITE = 'bench';

interface RequestJobs { request(cmd: RequestRestoreV1, actor: Actor, ownTarget: boolean, commandId: string): Promise<{ restoreId: string }> }
type JobsClass = new (config: unknown, log: unknown, mover: unknown, logger: unknown) => RequestJobs;
interface Authorizer { authorize(command: Command, subject: string): Promise<{ ok: boolean }> }
type PolicyClass = new (o: unknown) => Authorizer;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { builds: { type: 'string' }, rounds: { type: 'string', default: '10' }, per: { type: 'string', default: '20' } } });
  const builds = parseBuilds(values.builds, repoRoot);
  const rounds = Number(values.rounds);
  const per = Number(values.per);
  const dir = await mkdtemp(join(tmpdir(), 'cairn-restore-request-'));
  const server = await startNatsServer({ dir });
  const nc = await connect({ servers: server.url });
  try {
    const jsm = await jetstreamManager(nc);
    const subject = workSubject(SITE, RESTORE_QUEUE);
    await jsm.streams.add({ name: 'BENCH_WORK', subjects: [subject], retention: RetentionPolicy.Workqueue });
    const js = jetstream(nc);
    const log = await JetStreamEventLog.open({ nc, site: SITE });
    const actor: Actor = { kind: 'user', id: 'admin' };
    // The root operator as a secure `cairn up` records it: its user stream and the signing cut-over.
    const root = signerFromSeed(new TextDecoder().decode(createUser().getSeed()));
    const by: Actor = { kind: 'service', id: `cairn-up@${SITE}` };
    const signed = (e: ReturnType<typeof newEvent>) => ({ ...e, provenance: { writer: 'admin', publicKey: root.publicKey, signature: 'x'.repeat(86) } });
    await log.append('provenance-signing', [signed(newEvent('EventSigningStarted', { identities: ['admin'], rootOperator: { userId: 'admin', publicKey: root.publicKey } }, { site: SITE, actor: by, streamId: 'provenance-signing' }))], { expectedRevision: 'any' });
    await log.append('user-admin', [signed(newEvent('UserCreated', { userId: 'admin', roles: ['administrator'] }, { site: SITE, actor: by, streamId: 'user-admin' }))], { expectedRevision: 'any' });
    await log.append('user-admin', [signed(newEvent('UserKeyAdded', { userId: 'admin', publicKey: root.publicKey }, { site: SITE, actor: by, streamId: 'user-admin' }))], { expectedRevision: 'any' });
    const policies = new Map<string, Authorizer>();
    const cmdSubject = `cairn.${SITE}.cmd.data-mover.RequestRestore`;
    const noLog = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
    const jobs = new Map<string, RequestJobs>();
    for (const b of builds) {
      const wt = resolve(b.cli, '../../../..');
      const auth = await import(join(wt, 'libs/command-auth/src/command-auth.ts')) as { SignedCommandPolicy: PolicyClass };
      policies.set(b.name, new auth.SignedCommandPolicy({ log, site: SITE, serviceActor: { kind: 'service', id: `data-mover@${SITE}` }, serviceKeys: new Map(), endorsedKeysOnly: true }));
      const mod = await import(join(wt, 'services/data-mover/src/restore-job.ts')) as { RestoreJobs: JobsClass };
      jobs.set(b.name, new mod.RestoreJobs({
        site: SITE, actor: { kind: 'service', id: 'data-mover' },
        enqueue: async (w: RestoreWork) => { await js.publish(subject, JSON.stringify(w), { msgID: `restore-${w.restoreId}` }); },
        publishProgress: () => undefined,
      }, log, {}, noLog));
    }
    type Row = { ms: number[]; cpu: number[]; msgs: number[] };
    const empty = (): Row => ({ ms: [], cpu: [], msgs: [] });
    const rows = new Map<string, { auth: Row; request: Row }>(builds.map((b) => [b.name, { auth: empty(), request: empty() }]));
    const measure = async (row: Row, fn: () => Promise<unknown>) => {
      const out = nc.stats().outMsgs;
      const cpu = process.cpuUsage();
      const t = performance.now();
      await fn();
      row.ms.push(performance.now() - t);
      const c = process.cpuUsage(cpu);
      row.cpu.push((c.user + c.system) / 1000);
      row.msgs.push(nc.stats().outMsgs - out);
    };
    const authorized = async (b: string) => {
      const c = signCommand({ id: randomUUID(), name: 'RequestRestore', schemaVersion: 1, idempotencyKey: randomUUID(), actor, site: SITE, time: new Date().toISOString(), payload: command() } as Command, root);
      const d = await policies.get(b)!.authorize(c, cmdSubject);
      if (!d.ok) throw new Error(`${b}: the command was refused: ${JSON.stringify(d)}`);
    };
    const loads: number[] = [];
    // One request of each build first, unmeasured: modules, schemas and the connection warm.
    for (const b of builds) { await authorized(b.name); await jobs.get(b.name)!.request(command(), actor, true, randomUUID()); }
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? builds : [...builds].reverse();
      for (const b of order) {
        const row = rows.get(b.name)!;
        for (let i = 0; i < per; i++) {
          await measure(row.auth, () => authorized(b.name));
          await measure(row.request, () => jobs.get(b.name)!.request(command(), actor, true, randomUUID()));
        }
      }
      loads.push(loadavg()[0]!);
    }
    const f = (xs: number[]) => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
    console.log(`${rounds} rounds × ${per} requests per build, load ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`);
    for (const b of builds) {
      for (const [part, row] of Object.entries(rows.get(b.name)!)) {
        console.log(`${b.name} ${part}: NATS messages sent ${f(row.msgs)}, ms ${f(row.ms)}, CPU ms ${f(row.cpu)}`);
      }
    }
  } finally {
    await nc.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

function command(): RequestRestoreV1 {
  return {
    restoreId: randomUUID(), restorePointId: `rp-${randomUUID()}`,
    target: { kind: 'file', disk: 'disk0', path: '/tmp/restore-request-ab.raw', format: 'raw', overwrite: true },
  } as RequestRestoreV1;
}

await main();
