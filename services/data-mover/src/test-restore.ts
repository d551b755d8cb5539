// Test restores: a restore point booted in isolation and judged. Each disk is served over NBD
// from the repository with a copy-on-write overlay (RestoreExports: the restore point never
// changes, writes are thrown away), QEMU boots it with no network device at all (`-nic none`;
// only when TCP ports are to be checked, a user-mode network with `restrict=on`: no route out),
// the checks run (a pattern on the serial console, then the guest agent, TCP ports and an
// operator script when asked: test-restore-checks.ts), a PNG of the console is taken (QMP
// `screendump`), and everything is torn down whatever happened: QEMU, exports, overlays, sockets.
// Events in `testrestore-<id>`: TestRestoreStarted, then TestRestorePassed or TestRestoreFailed.
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newEvent, type Actor, type EventDataMap } from '@cairn/contracts';
import type { EventAppender } from '@cairn/eventlog';
import { QmpClient, connectStartedQmp } from '@cairn/hypervisor';
import type { Repository } from '@cairn/repository';
import type { RestoreExports } from './restore-exports.ts';
import { agentChecks, freeLoopbackPort, scriptCheck, tcpCheck, type CheckResult } from './test-restore-checks.ts';

export interface TestRestoreBoot {
  /** Direct kernel boot (a guest without a boot loader); else the disk's own firmware boot. */
  readonly kernel?: string;
  readonly initrd?: string;
  readonly append?: string;
  readonly memoryMiB?: number;
}

export interface TestRestoreRequest {
  readonly restorePointId: string;
  /** Passes when this text appears on the serial console. */
  readonly serialPattern: string;
  /** How long the checks wait (default 180 s: TCG under load is slow). */
  readonly timeoutMs?: number;
  readonly boot?: TestRestoreBoot;
  readonly testRestoreId?: string;
  /** The guest agent must answer (`guest-ping`, its OS); `exec` runs a command through it (exit 0 passes). */
  readonly agent?: { readonly exec?: readonly string[] };
  /** Guest TCP ports that must answer on the isolated network. */
  readonly tcpPorts?: readonly number[];
  /** An operator script (a file the data mover's operator placed) run against the booted VM. */
  readonly script?: { readonly name: string; readonly file: string; readonly timeoutMs?: number };
  /** The policy whose schedule asked for it. */
  readonly policyId?: string;
}

export interface TestRestoreDeps {
  readonly log: EventAppender;
  readonly site: string;
  readonly actor: Actor;
  readonly repository: Pick<Repository, 'getManifest' | 'openDisk'>;
  readonly exports: RestoreExports;
  /** Where the run's socket, serial log and the kept screenshot go. */
  readonly workDir: string;
}

export type TestRestoreOutcome =
  | { readonly passed: true; readonly event: EventDataMap['TestRestorePassed'] }
  | { readonly passed: false; readonly event: EventDataMap['TestRestoreFailed'] };

/** Console lines that end a boot for good: failing at once beats waiting out the timeout. */
const FATAL = ['Kernel panic - not syncing', 'No working init found', 'Dropping to a shell!', 'Gave up waiting for root'];

const tail = (text: string) => text.split('\n').slice(-40).join('\n').slice(-8000);

