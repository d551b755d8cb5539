// `cairn up`: the embedded default. Starts NATS, every service and the repository under one
// data directory, prints their health, and with --demo backs up a live demo VM twice (full,
// then incremental) and proves a restore against the VM's own write log.
import { randomUUID } from 'node:crypto';
import { readSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { CatalogueClient, JobDetail } from '@cairn/catalogue-client';
import type { CommandBus } from '@cairn/messaging';
import { CliError, EXIT } from '../cli-error.ts';
import { accepted } from '../cli-replies.ts';
import { bytes, DEFAULT_DATA_DIR, globals, operator } from '../session.ts';
import type { Stack, StackOptions } from '../stack/embedded-stack.ts';
import type { DemoVm } from '../stack/demo-vm.ts';
import { configFile, readConfig, serviceSettings } from './config.command.ts';
import { guardChildren, watchParent, type ProcessGuard } from '../stack/process-guard.ts';

const say = (line: string) => process.stdout.write(line + '\n');

async function waitForJob(catalogue: CatalogueClient, jobId: string, timeoutMs: number): Promise<JobDetail> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await catalogue.query('job.get', { jobId }).catch(() => undefined);
    if (job && ['completed', 'failed', 'cancelled'].includes(job.state)) return job;
    if (Date.now() > deadline) throw new CliError(`job ${jobId} did not finish within ${timeoutMs / 1000} s (state ${job?.state ?? 'unknown'})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function demoBackup(bus: CommandBus, catalogue: CatalogueClient, vmId: string, label: string): Promise<JobDetail> {
  const t0 = Date.now();
  const { jobId } = accepted(await bus.send('scheduler', 'RequestBackup', { vmId, mode: 'auto' }, { idempotencyKey: randomUUID() }), 'demo backup refused');
  const job = await waitForJob(catalogue, jobId, 300_000);
  if (job.state !== 'completed') {
    throw new CliError(`demo ${label} backup ${job.state}: ${job.failure?.reason ?? job.cancelReason ?? ''}`, EXIT.jobFailed);
  }
  const rp = await catalogue.query('restorePoint.get', { restorePointId: job.restorePointId! });
  say(`backup  ${label.padEnd(11)} job ${jobId}: ${rp.kind}, ${bytes(rp.bytesRead)} read of ${bytes(rp.sizeBytes)}, ${bytes(rp.bytesStored)} stored, ${((Date.now() - t0) / 1000).toFixed(1)} s → restore point ${rp.restorePointId}`);
  return job;
}

async function runDemo(stack: Stack, vm: DemoVm): Promise<void> {
  const { DEMO_BLOCK, demoBaseBlock, matchWritePrefix } = await import('../stack/demo-vm.ts');
  const actor = operator();
  const [{ CommandBus: Bus }, { CatalogueClient: Catalogue }] = await Promise.all([import('@cairn/messaging'), import('@cairn/catalogue-client')]);
  const bus = new Bus(stack.nc, { site: stack.site, actor, defaultTimeoutMs: 30_000 });
  const catalogue = new Catalogue(stack.nc, { site: stack.site });
  const deadline = Date.now() + 30_000;
  let vmId: string | undefined;
  while (!vmId) {
    const { items } = await catalogue.query('vm.list', {}).catch(() => ({ items: [] as Array<{ vmId: string; name: string }> }));
    vmId = items.find((v) => v.name === vm.name)?.vmId;
    if (!vmId) {
      if (Date.now() > deadline) throw new CliError('the demo VM was not discovered within 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  say(`demo VM              ${vm.name} (${bytes(vm.sizeBytes)} qcow2, QMP ${vm.qmpPath}); its workload keeps writing 64 KiB blocks`);
  vm.startWriting(50);
  // Labelled by order: on a data directory with earlier restore points the first is an incremental too (its kind says which).
  await demoBackup(bus, catalogue, vmId, 'first');
  await new Promise((r) => setTimeout(r, 1500));
  const second = await demoBackup(bus, catalogue, vmId, 'second');
  const target = join(stack.dataDir, 'restores', `${vm.name}-${second.restorePointId}.raw`);
  const t0 = Date.now();
  const restored = accepted(await bus.send('data-mover', 'RestoreDisk', {
    restorePointId: second.restorePointId!, disk: 'disk0', target: { kind: 'file', path: target }, overwrite: true,
  }, { timeoutMs: 300_000 }), 'demo restore failed');
  await vm.stopWriting();
  // The restored disk must be the demo disk exactly as it was at the snapshot: its base plus a
  // prefix of the workload's writes, every written block included.
  const fh = await open(target, 'r');
  const readBlock = (offset: number) => {
    const b = Buffer.alloc(DEMO_BLOCK);
    readSync(fh.fd, b, 0, b.length, offset);
    return b;
  };
  const check = matchWritePrefix(readBlock, demoBaseBlock, vm.writes);
  await fh.close();
  if (!check.ok) throw new CliError(`demo restore does not match the VM at its snapshot: ${check.reason}`, EXIT.failure);
  say(`restore ${second.restorePointId} → ${target}: ${bytes(restored.sizeBytes)} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  say(`verify  the restored disk is the VM's disk at the snapshot instant: base + writes 1..${check.prefix} of ${vm.writes.length} (the guest kept writing)`);
  // The proof is made: the 64 MiB copy goes, so demo runs do not pile up restored disks.
  await rm(target, { force: true });
  // The workload goes on (more slowly) while Cairn serves, so later backups have changes to read.
  vm.startWriting(1000);
}

/** One line of what a service says about itself. */
function describeHealth(service: string, detail: unknown): string {
  const d = (detail ?? {}) as Record<string, unknown>;
  switch (service) {
    case 'scheduler':
      return `${d['leader'] ? 'active' : 'standby'}, ${String(d['jobsOpen'])} open jobs, ${String(d['vms'])} VMs, ${String(d['policies'])} policies, at most ${String(d['maxJobsPerHost'])} jobs per host${d['maxJobsPerRepository'] ? `, ${String(d['maxJobsPerRepository'])} per repository` : ''}`;
    case 'snapshot-coordinator': {
      const instances = (d['instances'] as Array<{ name: string; connected: boolean }> | undefined) ?? [];
      return `${instances.map((i) => `${i.name}${i.connected ? '' : ' (disconnected)'}`).join(', ') || 'no hypervisors yet (cairn hypervisor add)'}; ${String(d['openSnapshots'])} open snapshots`;
    }
    case 'data-mover': {
      const b = d['bandwidth'] as { hostBytesPerSec?: number; siteBytesPerSec?: number } | undefined;
      const limit = (n: number | undefined) => (n === undefined ? 'unlimited' : `${bytes(n)}/s`);
      return `${String(d['worker'])}${b ? `; bandwidth host ${limit(b.hostBytesPerSec)}, site ${limit(b.siteBytesPerSec)}` : ''}`;
    }
    case 'audit-bridge': {
      const targets = (d['targets'] as Array<{ name: string }> | undefined) ?? [];
      return `targets: ${targets.map((t) => t.name).join(', ')}`;
    }
    case 'replication':
      return `${String(d['policies'])} policies, ${String(d['copies'])} copies sent, ${String(d['received'])} objects received from other sites`;
    case 'catalogue': {
      const st = (d['status'] ?? {}) as Record<string, unknown>;
      return `position ${String(st['position'])} of ${String(st['head'])} (lag ${String(st['lag'])})`;
    }
    default:
      return typeof detail === 'string' ? detail : JSON.stringify(detail);
  }
}

/** Longest a stop may take before everything is killed (the issue's bound is 10 s). */
const STOP_DEADLINE_MS = 9_000;

/**
 * How `cairn up` is stopped: the first Ctrl-C, SIGTERM, SIGHUP or loss of its parent asks
 * for an orderly stop (services first, nats-server last) within STOP_DEADLINE_MS; a second
 * signal, or the deadline, kills everything it started at once.
 */
function stopControl(guard: ProcessGuard) {
  let asked = false;
  let signalled!: () => void;
  const promise = new Promise<void>((r) => { signalled = r; });
  const now = (why: string) => {
    say(`${why}: stopping at once`);
    guard.killAll();
    process.exit(130);
  };
  const onSignal = (why: string) => {
    if (asked) now(why);
    asked = true;
    say(`${why}: stopping… (Ctrl-C again stops at once)`);
    signalled();
  };
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => {
    const h = () => onSignal(sig);
    process.on(sig, h);
    return [sig, h] as const;
  });
  const unwatch = watchParent(() => onSignal('its parent process is gone'));
  let deadline: NodeJS.Timeout | undefined;
  return {
    signalled: promise,
    requested: () => asked,
    armDeadline() {
      deadline = setTimeout(() => now(`not stopped within ${STOP_DEADLINE_MS / 1000} s`), STOP_DEADLINE_MS);
    },
    done() {
      clearTimeout(deadline);
      unwatch();
      for (const [sig, h] of handlers) process.off(sig, h);
      // A handle something left open must not keep a stopped `cairn up` alive.
      setTimeout(() => process.exit(), 1000).unref();
    },
  };
}

