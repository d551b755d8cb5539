// Everyday operator commands: VMs, policies, backups, jobs, restore points, restores,
// events and the catalogue. Each talks to a running Cairn over NATS (see ../session.ts).
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import type { CommandPayloadMap } from '@cairn/contracts';
import type { JobDetail, JobView } from '@cairn/catalogue-client';
import { CliError, EXIT } from '../cli-error.ts';
import { parseDuration } from './repo.command.ts';
import { accepted, sessionAction } from '../cli-replies.ts';
import { bytes, output, table, type Session } from '../session.ts';
import { collectPages, pagingChoice, pagingOptions, printPage } from '../paging.ts';
import { rateBytesPerSec } from '../units.ts';
import { editedPolicy, parseWindow, quiesceOption, rate, testRestoreOption } from './policy-options.ts';
import { configFile, readConfig } from './config.command.ts';
import type * as RestoreJobModule from './restore-job.ts';
import type * as RestoreRequestModule from './restore-request.ts';
import { instantLine } from './instant-line.ts';
import { libvirtNbdOptions } from './libvirt-options.ts';
import { domainXmlOf, restorePointDetails } from './restore-point-details.ts';
import { exitWhenDone } from '../exit-when-done.ts';

type Opts = Record<string, unknown>;

// Loaded by the commands that need them, not at every start (docs/benchmarks.md "CLI start-up").
const restoreJobs = (): Promise<typeof RestoreJobModule> => import('./restore-job.ts');
// What a restore needs before its request is sent loads while the session connects; the follower
// (restoreJobs: the JetStream event log, the restore decider) loads after the send, while the data
// mover records the request: ~40 ms of the CLI's main thread less before the request at load 11
// (docs/benchmarks.md, "2026-12-06: the restore command's CLI before its request").
const restoreRequest = (): Promise<typeof RestoreRequestModule> => import('./restore-request.ts');
const startRestore: typeof RestoreRequestModule.startRestore = async (...a) => (await restoreRequest()).startRestore(...a);
const watchRestore: typeof RestoreJobModule.watchRestore = async (...a) => (await restoreJobs()).watchRestore(...a);
const isRestoreJob: typeof RestoreJobModule.isRestoreJob = async (...a) => (await restoreJobs()).isRestoreJob(...a);

const act = sessionAction;