export async function runTestRestore(deps: TestRestoreDeps, req: TestRestoreRequest): Promise<TestRestoreOutcome> {
  const started = Date.now();
  const id = req.testRestoreId ?? randomUUID();
  const streamId = `testrestore-${id}`;
  const meta = { site: deps.site, actor: deps.actor, streamId, correlationId: streamId };
  const manifest = await deps.repository.getManifest(req.restorePointId);
  const vmId = manifest.vm.id;
  const checks = [`serial:${req.serialPattern}`.slice(0, 256),
    ...(req.agent ? ['agent:guest-ping'] : []), ...(req.agent?.exec ? [`agent:exec:${req.agent.exec.join(' ')}`.slice(0, 256)] : []),
    ...(req.tcpPorts ?? []).map((p) => `tcp:${p}`), ...(req.script ? [`script:${req.script.name}`] : [])];
  await deps.log.append(streamId, [newEvent('TestRestoreStarted', { testRestoreId: id, restorePointId: req.restorePointId, vmId, checks, ...(req.policyId ? { policyId: req.policyId } : {}) }, meta)], { expectedRevision: 'no_stream' });

  const dir = join(deps.workDir, `tr-${id.slice(0, 8)}`);
  await mkdir(dir, { recursive: true });
  const qmpPath = join(dir, 'qmp.sock');
  const serialLog = join(dir, 'serial.log');
  const agentSocket = join(dir, 'qga.sock');
  await writeFile(serialLog, '');
  const results: CheckResult[] = [];
  const forwards = new Map<number, number>();
  const exportNames: string[] = [];
  let qemu: ReturnType<typeof spawn> | undefined;
  let qmp: QmpClient | undefined;
  let screenshot: EventDataMap['TestRestorePassed']['screenshot'] = null;
  let failed: { check: string; reason: string } | undefined;
  try {
    const drives: string[] = [];
    for (const [i, d] of manifest.disks.entries()) {
      const name = `testrestore-${id}-${i}`;
      const served = await deps.exports.add(name, await deps.repository.openDisk(req.restorePointId, d.name), { restorePointId: req.restorePointId, disk: d.name, purpose: 'test-restore' });
      exportNames.push(name);
      drives.push('-blockdev', `driver=nbd,server.type=unix,server.path=${served.socket},export=${name},node-name=d${i}`,
        '-device', `virtio-blk-pci,drive=d${i},id=disk${i}`);
    }
    const boot = req.boot ?? {};
    for (const p of req.tcpPorts ?? []) forwards.set(p, await freeLoopbackPort());
    // No network device at all unless ports are checked; then user-mode networking that lets
    // nothing out (`restrict=on`) and only the loopback forwards in.
    const net = forwards.size === 0 ? ['-nic', 'none']
      : ['-netdev', `user,id=n0,restrict=on,${[...forwards].map(([g, h]) => `hostfwd=tcp:127.0.0.1:${h}-:${g}`).join(',')}`, '-device', 'virtio-net-pci,netdev=n0'];
    const agent = req.agent ? ['-chardev', `socket,path=${agentSocket},server=on,wait=off,id=qga0`,
      '-device', 'virtio-serial-pci,id=vser0', '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0'] : [];
    const args = ['-M', 'q35', '-accel', 'tcg', '-m', String(boot.memoryMiB ?? 512), '-smp', '1', '-nodefaults', '-no-reboot',
      '-display', 'none', '-vga', 'std', ...net, ...agent,
      '-serial', `file:${serialLog}`, '-qmp', `unix:${qmpPath},server=on,wait=off`,
      ...(boot.kernel ? ['-kernel', boot.kernel] : []), ...(boot.initrd ? ['-initrd', boot.initrd] : []), ...(boot.append ? ['-append', boot.append] : []),
      ...drives];
    let stderr = '';
    const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    qemu = proc;
    proc.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    let spawnError: Error | undefined;
    proc.once('error', (e) => { spawnError = e; });
    try {
      qmp = await connectStartedQmp(qmpPath, { gone: () => proc.exitCode !== null || spawnError !== undefined });
    } catch (e) {
      throw Object.assign(new Error(`QEMU did not answer on its monitor within 20 s (${(e as Error).message}): ${stderr.trim()}`), { check: 'boot' });
    }
    if (!qmp) throw Object.assign(spawnError ?? new Error(`QEMU did not start: ${stderr.trim()}`), { check: 'boot' });
    // The check: the pattern on the serial console before the time is up (or the guest stops).
    const until = Date.now() + (req.timeoutMs ?? 180_000);
    for (;;) {
      const text = await readFile(serialLog, 'utf8');
      if (text.includes(req.serialPattern)) { results.push({ check: checks[0]!, ok: true, detail: `"${req.serialPattern}" appeared after ${Date.now() - started} ms` }); break; }
      const fatal = FATAL.find((f) => text.includes(f));
      if (fatal) { failed = { check: checks[0]!, reason: `"${fatal}" on the console before "${req.serialPattern}": ${text.slice(text.indexOf(fatal)).split('\n')[0]!.slice(0, 300)}` }; break; }
      if (proc.exitCode !== null || proc.signalCode !== null) { failed = { check: checks[0]!, reason: `the VM stopped before "${req.serialPattern}" appeared on its console` }; break; }
      if (Date.now() > until) { failed = { check: checks[0]!, reason: `"${req.serialPattern}" did not appear on the console within ${req.timeoutMs ?? 180_000} ms` }; break; }
      await new Promise((r) => setTimeout(r, 250));
    }
    // The other checks, in order, once the guest is up; each waits until the same deadline.
    if (!failed) {
      if (req.agent) results.push(...await agentChecks(agentSocket, until, req.agent.exec));
      const usernet = () => qmp!.execute<string>('human-monitor-command', { 'command-line': 'info usernet' });
      for (const [g, h] of forwards) results.push(await tcpCheck(g, h, usernet, until));
      if (req.script) {
        results.push(await scriptCheck(req.script.file, req.script.name, {
          testRestoreId: id, restorePointId: req.restorePointId, vmId, qmpSocket: qmpPath, serialLog, forwards, ...(req.agent ? { agentSocket } : {}),
        }, req.script.timeoutMs ?? 120_000));
      }
      const bad = results.find((r) => !r.ok);
      if (bad) failed = { check: bad.check, reason: bad.detail || 'failed' };
    }
    if (proc.exitCode === null) screenshot = await takeScreenshot(qmp, join(deps.workDir, 'screenshots', `${id}.png`)).catch(() => null);
  } catch (e) {
    failed = { check: (e as { check?: string }).check ?? 'boot', reason: (e as Error).message.slice(0, 4000) };
  } finally {
    // Torn down whatever happened: the VM, its monitor, the exports and their overlays.
    await qmp?.close().catch(() => undefined);
    if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
      const exited = new Promise<void>((r) => qemu!.once('exit', () => r()));
      qemu.kill('SIGKILL');
      await exited;
    }
    for (const name of exportNames) await deps.exports.remove(name).catch(() => undefined);
  }
  const consoleTail = tail(await readFile(serialLog, 'utf8').catch(() => ''));
  await rm(dir, { recursive: true, force: true });
  const durationMs = Date.now() - started;
  if (failed) {
    const event: EventDataMap['TestRestoreFailed'] = {
      testRestoreId: id, restorePointId: req.restorePointId, vmId, check: failed.check, reason: failed.reason,
      results: results.some((r) => r.check === failed!.check) ? results : [...results, { check: failed.check, ok: false, detail: failed.reason }], consoleTail, screenshot, durationMs,
    };
    await deps.log.append(streamId, [newEvent('TestRestoreFailed', event, meta)], { expectedRevision: 0n });
    return { passed: false, event };
  }
  const event: EventDataMap['TestRestorePassed'] = {
    testRestoreId: id, restorePointId: req.restorePointId, vmId, results, screenshot, durationMs,
  };
  await deps.log.append(streamId, [newEvent('TestRestorePassed', event, meta)], { expectedRevision: 0n });
  return { passed: true, event };
}

/** A PNG of the VM's display (QMP screendump), kept with its SHA-256. */
async function takeScreenshot(qmp: QmpClient, file: string): Promise<EventDataMap['TestRestorePassed']['screenshot']> {
  await mkdir(join(file, '..'), { recursive: true });
  await qmp.execute('screendump', { filename: file, format: 'png' });
  const png = await readFile(file);
  return { file, sha256: createHash('sha256').update(png).digest('hex'), bytes: png.byteLength };
}