export function registerUpCommand(program: Command): void {
  program.command('up')
    .description('start Cairn on this machine: NATS, every service, the repository under --data')
    .option('--demo', 'also start a demo VM that keeps writing, back it up twice and prove a restore')
    .option('--once', 'stop after start-up (and the demo) instead of serving until Ctrl-C')
    .option('--qmp <sockets...>', 'QMP sockets of running QEMU instances to protect')
    .option('--libvirt <uris...>', 'libvirt connection URIs whose domains to protect, e.g. qemu:///system')
    .option('--cluster <members>', 'run a NATS cluster of this many nats-servers (routes on loopback, streams R3) instead of one; every service connects to all of them')
    .option('--gateway-port <port>', 'REST API port (default: a free one)')
    .option('--hub <url>', 'join a hub as a leaf node (nats-leaf://host:port from `cairn hub`); the site becomes its JetStream domain')
    .option('--hub-credentials <dir>', 'this site\'s leaf credential bundle from the hub (`cairn hub add-site <site> --out <dir>`): TLS leaf link as the site\'s leaf user (default $CAIRN_HUB_CREDENTIALS)')
    .option('--secure', 'NATS with mutual TLS and one least-privilege identity per service (site CA and keys in <data>/security, or from `cairn site init`); the default unless --nats is given')
    .option('--insecure', 'plain NATS without TLS or per-service identities (everything on one connection)')
    .option('--config <file>', 'site configuration (default: $CAIRN_CONFIG, else ./cairn.yaml when there is one): site name, SIEM targets')
    .action(async function (this: Command, o: { demo?: boolean; once?: boolean; cluster?: string; qmp?: string[]; libvirt?: string[]; gatewayPort?: string; hub?: string; hubCredentials?: string; secure?: boolean; insecure?: boolean; config?: string }) {
      const g = globals(this);
      const dataDir = resolve(g.data ?? process.env['CAIRN_DATA'] ?? DEFAULT_DATA_DIR);
      // Whatever happens to this process, nothing it starts outlives it (./stack/process-guard.ts).
      // A mistake in the configuration stops here, before anything starts.
      const configPath = await configFile(o.config);
      const cluster = o.cluster === undefined ? undefined : Number(o.cluster);
      if (cluster !== undefined && !(Number.isInteger(cluster) && cluster >= 1 && cluster <= 7)) {
        throw new CliError(`--cluster takes a number of nats-servers from 1 to 7 (3 for R3 streams), not ${o.cluster}`, EXIT.usage);
      }
      if (cluster !== undefined && g.nats) throw new CliError('--cluster starts its own nats-servers: leave out --nats', EXIT.usage);
      const config = await readConfig(configPath);
      const guard = guardChildren();
      const stop = stopControl(guard);
      let vm: DemoVm | undefined;
      let stack: Stack | undefined;
      const shutdown = async () => {
        await stack?.stop();
        await vm?.stop();
      };
      const work = (async () => {
        // Loaded here, not at the top: other commands start without the services' code.
        const { startStack } = await import('../stack/embedded-stack.ts');
        if (o.demo) vm = await (await import('../stack/demo-vm.ts')).startDemoVm(join(dataDir, 'demo'));
        say(`cairn up: data in ${dataDir}${configPath ? `, configuration ${configPath}` : ''}`);
        stack = await startStack({
          dataDir,
          site: g.site ?? config?.site ?? 'local',
          ...(config?.audit?.targets?.length ? { auditTargets: config.audit.targets as StackOptions['auditTargets'] } : {}),
          ...(config ? await serviceSettings(config) : {}),
          ...(!config && process.env['CAIRN_CATALOGUE_POSTGRES_URL'] ? { cataloguePostgresUrl: process.env['CAIRN_CATALOGUE_POSTGRES_URL'] } : {}),
          ...(config?.notifications?.routes?.length ? { notificationRoutes: (await import('../config/cairn-config.ts')).configRoutes(config) } : {}),
          ...(g.nats ? { natsUrl: g.nats } : {}),
          ...(cluster && cluster > 1 ? { cluster } : {}),
          ...(o.gatewayPort ? { gatewayPort: Number(o.gatewayPort) } : {}),
          ...(o.hub ? { hub: o.hub } : {}),
          ...(o.hub && (o.hubCredentials ?? process.env['CAIRN_HUB_CREDENTIALS']) ? { hubCredentials: resolve((o.hubCredentials ?? process.env['CAIRN_HUB_CREDENTIALS'])!) } : {}),
          // Secure by default where this process starts NATS itself (the hub link too: TLS with
          // the site's leaf credentials; a hub that asks for them and gets none is an error).
          ...(o.secure || process.env['CAIRN_SECURE'] === '1'
            || (!o.insecure && !g.nats && process.env['CAIRN_SECURE'] !== '0') ? { secure: true } : {}),
          qemu: [...(o.qmp ?? []).map((s) => ({ qmpSocket: s })), ...(vm ? [{ qmpSocket: vm.qmpPath }] : [])],
          ...(o.libvirt?.length ? { libvirt: o.libvirt.map((uri) => ({ uri })) } : {}),
          log: say,
          // Ctrl-C reaches this process only; it stops nats-server last, in order.
          ownProcessGroups: true,
        });
        if (stop.requested()) return;
        for (const h of await stack.health()) {
          say(`${h.service.padEnd(20)} ${h.status === 'ok' ? 'ok ' : 'FAILING'} ${describeHealth(h.service, h.detail)}`);
        }
        say(`gateway              ${stack.gatewayUrl} (administrator \`admin\`, API token in ${join(dataDir, 'secrets', 'api.token')}; more users: cairn user add)`);
        say(`logs                 ${stack.logFile}`);
        if (vm) await runDemo(stack, vm);
      })();
      // A stop asked for while starting or during the demo ends that work: it is not awaited further.
      work.catch(() => undefined);
      const first = await Promise.race([work.then(() => 'ready' as const, (e: unknown) => ({ failed: e })), stop.signalled.then(() => 'stop' as const)]);
      if (first === 'ready' && !o.once) {
        say('cairn is up; other terminals can run `npx cairn vm list`, `npx cairn backup <vm> --wait` … Ctrl-C stops it.');
        await stop.signalled;
      }
      stop.armDeadline();
      if (first === 'stop' && !stack) {
        // Still starting: let start-up finish (it stops itself on error), within the deadline.
        await work.catch(() => undefined);
      }
      await shutdown().catch((e: unknown) => say(`stopping: ${(e as Error).message}`));
      stop.done();
      if (typeof first === 'object') throw first.failed;
    });
}