async function resolveVm(s: Session, ref: string): Promise<string> {
  const { items } = await collectPages((page) => s.catalogue.query('vm.list', page), pagingChoice({}));
  const vm = items.find((v) => v.vmId === ref) ?? items.find((v) => v.name === ref);
  if (!vm) {
    throw new CliError(`unknown VM ${JSON.stringify(ref)}`, EXIT.notFound,
      `known VMs: ${items.map((v) => v.name).join(', ') || 'none (add a hypervisor with `cairn hypervisor add`)'}`);
  }
  return vm.vmId;
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

function jobLine(j: JobView): Record<string, unknown> {
  return {
    job: j.jobId, kind: j.kind, vm: j.vmId, state: j.state, trigger: j.trigger, requested: j.requestedAt,
    read: j.bytesRead === null ? '' : bytes(j.bytesRead), stored: j.bytesStored === null ? '' : bytes(j.bytesStored),
    restorePoint: j.restorePointId ?? '', reason: j.failure?.reason ?? j.cancelReason ?? '',
  };
}

/** `disk0 [#######-------------]  35% 120.0 MiB of 342.0 MiB, 85.3 MiB/s, ETA 3 s` */
export function progressLine(disk: string, done: number, planned: number | null, rate: number): string {
  if (!planned) return `${disk}: ${bytes(done)} read, ${bytes(rate)}/s`;
  const share = Math.min(1, done / planned);
  const width = 20;
  const bar = '#'.repeat(Math.round(share * width)).padEnd(width, '-');
  const eta = rate > 0 ? `, ETA ${Math.ceil((planned - done) / rate)} s` : '';
  return `${disk} [${bar}] ${String(Math.round(share * 100)).padStart(3)}% ${bytes(done)} of ${bytes(planned)}, ${bytes(rate)}/s${eta}`;
}

/** Follows a job until it ends, drawing a progress line on a terminal. */
async function watchJob(s: Session, jobId: string, timeoutMs: number): Promise<JobDetail> {
  const started = Date.now();
  let done = 0; let lastAt = Date.now(); let lastDone = 0; let rate = 0;
  const { progressSubject } = await import('@cairn/contracts');
  const sub = s.nc.subscribe(progressSubject(s.site, jobId));
  const tty = process.stderr.isTTY && !s.json;
  void (async () => {
    for await (const m of sub) {
      const p = m.json<{ bytesDone: number; bytesPlanned: number | null; disk: string }>();
      done = p.bytesDone;
      const now = Date.now();
      if (now - lastAt >= 500) { rate = ((done - lastDone) * 1000) / (now - lastAt); lastAt = now; lastDone = done; }
      if (tty) process.stderr.write(`\r  ${progressLine(p.disk, done, p.bytesPlanned, rate)}        `);
    }
  })();
  try {
    for (;;) {
      let job: JobDetail | undefined;
      try { job = await s.catalogue.query('job.get', { jobId }); } catch { /* not projected yet */ }
      if (job && TERMINAL.has(job.state)) {
        if (tty) process.stderr.write('\n');
        return job;
      }
      if (Date.now() - started > timeoutMs) throw new CliError(`job ${jobId} still ${job?.state ?? 'unknown'} after ${timeoutMs / 1000} s`, EXIT.failure, `follow it with \`cairn job watch ${jobId}\``);
      await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    sub.unsubscribe();
  }
}

function reportJob(s: Session, job: JobDetail): void {
  output(s, job, () => {
    const head = `${job.kind} job ${job.jobId}: ${job.state}${job.failure ? ` in ${job.failure.phase}: ${job.failure.reason}` : ''}`;
    const phases = job.phases.map((p) => `  ${p.phase.padEnd(9)} ${p.state.padEnd(7)} ${p.detail ?? ''}`).join('\n');
    const rp = !job.restorePointId ? ''
      : job.kind === 'restore' ? `\n  from restore point ${job.restorePointId}${job.bytesRead !== null ? `: ${bytes(job.bytesRead)} written` : ''}`
        : `\n  restore point ${job.restorePointId}: ${bytes(job.bytesRead ?? 0)} read, ${bytes(job.bytesStored ?? 0)} stored`;
    return `${head}\n${phases}${rp}`;
  });
  if (job.state === 'failed' || job.state === 'cancelled') process.exitCode = EXIT.jobFailed;
}

// Three groups, each registered alone for the command it defines (main.ts GROUPS): V8 compiles
// a group's definitions when it is first called, which cost ~30 ms of CPU per start at load 10
// for all of this file's commands in one function.
/** hypervisor, vm, policy, backup, job. */
export function registerInventoryCommands(program: Command): void {
  const hypervisor = program.command('hypervisor').description('hypervisors the snapshot coordinator protects');
  hypervisor.command('add <kind>')
    .description('connect a hypervisor: `qemu` (a running QEMU or qemu-storage-daemon, by its QMP socket), `libvirt` (every domain of a libvirt connection) or `vmware` (every VM of a vCenter or ESXi host)')
    .option('--qmp <socket>', 'qemu: QMP socket path')
    .option('--uri <uri>', 'libvirt: connection URI, e.g. qemu:///system')
    .option('--credentials-file <file>', 'libvirt: an auth.conf with the credentials for the URI (read by the coordinator, never passed on a command line)')
    .option('--nbd-tls-dir <dir>', 'libvirt, qemu+tls:// only: NBD client certificate directory (cacert.pem, clientcert.pem, clientkey.pem; default the URI\'s pkipath, else libvirt\'s client PKI)')
    .option('--nbd-ports <first-last>', 'libvirt, qemu+tls:// only: TCP ports of the host the NBD exports may listen on (default 10809-10899)')
    .option('--url <url>', 'vmware: the vCenter or ESXi SDK endpoint, e.g. https://vcenter.example/sdk')
    .option('--credentials <file>', 'vmware: a file with username and password (JSON or username=/password= lines), read by the coordinator')
    .option('--ca <file>', 'vmware: PEM file of the CA vCenter\'s certificate chains to')
    .option('--thumbprint <fingerprint>', 'vmware: SHA-1 or SHA-256 fingerprint of vCenter\'s certificate, pinned instead of a CA')
    .option('--name <name>', 'host name its VMs are reported under (default: from the socket file name or the URI\'s host)')
    .option('--guest-agent <socket>', 'qemu: qemu-guest-agent socket, to quiesce file systems')
    .action(act(async (s, kind: string, o: Opts) => {
      const slug = (v: string) => v.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
      let payload: Record<string, unknown>;
      if (kind === 'qemu') {
        if (!o['qmp']) throw new CliError('cairn hypervisor add qemu needs --qmp <socket>', EXIT.usage);
        const qmpSocket = resolve(String(o['qmp']));
        const name = String(o['name'] ?? slug(qmpSocket.split('/').at(-1)!.replace(/\.[^.]*$/, '')));
        payload = { name, kind: 'qemu', qmpSocket, ...(o['guestAgent'] ? { guestAgentSocket: resolve(String(o['guestAgent'])) } : {}) };
      } else if (kind === 'libvirt') {
        if (!o['uri']) throw new CliError('cairn hypervisor add libvirt needs --uri <uri> (e.g. qemu:///system)', EXIT.usage);
        const uri = String(o['uri']);
        const host = /^[a-z0-9+]+:\/\/(?:[^@/]*@)?([^/:?]*)/i.exec(uri)?.[1];
        const name = String(o['name'] ?? slug(host || 'libvirt'));
        payload = {
          name, kind: 'libvirt', uri, ...(o['credentialsFile'] ? { credentialsFile: resolve(String(o['credentialsFile'])) } : {}),
          ...libvirtNbdOptions(uri, { nbdTlsDir: o['nbdTlsDir'], nbdPorts: o['nbdPorts'] }),
        };
      } else if (kind === 'vmware') {
        if (!o['url']) throw new CliError('cairn hypervisor add vmware needs --url https://vcenter/sdk', EXIT.usage);
        const credentials = o['credentials'] ?? o['credentialsFile'];
        if (!credentials) throw new CliError('cairn hypervisor add vmware needs --credentials <file> (username and password in a file, never on the command line)', EXIT.usage);
        if (o['ca'] && o['thumbprint']) throw new CliError('give --ca or --thumbprint, not both', EXIT.usage);
        const url = String(o['url']);
        if (!/^https:\/\/\S+$/.test(url)) throw new CliError(`--url must be an https:// URL, not ${JSON.stringify(url)}`, EXIT.usage);
        if (/^https:\/\/[^/]*@/.test(url)) throw new CliError('put the credentials in the --credentials file, not in the URL', EXIT.usage);
        const name = String(o['name'] ?? slug(new URL(url).hostname || 'vcenter'));
        payload = {
          name, kind: 'vmware', url, credentialsFile: resolve(String(credentials)),
          ...(o['ca'] ? { caFile: resolve(String(o['ca'])) } : {}), ...(o['thumbprint'] ? { thumbprint: String(o['thumbprint']) } : {}),
        };
      } else {
        throw new CliError(`unsupported hypervisor kind ${JSON.stringify(kind)}; supported: qemu, libvirt, vmware`, EXIT.usage);
      }
      const result = accepted(await s.bus.send('snapshot-coordinator', 'AddHypervisor', payload as never, { timeoutMs: 30_000 }), 'hypervisor not added');
      output(s, result, () => `hypervisor ${result.name} added; VMs: ${result.vms.join(', ') || 'none yet'}`);
    }));

  const vm = program.command('vm').description('virtual machines the hypervisors report');
  pagingOptions(vm.command('list').description('list VMs, by name'), 'VMs').action(act(async (s, o: Opts) => {
    const choice = pagingChoice(o);
    const page = await collectPages((p) => s.catalogue.query('vm.list', p), choice);
    const { items } = page;
    printPage(s.json, page, choice, () => table(items.map((v) => ({
      vm: v.vmId, name: v.name, host: v.hypervisor.host, state: v.removedAt ? `removed ${v.removedAt}` : v.powerState ?? 'unknown',
      disks: v.disks.filter((d) => !d.detachedAt).map((d) => `${d.name}(${bytes(d.sizeBytes)})`).join(' '),
      lastBackup: v.lastBackupAt ?? 'never', restorePoints: v.restorePoints,
    })), ['vm', 'name', 'host', 'state', 'disks', 'lastBackup', 'restorePoints']));
  }));

  const policy = program.command('policy').description('protection policies');
  policy.command('create')
    .description('create a protection policy')
    .requiredOption('--name <name>', 'policy name')
    .option('--vm <names...>', 'VM names it protects')
    .option('--tag <tags...>', 'protect VMs carrying all these tags')
    .option('--hypervisor <host>', 'protect every VM of this hypervisor host')
    .requiredOption('--cron <expr>', 'schedule, cron syntax (5 or 6 fields)')
    .option('--timezone <tz>', 'IANA time zone of the schedule', Intl.DateTimeFormat().resolvedOptions().timeZone)
    .option('--window <HH:MM-HH:MM>', 'scheduled jobs start only inside this window (may wrap midnight)')
    .option('--keep-last <n>', 'keep the last N restore points (default: cairn.yaml policyDefaults, else 7)')
    .option('--keep-daily <n>', 'keep one per day for N days (default: cairn.yaml, else 7)')
    .option('--keep-weekly <n>', 'keep one per week for N weeks (default: cairn.yaml, else 4)')
    .option('--keep-monthly <n>', 'keep one per month for N months (default: cairn.yaml, else 6)')
    .option('--keep-yearly <n>', 'keep one per year for N years (default: cairn.yaml, else 0)')
    .option('--bandwidth <rate>', 'most bytes per second each backup of it reads, e.g. 20MiB (default: cairn.yaml policyDefaults, else none)')
    .option('--repository <name>', 'target repository', 'default')
    .option('--key <ref>', 'key reference', 'default')
    .option('--priority <n>', 'higher runs first', '100')
    .option('--immutable', 'lock each new restore point until the end of its retention (turning it off later needs a second administrator)')
    .option('--quiesce <mode>', 'freeze guest file systems through the guest agent: required (fail without it), preferred (crash-consistent with the reason otherwise) or off', 'preferred')
    .option('--rpo <minutes>', 'recovery-point objective: a VM without a younger restore point raises RpoMissed (default: the schedule\'s longest gap + 2 h, 26 h for daily)')
    .option('--test-restore <json>', 'boot-test the newest restore point of each VM on a schedule, e.g. \'{"cron":"0 4 * * 0","serialPattern":"login:","agent":{},"tcpPorts":[22]}\' (docs/restore.md)')
    .option('--global', 'at the hub: a global policy for several sites, signed by you, delivered to each (docs/sites.md)')
    .option('--to-sites <names...>', 'with --global: only these sites (default: every site of the hub)')
    .option('--to-tag <tags...>', 'with --global: the sites carrying all these tags (cairn hub add-site --tag)')
    .option('--sign-with <keys...>', 'with --global: your operator key file at each site (a person\'s key is per site; --operator-key counts too)')
    .action(act(async (s, o: Opts) => {
      // What the command is not told comes from cairn.yaml's policyDefaults, then the built-in defaults.
      const defaults = (await readConfig(await configFile()))?.policyDefaults;
      const builtIn = { keepLast: 7, keepDaily: 7, keepWeekly: 4, keepMonthly: 6, keepYearly: 0 } as const;
      const fromConfig = { keepLast: defaults?.retention?.last, keepDaily: defaults?.retention?.daily, keepWeekly: defaults?.retention?.weekly, keepMonthly: defaults?.retention?.monthly, keepYearly: defaults?.retention?.yearly };
      for (const k of Object.keys(builtIn) as Array<keyof typeof builtIn>) o[k] ??= String(fromConfig[k] ?? builtIn[k]);
      const bandwidth = rate(o['bandwidth'] as string | undefined) ?? rateBytesPerSec(defaults?.bandwidth);
      const window = o['window'] ? parseWindow(String(o['window'])) : defaults?.window;
      const num = (k: string) => {
        const v = Number(o[k]);
        if (!Number.isInteger(v) || v < 0) throw new CliError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be a whole number ≥ 0`, EXIT.usage);
        return v;
      };
      const payload: CommandPayloadMap['CreatePolicy'] = {
        name: String(o['name']),
        selector: {
          ...(o['vm'] ? { names: o['vm'] as string[] } : {}),
          ...(o['tag'] ? { tags: o['tag'] as string[] } : {}),
          ...(o['hypervisor'] ? { hypervisor: String(o['hypervisor']) } : {}),
        },
        schedule: { cron: String(o['cron']), timezone: String(o['timezone']), ...(window ? { window } : {}) },
        retention: { last: num('keepLast'), daily: num('keepDaily'), weekly: num('keepWeekly'), monthly: num('keepMonthly'), yearly: num('keepYearly') },
        repository: String(o['repository']),
        keyRef: String(o['key']),
        priority: num('priority'),
        ...(o['immutable'] ? { immutable: true } : {}),
        ...(bandwidth ? { bandwidthBytesPerSec: bandwidth } : {}),
        quiesce: quiesceOption(o['quiesce']),
        ...(o['rpo'] !== undefined ? { rpoMinutes: num('rpo') } : {}),
        ...(o['testRestore'] !== undefined ? { testRestore: testRestoreOption(o['testRestore']) } : {}),
      };
      if (o['global']) return (await import('./global-policy.ts')).createGlobalPolicy(s, payload, o);
      // One name, one policy: the name is how people refer to it (policy show|edit <name>).
      const same = (await s.catalogue.query('policy.list', {})).items.find((p) => p.name === payload.name && !p.deletedAt);
      if (same) {
        throw new CliError(`a policy named ${JSON.stringify(payload.name)} exists already (${same.policyId}); nothing was created`, EXIT.conflict,
          `choose another name, or change that one with \`cairn policy edit ${payload.name}\``);
      }
      const result = accepted(await s.bus.send('scheduler', 'CreatePolicy', payload), 'policy not created');
      output(s, result, () => `policy ${result.policyId} created`);
    }));
  policy.command('edit <policy>')
    .description('change a policy (by name or id): only the options given change; shortening retention needs a four-eyes approval (--approval)')
    .option('--name <name>', 'new name')
    .option('--vm <names...>', 'VM names it protects (replaces the selector)')
    .option('--tag <tags...>', 'protect VMs carrying all these tags (replaces the selector)')
    .option('--hypervisor <host>', 'protect every VM of this hypervisor host (replaces the selector)')
    .option('--cron <expr>', 'schedule, cron syntax (5 or 6 fields)')
    .option('--timezone <tz>', 'IANA time zone of the schedule')
    .option('--window <HH:MM-HH:MM>', 'scheduled jobs start only inside this window; "none" removes it')
    .option('--keep-last <n>').option('--keep-daily <n>').option('--keep-weekly <n>').option('--keep-monthly <n>').option('--keep-yearly <n>')
    .option('--priority <n>', 'higher runs first')
    .option('--bandwidth <rate>', 'most bytes per second each backup reads, e.g. 20MiB; "none" removes the limit')
    .option('--quiesce <mode>', 'required, preferred or off (see policy create)')
    .option('--rpo <minutes>', 'recovery-point objective in minutes; "none" goes back to the schedule\'s default')
    .option('--test-restore <json>', 'the test-restore schedule as JSON (see policy create); "none" removes it')
    .option('--approval <id>', 'a granted shorten-retention approval for this policy')
    .option('--global', 'at the hub: a global policy for several sites, signed by you, delivered to each (docs/sites.md)')
    .option('--to-sites <names...>', 'with --global: only these sites from now on')
    .option('--to-tag <tags...>', 'with --global: the sites carrying all these tags (cairn hub add-site --tag)')
    .option('--sign-with <keys...>', 'with --global: your operator key file at each site (a person\'s key is per site; --operator-key counts too)')
    .action(act(async (s, ref: string, o: Opts) => {
      if (o['global']) return (await import('./global-policy.ts')).editGlobalPolicy(s, ref, o);
      const { items } = await s.catalogue.query('policy.list', {});
      const p = items.find((x) => !x.deletedAt && (x.policyId === ref || x.name === ref));
      if (!p) throw new CliError(`unknown policy ${JSON.stringify(ref)}`, EXIT.notFound, `known policies: ${items.filter((x) => !x.deletedAt).map((x) => x.name).join(', ') || 'none'}`);
      const policyBody = editedPolicy(p, o);
      const name = policyBody.name;
      if (name !== p.name && items.some((x) => !x.deletedAt && x.name === name)) throw new CliError(`a policy named ${JSON.stringify(name)} exists already; nothing was changed`, EXIT.conflict);
      const result = accepted(await s.bus.send('scheduler', 'UpdatePolicy', { policy: policyBody, ...(o['approval'] ? { approvalId: String(o['approval']) } : {}) }), 'policy not changed');
      output(s, { ...result, policy: policyBody }, () => `policy ${result.policyId} (${name}) changed`);
    }));
  pagingOptions(policy.command('list').description('list policies, by name'), 'policies')
    .option('--global', 'at the hub: the global policies, and the version each selected site runs (drift)')
    .action(act(async (s, o: Opts) => {
    if (o['global']) return (await import('./global-policy.ts')).listGlobalPolicies(s);
    const choice = pagingChoice(o);
    const page = await collectPages((p) => s.catalogue.query('policy.list', p), choice);
    const { items } = page;
    printPage(s.json, page, choice, () => table(items.map((p) => ({
      policy: p.policyId, name: p.name, schedule: `${p.schedule.cron} (${p.schedule.timezone})`,
      selector: JSON.stringify(p.selector), repository: p.repository, state: p.pausedAt ? 'paused' : 'active',
      managed: p.managedBy === 'hub' ? `hub v${p.globalVersion ?? '?'}` : 'local',
    })), ['policy', 'name', 'state', 'schedule', 'selector', 'repository', 'managed']));
  }));
  // Pause, resume, delete: by name or id; deleting keeps the policy's restore points.
  const policyState = (verb: 'pause' | 'resume' | 'delete', command: 'PausePolicy' | 'ResumePolicy' | 'DeletePolicy', description: string) => {
    const c = policy.command(`${verb} <policy>`).description(description);
    if (verb === 'delete') {
      c.option('--global', 'at the hub: withdraw a global policy (a signed statement; each site deletes its copy, restore points kept)')
        .option('--sign-with <keys...>', 'with --global: your operator key file at each site');
    }
    c.action(act(async (s, ref: string, o: Opts = {}) => {
      if (o['global']) return (await import('./global-policy.ts')).withdrawGlobalPolicy(s, ref, o);
      const { items } = await s.catalogue.query('policy.list', {});
      const p = items.find((x) => !x.deletedAt && (x.policyId === ref || x.name === ref));
      if (!p) throw new CliError(`unknown policy ${JSON.stringify(ref)}`, EXIT.notFound, `known policies: ${items.filter((x) => !x.deletedAt).map((x) => x.name).join(', ') || 'none'}`);
      const result = accepted(await s.bus.send('scheduler', command, { policyId: p.policyId }), `policy not ${verb}d`);
      output(s, result, () => `policy ${result.policyId} (${p.name}) ${verb}d${verb === 'delete' ? ': its restore points are kept' : ''}`);
    }));
  };
  policyState('pause', 'PausePolicy', 'pause a policy (by name or id): it schedules no new backups until resumed');
  policyState('resume', 'ResumePolicy', 'resume a paused policy: slots from now on are scheduled, missed ones are not');
  policyState('delete', 'DeletePolicy', 'delete a policy (by name or id): no new backups; its restore points are kept');
  policy.command('show <policy>').description('show one policy').action(act(async (s, ref: string) => {
    const { items } = await s.catalogue.query('policy.list', {});
    const p = items.find((x) => x.policyId === ref || x.name === ref);
    if (!p) throw new CliError(`unknown policy ${JSON.stringify(ref)}`, EXIT.notFound);
    output(s, p, () => JSON.stringify(p, null, 2));
  }));

  program.command('backup <vm>')
    .description('back up a VM now')
    .option('--full', 'read every allocated block, not only the changes')
    .option('--wait', 'wait for the job to end, showing progress')
    .option('--timeout <seconds>', 'with --wait: give up after this long', '3600')
    .option('--bandwidth <rate>', 'most bytes per second this backup reads, e.g. 20MiB (instead of its policy\'s limit)')
    .action(act(async (s, ref: string, o: Opts) => {
      const vmId = await resolveVm(s, ref);
      const { jobId } = accepted(await s.bus.send('scheduler', 'RequestBackup', {
        vmId, mode: o['full'] ? 'full' : 'auto', ...(o['bandwidth'] ? { bandwidthBytesPerSec: rate(String(o['bandwidth'])) } : {}),
      }, { idempotencyKey: randomUUID() }), 'backup not started');
      if (!o['wait']) {
        output(s, { jobId }, () => `job ${jobId} requested; follow it with \`cairn job watch ${jobId}\``);
        return;
      }
      if (!s.json) process.stderr.write(`job ${jobId} requested\n`);
      reportJob(s, await watchJob(s, jobId, Number(o['timeout']) * 1000));
    }));

  const job = program.command('job').description('backup and restore jobs');
  pagingOptions(job.command('list').description('jobs, newest first'), 'jobs', 50)
    .option('--state <state>', 'requested, running, completed, failed or cancelled')
    .option('--kind <kind>', 'backup or restore')
    .option('--vm <vm>', 'only this VM')
    .action(act(async (s, o: Opts) => {
      const choice = pagingChoice(o, 50);
      const req = {
        ...(o['state'] ? { state: o['state'] as JobView['state'] } : {}),
        ...(o['vm'] ? { vmId: await resolveVm(s, String(o['vm'])) } : {}),
        ...(o['kind'] ? { kind: o['kind'] as JobView['kind'] } : {}),
      };
      const page = await collectPages((p) => s.catalogue.query('job.list', { ...req, ...p }), choice);
      const { items } = page;
      printPage(s.json, page, choice, () => table(items.map(jobLine), ['job', 'kind', 'vm', 'state', 'trigger', 'requested', 'read', 'stored', 'restorePoint', 'reason']));
    }));
  job.command('show <job>').action(act(async (s, jobId: string) => reportJob(s, await s.catalogue.query('job.get', { jobId }))));
  job.command('watch <job>')
    .option('--timeout <seconds>', 'give up after this long', '86400')
    .action(act(async (s, jobId: string, o: Opts) => {
      // A restore job (stream restore-<id>) or a backup job (the catalogue's view); a job just
      // requested may not be known yet, so wait for either.
      const timeoutMs = Number(o['timeout']) * 1000;
      const since = Date.now();
      for (let said = false; ; said = true) {
        if (await isRestoreJob(s, jobId)) return watchRestore(s, jobId, timeoutMs - (Date.now() - since));
        if (await s.catalogue.query('job.get', { jobId }).then(() => true, () => false)) break;
        if (Date.now() - since > timeoutMs) throw new CliError(`no job ${jobId}`, EXIT.notFound);
        if (!said && !s.json) process.stderr.write(`waiting for job ${jobId} to appear\n`);
        await new Promise((r) => setTimeout(r, 300));
      }
      reportJob(s, await watchJob(s, jobId, timeoutMs - (Date.now() - since)));
    }));
  job.command('cancel <job>').option('--reason <text>').action(act(async (s, jobId: string, o: Opts) => {
    accepted(await s.bus.send('scheduler', 'CancelJob', { jobId, ...(o['reason'] ? { reason: String(o['reason']) } : {}) }), 'job not cancelled');
    output(s, { jobId, cancelled: true }, () => `job ${jobId} cancelled`);
  }));

}

/** restore-point, restore, restore-export. */
export function registerRestoreCommands(program: Command): void {
  const rp = program.command('restore-point').description('restore points');
  pagingOptions(rp.command('list').description('restore points, newest first'), 'restore points')
    .option('--vm <vm>', 'only this VM').option('--expired', 'include expired ones').action(act(async (s, o: Opts) => {
    const choice = pagingChoice(o);
    const req = { ...(o['vm'] ? { vmId: await resolveVm(s, String(o['vm'])) } : {}), ...(o['expired'] ? { includeExpired: true } : {}) };
    const page = await collectPages((p) => s.catalogue.query('restorePoint.list', { ...req, ...p }), choice);
    const { items } = page;
    printPage(s.json, page, choice, () => table(items.map((p) => ({
      restorePoint: p.restorePointId, vm: p.vmId, created: p.createdAt, kind: p.kind, size: bytes(p.sizeBytes),
      read: bytes(p.bytesRead), stored: bytes(p.bytesStored), disks: p.disks.map((d) => d.name).join(' '),
      bootTested: p.lastTestRestore ? `${p.lastTestRestore.status} ${p.lastTestRestore.at}` : '', damaged: p.damage ? `yes (${p.damage.damagedCount})` : '',
    })), ['restorePoint', 'vm', 'created', 'kind', 'size', 'read', 'stored', 'disks', 'bootTested', 'damaged']));
  }));

  rp.command('show <restorePoint>')
    .description('one restore point: its kind, parent, sizes and disks, full or incremental and why, consistency, the VM configuration it holds (--json: exact byte counts)')
    .option('--xml', 'print only the libvirt domain XML it holds')
    .action(act(async (s, restorePointId: string, o: Opts) => {
      const p = await s.catalogue.query('restorePoint.get', { restorePointId });
      if (o['xml']) { process.stdout.write(domainXmlOf(p)); return; }
      const snapshot = (await s.catalogue.query('job.get', { jobId: p.jobId }).catch(() => undefined))?.phases.find((ph) => ph.phase === 'snapshot')?.detail;
      output(s, p, () => [
        `restore point ${p.restorePointId} of VM ${p.vmId}: ${p.kind}${p.parentId ? ` on ${p.parentId}` : ''}, created ${p.createdAt} by job ${p.jobId}${p.policyId ? ` (policy ${p.policyId})` : ''}`,
        `  size ${bytes(p.sizeBytes)}, read ${bytes(p.bytesRead)}, stored ${bytes(p.bytesStored)}, saved ${bytes(p.savedBytes)}`,
        ...(p.expiredAt ? [`  expired ${p.expiredAt}: ${p.expiryReason ?? ''}`] : []),
        table(p.disks.map((d) => ({ disk: d.name, size: bytes(d.sizeBytes), read: bytes(d.bytesRead), stored: bytes(d.bytesStored), chunksNew: d.chunksNew, chunksReused: d.chunksReused })),
          ['disk', 'size', 'read', 'stored', 'chunksNew', 'chunksReused']),
        ...restorePointDetails(p, snapshot),
      ].join('\n'));
    }));

  rp.command('lock <restorePoint>')
    .description('make a restore point immutable until a time: no delete or overwrite before then, by anyone (extend only)')
    .option('--until <time>', 'ISO 8601 time, e.g. 2027-01-31T00:00:00Z')
    .option('--for <duration>', 'from now, e.g. 30d, 12h')
    .action(act(async (s, restorePointId: string, o: Opts) => {
      if (Boolean(o['until']) === Boolean(o['for'])) throw new CliError('give one of --until <time> or --for <duration>', EXIT.usage);
      const until = o['until'] ? new Date(String(o['until'])) : new Date(Date.now() + parseDuration(String(o['for'])));
      if (Number.isNaN(until.getTime())) throw new CliError(`cannot read time "${String(o['until'])}"`, EXIT.usage, 'use ISO 8601, e.g. 2027-01-31T00:00:00Z');
      const r = accepted(await s.bus.send('data-mover', 'LockRestorePoint', { restorePointId, retainUntil: until.toISOString() }, { timeoutMs: 600_000 }), 'restore point not locked');
      output(s, r, () => `restore point ${r.restorePointId} locked until ${r.retainUntil} (${r.objectsLocked} objects locked now)`);
    }));

  /** `--host`, `--network-map`, `--no-network` of a whole-VM restore onto libvirt. */
  const libvirtTarget = (o: Opts) => {
    const maps = (o['networkMap'] as string[] | undefined) ?? [];
    if (!o['host'] && (maps.length > 0 || o['network'] === false)) throw new CliError('--network-map and --no-network go with --host <libvirt hypervisor>', EXIT.usage);
    if (!o['host']) return {};
    const networkMap: Record<string, string> = {};
    for (const m of maps) {
      const [src, dst, ...rest] = m.split('=');
      if (!src || !dst || rest.length) throw new CliError(`--network-map takes src=dst, not ${JSON.stringify(m)}`, EXIT.usage);
      networkMap[src] = dst;
    }
    return { host: String(o['host']), ...(maps.length ? { networkMap } : {}), ...(o['network'] === false ? { noNetwork: true } : {}) };
  };

  // --storage: a directory, or (with --host, a name without a slash) a libvirt storage pool.
  const storageOf = (o: Opts): { storage?: string; storagePool?: string } => {
    if (!o['storage']) return {};
    const v = String(o['storage']);
    if (o['host'] && !v.includes('/') && v !== '.' && v !== '..') {
      if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/.test(v)) throw new CliError(`--storage ${JSON.stringify(v)} is neither a directory nor a libvirt storage pool name`, EXIT.usage);
      return { storagePool: v };
    }
    return { storage: resolve(v) };
  };

  program.command('restore <restorePoint>')
    .description('restore a disk of a restore point to a file, or the whole VM as a new VM (--vm), as a restore job (`cairn job watch <id>`); or serve a disk over NBD (--nbd)')
    .option('--to <file>', 'target file (raw unless --format qcow2)')
    .option('--nbd <export>', 'serve it read-write over NBD under this export name (writes go to an overlay)')
    .option('--vm <new-name>', 'restore the whole VM (every disk and its configuration) as a new VM with this name')
    .option('--storage <dir|pool>', 'with --vm: where the VM\'s directory is made (default: the data mover\'s restore directory /vms); with --host, a name without "/" is a libvirt storage pool the disks become volumes of')
    .option('--start', 'with --vm: start the restored VM')
    .option('--instant', 'with --vm [--host]: start the VM at once straight from the repository (instant recovery; `cairn instant finish|discard <id>` later)')
    .option('--keep-identity', 'with --vm: keep the original UUID and MAC addresses (default: new ones)')
    .option('--host <hypervisor>', 'with --vm: define it as a libvirt domain on this hypervisor (its name in cairn hypervisor add), from the domain XML the restore point keeps; a VMware hypervisor gets a VMware VM back as a new vSphere VM (raw disks uploaded to the datastore)')
    .option('--network-map <src=dst>', 'with --vm --host: connect NICs of network (or bridge) src to dst (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--no-network', 'with --vm --host: keep the NICs, disconnected (link down)')
    .option('--in-place', 'over the disks of the restore point\'s own VM (libvirt domain, or QEMU VM), which must be shut off (backed up first)')
    .option('--no-safety-backup', 'with --in-place: do not back up what is overwritten first')
    .option('--into-vm <vm>', 'with --disk and --host <vmware hypervisor>: upload the disk to the datastore of this existing vSphere VM and attach it to the VM as a new disk')
    .option('--disk <name>', 'which disk (default: the only one)')
    .option('--format <format>', 'raw or qcow2', 'raw')
    .option('--force', 'replace the target if it exists')
    .option('--wait', 'wait for the restore job to end, showing progress (the default for --to)')
    .option('--no-wait', 'with --to: print the restore job id and return at once')
    .option('--id <restoreId>', 'with --to, --vm or --instant: the restore job\'s (or session\'s) id (the same id again is the same one: safe to retry)')
    .option('--timeout <seconds>', 'give up after this long', '86400')
    .option('--bandwidth <rate>', 'with --to, --vm or --in-place: most bytes per second this restore writes, e.g. 20MiB (the host\'s and site\'s limits hold too)')
    .action(act(async (s, restorePointId: string, o: Opts) => {
      // Every form's work is the data mover's: nothing of this process is left once the action returns.
      exitWhenDone();
      if ([o['to'], o['nbd'], o['vm'], o['inPlace'], o['intoVm']].filter(Boolean).length !== 1) throw new CliError('give exactly one of --to <file>, --vm <new-name>, --into-vm <vm>, --in-place or --nbd <export>', EXIT.usage);
      const bandwidth = rate(o['bandwidth'] as string | undefined);
      if (bandwidth !== undefined && (o['nbd'] || o['instant'])) throw new CliError('--bandwidth limits restore jobs (--to, --vm, --in-place), not --nbd or --instant', EXIT.usage);
      const job = { wait: o['wait'] !== false, timeoutMs: Number(o['timeout']) * 1000, ...(o['id'] ? { restoreId: String(o['id']) } : {}), ...(bandwidth ? { bandwidthBytesPerSec: bandwidth } : {}) };
      const format = String(o['format']);
      if (format !== 'raw' && format !== 'qcow2') throw new CliError(`--format must be raw or qcow2, not ${format}`, EXIT.usage);
      if (o['instant']) {
        if (!o['vm']) throw new CliError('--instant needs --vm <new-name>', EXIT.usage);
        // Instant recovery: the VM runs from the repository within seconds (instant.command.ts).
        const instantId = o['id'] ? String(o['id']) : randomUUID();
        const r = accepted(await s.bus.send('data-mover', 'StartInstant', {
          instantId, restorePointId, vmName: String(o['vm']), start: Boolean(o['start']), ...(o['storage'] ? { storage: resolve(String(o['storage'])) } : {}),
          ...(o['host'] ? { host: String(o['host']) } : {}),
        }, { timeoutMs: Number(o['timeout']) * 1000, idempotencyKey: instantId }), 'instant recovery not started');
        output(s, r.view, () => `${instantLine(r.view)}
  ${r.view.running ? 'running' : `start it with ${r.view.libvirt ? `virsh start ${r.view.libvirt.domain}` : `${r.view.dir}/start.sh`}`}; keep it with \`cairn instant finish ${r.instantId}\`, throw it away with \`cairn instant discard ${r.instantId}\``);
        return;
      }
      if (o['inPlace']) {
        // Over the disks of the restore point's own VM (in-place-restore.ts in the data mover).
        const point = await s.catalogue.query('restorePoint.get', { restorePointId });
        const vm = (await s.catalogue.query('vm.list', {})).items.find((v) => v.vmId === point.vmId);
        if (!vm) throw new CliError(`the VM of restore point ${restorePointId} (${point.vmId}) is on no hypervisor Cairn knows now; restore it as a new VM with --vm`, EXIT.notFound);
        await startRestore(s, restorePointId, {
          kind: 'vm', vmName: vm.name, host: vm.hypervisor.host, inPlace: true, format, start: Boolean(o['start']), keepIdentity: true,
          safetyBackup: o['safetyBackup'] !== false,
        }, job);
        return;
      }
      if (o['intoVm']) {
        // One disk into an existing vSphere VM: written raw by the data mover, uploaded and attached by the coordinator.
        if (!o['host'] || !o['disk']) throw new CliError('--into-vm <vm> needs --disk <name> and --host <vmware hypervisor>', EXIT.usage);
        if (format !== 'raw') throw new CliError('--into-vm uploads the disk raw (a flat VMDK): --format qcow2 does not apply', EXIT.usage);
        if ((o['networkMap'] as string[] | undefined)?.length || o['network'] === false || o['start'] || o['keepIdentity']) {
          throw new CliError('--network-map, --no-network, --start and --keep-identity are for a whole VM (--vm), not --into-vm', EXIT.usage);
        }
        const storage = storageOf({ ...o, host: undefined });
        await startRestore(s, restorePointId, {
          kind: 'vm', vmName: String(o['intoVm']), host: String(o['host']), disks: [String(o['disk'])], attach: true,
          format: 'raw', start: false, keepIdentity: false, ...storage,
        }, job);
        return;
      }
      if (o['vm']) {
        // The whole VM: every disk and its configuration, as a new VM (restore-job.ts).
        await startRestore(s, restorePointId, {
          kind: 'vm', vmName: String(o['vm']), format, start: Boolean(o['start']), keepIdentity: Boolean(o['keepIdentity']),
          ...storageOf(o),
          ...libvirtTarget(o),
        }, job);
        return;
      }
      const to = o['to'] ? resolve(String(o['to'])) : undefined;
      if (to && !o['force'] && (await stat(to).then(() => true, () => false))) {
        throw new CliError(`${to} exists; nothing was changed`, EXIT.conflict, 'pass --force to replace it');
      }
      let disk = o['disk'] as string | undefined;
      if (!disk) {
        // A restore point of another site (disaster recovery) is known here as a replica.
        const point = await s.catalogue.query('restorePoint.get', { restorePointId }).catch(async (e: unknown) => {
          const { items } = await s.catalogue.query('replica.list', { restorePointId, site: s.site }).catch(() => ({ items: [] }));
          if (!items[0]) throw e;
          return items[0];
        });
        if (point.disks.length !== 1) throw new CliError(`restore point has ${point.disks.length} disks (${point.disks.map((d) => d.name).join(', ')}); choose one with --disk`, EXIT.usage);
        disk = point.disks[0]!.name;
      }
      if (to) {
        await startRestore(s, restorePointId, { kind: 'file', disk, path: to, format, overwrite: Boolean(o['force']) }, job);
        return;
      }
      const target = { kind: 'nbd-export' as const, exportName: String(o['nbd']) };
      const result = accepted(await s.bus.send('data-mover', 'RestoreDisk', {
        restorePointId, disk, target, format, ...(o['force'] ? { overwrite: true } : {}),
      }, { timeoutMs: Number(o['timeout']) * 1000 }), 'restore failed');
      output(s, result, () => result.nbd
        ? `serving ${disk} of ${restorePointId} at nbd+unix:///${result.nbd.exportName}?socket=${result.nbd.socket} (${bytes(result.sizeBytes)}, writes kept in an overlay); stop with \`cairn restore-export stop ${result.nbd.exportName}\``
        : `restored ${disk} of ${restorePointId} to ${result.path ?? to} (${bytes(result.sizeBytes)} in ${(result.durationMs / 1000).toFixed(1)} s)`);
    }, { bus: true, also: restoreRequest })); // every form sends; most then follow a restore job (loaded after the send)
  const rexp = program.command('restore-export').description('restore points served over NBD');
  rexp.command('list').description('the restore points the data mover serves over NBD now (`cairn restore <point> --nbd <name>`)')
    .action(act(async (s) => {
      const r = accepted(await s.bus.send('data-mover', 'ListRestoreExports', {}), 'exports not listed');
      output(s, r.items, () => table(r.items.map((x) => ({
        export: x.exportName, restorePoint: x.restorePointId, disk: x.disk, size: bytes(x.sizeBytes), since: x.since, for: x.purpose,
        uri: `nbd+unix:///${x.exportName}?socket=${x.socket}`,
      })), ['export', 'restorePoint', 'disk', 'size', 'since', 'for', 'uri']));
    }));
  rexp.command('stop <export>').description('stop serving; writes made to it are discarded')
    .action(act(async (s, exportName: string) => {
      accepted(await s.bus.send('data-mover', 'StopRestoreExport', { exportName }), 'export not stopped');
      output(s, { exportName, stopped: true }, () => `export ${exportName} stopped`);
    }));

}

