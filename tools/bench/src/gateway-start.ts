// Gateway start-up against a large event log (issue 19): fills a real nats-server's site log with
// N unrelated events (each restore point its own job stream, as catalogue-scale.ts does), then starts
// `cairn run gateway` against it and reports the seconds (and CPU seconds) until it listens.
//   npx tsx tools/bench/src/gateway-start.ts --events 200000 [--rounds 2]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { newEvent } from '@cairn/contracts';
import { createJetStreamEventLog } from '@cairn/eventlog';
import { startNatsServer } from '@cairn/nats-server';

const CLI = fileURLToPath(new URL('../../cli/bin/cairn.js', import.meta.url));
const { values } = parseArgs({ options: { events: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '3' }, dir: { type: 'string' } } });
const N = Number(values.events);
const site = 'bench';
const say = (s: string) => process.stdout.write(`${s}\n`);
const load = () => loadavg().map((x) => x.toFixed(1)).join(' ');

/** User + system CPU seconds of a process and its children so far (the CLI may run itself again under Node 24). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  const ticks = Number(stat[11]) + Number(stat[12]) + Number(stat[13]) + Number(stat[14]);
  return ticks / 100;
}

async function startGateway(natsUrl: string, dataDir: string, serverPid: number): Promise<{ listenS: number; health: number; cpuS: number; serverCpuS: number; output: string }> {
  const server0 = await cpuSeconds(serverPid);
  const token = randomBytes(24).toString('hex');
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, 'run', 'gateway', '--nats', natsUrl, '--site', site, '--data', dataDir, '--port', '0'], {
    env: { ...process.env, CAIRN_LOG_LEVEL: 'warn', CAIRN_API_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => { output += b.toString(); });
  child.stderr.on('data', (b: Buffer) => { output += b.toString(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  try {
    let url: string | undefined;
    while (!(url = /gateway listening on (\S+)/.exec(output)?.[1])) {
      if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}: ${output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const listenS = (performance.now() - started) / 1000;
    const cpuS = await cpuSeconds(child.pid!);
    const serverCpuS = (await cpuSeconds(serverPid)) - server0;
    const health = await fetch(`${url}/health`).then((r) => r.status, () => 0);
    child.kill('SIGTERM');
    await exited;
    return { listenS, health, cpuS, serverCpuS, output };
  } finally {
    if (child.exitCode === null) { child.kill('SIGKILL'); await exited; }
  }
}

async function main(): Promise<void> {
  const dir = values.dir ?? await mkdtemp(join(tmpdir(), 'cairn-gateway-start-'));
  const nats = await startNatsServer({ dir: join(dir, 'nats'), maxPayload: 8 * 1024 * 1024 });
  const nc = await connect({ servers: nats.url });
  const log = await createJetStreamEventLog({ nc, site });
  try {
    const head0 = await log.headPosition();
    say(`log head ${head0}; filling to ${N} (load ${load()})`);
    const started = performance.now();
    const pending = new Set<Promise<unknown>>();
    for (let i = Number(head0); i < N; i++) {
      const jobId = `j${i}`;
      const event = newEvent('RestorePointCommitted', {
        restorePointId: `rp-${i}`, jobId, vmId: `vm${i % 1000}`, parentId: null,
        disks: [{ name: 'vda', sizeBytes: 10 * 2 ** 30, bytesRead: 2 ** 28, bytesStored: 2 ** 26, chunksNew: 64, chunksReused: 960 }],
      }, { site, actor: { kind: 'service', id: 'data-mover@bench' }, streamId: `job-${jobId}`, correlationId: jobId, causationId: null });
      const p = log.append(`job-${jobId}`, [event], { expectedRevision: 'no_stream' }).finally(() => pending.delete(p));
      pending.add(p);
      if (pending.size >= 256) await Promise.race(pending);
    }
    await Promise.all(pending);
    say(`filled in ${((performance.now() - started) / 1000).toFixed(1)} s, head ${await log.headPosition()}`);
    for (let r = 0; r < Number(values.rounds); r++) {
      // Each round on a server just started: its caches of the message blocks cold, as after a restart.
      await nats.stop();
      await nats.start();
      const la = load();
      const s = await startGateway(nats.url, join(dir, `gateway-${r}`), nats.pid!);
      say(`gateway round ${r}: listening after ${s.listenS.toFixed(2)} s, ${s.cpuS.toFixed(2)} CPU s, nats-server ${s.serverCpuS.toFixed(2)} CPU s, /health ${s.health} (load ${la})`);
    }
  } finally {
    await log.close();
    await nc.drain();
    await nats.stop();
    if (!values.dir) await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => { console.error(e); process.exit(1); });