/** events, catalogue. */
export function registerLogCommands(program: Command): void {
  const events = program.command('events').description('the event log');
  events.command('tail')
    .option('--job <id>', 'only this job')
    .option('--follow', 'keep printing new events')
    .option('-n, --lines <n>', 'events of history to print', '50')
    .action(act(async (s, o: Opts) => {
      const log = await s.eventLog();
      const jobId = o['job'] as string | undefined;
      const print = (r: { position: bigint; event: { time: string; type: string; streamId: string; actor: { id: string }; correlationId: string; causationId: string | null; data: unknown } }) => {
        const e = r.event;
        if (jobId && e.correlationId !== jobId && e.streamId !== `job-${jobId}`) return;
        process.stdout.write(s.json
          ? JSON.stringify({ position: Number(r.position), ...e }) + '\n'
          : `${String(r.position).padStart(6)} ${e.time} ${e.type.padEnd(22)} ${e.streamId} by ${e.actor.id}${e.causationId ? ` (caused by ${e.causationId})` : ''}\n`);
      };
      const head = await log.headPosition();
      const from = head > BigInt(o['lines'] as string) && !jobId ? head - BigInt(o['lines'] as string) : 0n;
      if (!o['follow']) {
        for await (const r of log.readAll({ fromPosition: from, onInvalid: () => undefined })) print(r);
        return;
      }
      const sub = log.subscribe({ from, onInvalid: () => undefined });
      process.once('SIGINT', () => { void sub.stop(); });
      for await (const r of sub) print(r);
    }));

  const catalogue = program.command('catalogue').description('read models');
  catalogue.command('rebuild').description('drop the read models and replay the log').action(act(async (s) => {
    const results = await s.catalogue.rebuild();
    output(s, results, () => results.map((r) => `replica ${r.replica}: ${r.events} events replayed in ${r.durationMs} ms`).join('\n'));
  }));
  catalogue.command('status').action(act(async (s) => {
    const st = await s.catalogue.query('catalogue.status', {});
    output(s, st, () => `catalogue ${st.replica}: position ${st.position}/${st.head} (lag ${st.lag})`);
  }));
}
