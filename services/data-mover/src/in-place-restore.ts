// In-place restore (`cairn restore <point> --in-place`), onto a libvirt domain or a QEMU VM: the
// plan writes every disk of the restore point over the image of the existing VM's disk of the same target (under a
// temporary name in the same directory, renamed over the image when complete), after three
// checks made once, before anything is written: the VM is shut off (the snapshot coordinator,
// PrepareInPlaceRestore: a libvirt domain's state; for QEMU its monitor not answering, and here
// no process holding an image), a VM under an immutable policy needs a granted four-eyes
// approval `restore-in-place` for this VM and restore point, and what is about to be
// overwritten is backed up first (a backup job through the scheduler, waited for) unless the
// request says not to. Pure decisions are exported for the unit spec.
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { verifyApproval, type KnownEvent, type Policy, type RestorePlannedDisk, type RestorePlannedVm, type RestoreRequestTarget } from '@cairn/contracts';
import { fold, type EventLog, type EventStreamReader } from '@cairn/eventlog';
import { policyDecider } from '@cairn/jobs';
import type { LibvirtVmConfig, QemuVmConfig } from '@cairn/hypervisor';
import type { Manifest } from '@cairn/repository';
import { RestoreJobRefused } from './restore-job.ts';

const run = promisify(execFile);

type VmTarget = Extract<RestoreRequestTarget, { kind: 'vm' }>;
export interface InPlaceDisks { domain: string; uuid: string; disks: Array<{ target: string; path: string; format: string }> }

export interface InPlaceDeps {
  readonly log: Pick<EventLog, 'readStream' | 'readAll'>;
  /** PrepareInPlaceRestore: the domain is shut off; its disks. */
  readonly prepare: (restoreId: string) => Promise<InPlaceDisks>;
  /** A backup of the VM through the scheduler, waited for (beating the work's heartbeat); resolves its restore point. */
  readonly safetyBackup: (vmId: string, restoreId: string, heartbeat: () => void) => Promise<string>;
  readonly heartbeat: () => void;
  /** QEMU: throws unless no process holds any of these images (default: imagesFree). */
  readonly imagesFree?: (paths: readonly string[]) => Promise<void>;
}

/**
 * Refuses while any process holds one of the images: QEMU's own image lock (`qemu-img info`
 * without -U fails on an image a QEMU has open for writing) and every process's open files.
 */
export async function imagesFree(paths: readonly string[]): Promise<void> {
  for (const p of paths) {
    const locked = await run('qemu-img', ['info', '--output=json', p]).then(() => undefined, (e: Error & { stderr?: string }) => (e.stderr ?? e.message).trim());
    if (locked && /lock/i.test(locked)) throw new RestoreJobRefused('conflict', `${p} is in use (${locked.split('\n')[0]}): an in-place restore needs the VM shut off; nothing was changed`);
  }
  const wanted = new Set(paths);
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (wanted.has(target)) {
        const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim().slice(0, 200);
        throw new RestoreJobRefused('conflict', `${target} is open in process ${pid} (${cmd}): an in-place restore needs the VM shut off; nothing was changed`);
      }
    }
  }
}

/** The immutable policies whose selector names this VM (by name, or by its hypervisor). */
export function immutablePoliciesOf(policies: ReadonlyArray<Pick<Policy, 'policyId' | 'immutable' | 'selector'>>, vm: string, host: string): string[] {
  return policies.filter((p) => p.immutable && ((p.selector.names ?? []).includes(vm) || p.selector.hypervisor === host)).map((p) => p.policyId);
}

/** Disk of the restore point → the image it overwrites (same target), or the reason it cannot. */
export function inPlaceDisks(restoreId: string, manifest: Manifest, current: InPlaceDisks): RestorePlannedDisk[] {
  return manifest.disks.map((d) => {
    const now = current.disks.find((c) => c.target === d.name);
    if (!now) throw new RestoreJobRefused('invalid', `domain ${current.domain} has no disk ${d.name} any more (it has ${current.disks.map((c) => c.target).join(', ') || 'none'}); restore it as a new VM instead`);
    if (!now.path.startsWith('/')) throw new RestoreJobRefused('invalid', `disk ${d.name} of ${current.domain} is not a local image (${now.path || 'network disk'}); restore it as a new VM instead`);
    if (now.format !== 'raw' && now.format !== 'qcow2') throw new RestoreJobRefused('invalid', `disk ${d.name} of ${current.domain} is ${now.format}: only raw and qcow2 images are restored in place`);
    return { disk: d.name, path: now.path, partialPath: join(dirname(now.path), `.${d.name}.cairn-restore-${restoreId}`), format: now.format, sizeBytes: d.sizeBytes };
  });
}

async function events(log: EventStreamReader, streamId: string): Promise<KnownEvent[]> {
  const out: KnownEvent[] = [];
  for await (const r of log.readStream(streamId)) out.push(r.event);
  return out;
}

/** The plan of an in-place restore; throws RestoreJobRefused for what no retry would change. */
export async function planInPlaceRestore(restoreId: string, manifest: Manifest, target: VmTarget, deps: InPlaceDeps): Promise<{ disks: RestorePlannedDisk[]; vm: RestorePlannedVm }> {
  const config = (manifest.vm.config as { hypervisor?: LibvirtVmConfig | QemuVmConfig } | undefined)?.hypervisor;
  if (config?.kind !== 'libvirt' && config?.kind !== 'qemu') throw new RestoreJobRefused('invalid', `restore point ${manifest.id} holds no configuration of its VM (made before configurations were recorded): restore its disks with --to`);
  if (config.kind === 'qemu' && target.start) throw new RestoreJobRefused('invalid', `${target.vmName} runs under plain QEMU: Cairn keeps no command line of it and does not start it; restore without --start and start it as before`);
  if (manifest.vm.name !== target.vmName) {
    throw new RestoreJobRefused('invalid', `restore point ${manifest.id} is of ${manifest.vm.name}, not ${target.vmName}: an in-place restore goes over the disks of the restore point's own VM`);
  }
  const host = target.host!;
  // Immutable policy: a second administrator must have approved this very act.
  const policies = new Map<string, KnownEvent[]>();
  for await (const r of deps.log.readAll({ category: 'policy' })) {
    policies.set(r.event.streamId, [...(policies.get(r.event.streamId) ?? []), r.event]);
  }
  const live = [...policies.values()].map((es) => fold(policyDecider, es)).filter((s) => s.policy && !s.deleted).map((s) => s.policy!);
  const immutable = immutablePoliciesOf(live, target.vmName, host);
  let approvalId: string | undefined;
  if (immutable.length > 0) {
    if (!target.approvalId) {
      throw new RestoreJobRefused('forbidden', `${target.vmName} is under immutable policy ${immutable.join(', ')}: overwriting its disks is a four-eyes act; ask for it (POST /v1/approvals {"action": {"kind": "restore-in-place", "vm": "${target.vmName}", "restorePointId": "${manifest.id}"}}) and the restore runs when a second administrator approves`);
    }
    // Checked unused when the request was accepted (RestoreJobs.request); here: for this act, by a second administrator.
    const verdict = verifyApproval(target.approvalId, (await events(deps.log, `approval-${target.approvalId}`)).filter((e) => e.type !== 'ApprovalExecuted'),
      (a) => a.kind === 'restore-in-place' && a.vm === target.vmName && a.restorePointId === manifest.id);
    if (!verdict.ok) throw new RestoreJobRefused(verdict.code === 'conflict' ? 'conflict' : 'forbidden', verdict.message);
    approvalId = target.approvalId;
  }
  const current = await deps.prepare(restoreId);
  const disks = inPlaceDisks(restoreId, manifest, current);
  // QEMU: no process may hold an image (a QEMU Cairn does not know of, started from the same files).
  if (config.kind === 'qemu') await (deps.imagesFree ?? imagesFree)(disks.map((d) => d.path));
  const safetyRestorePointId = target.safetyBackup === false ? undefined : await deps.safetyBackup(manifest.vm.id, restoreId, deps.heartbeat);
  if (config.kind === 'qemu') {
    return {
      disks,
      vm: {
        name: target.vmName, dir: dirname(disks[0]!.path), stagingDir: dirname(disks[0]!.path), uuid: config.uuid ?? '', macs: {}, start: false,
        config: config as unknown as RestorePlannedVm['config'],
        qemuInPlace: { host, ...(safetyRestorePointId ? { safetyRestorePointId } : {}), ...(approvalId ? { approvalId } : {}) },
      },
    };
  }
  return {
    disks,
    vm: {
      name: target.vmName, dir: dirname(disks[0]!.path), stagingDir: dirname(disks[0]!.path), uuid: current.uuid, macs: {}, start: target.start,
      config: config as unknown as RestorePlannedVm['config'],
      libvirt: {
        host, networkMap: {}, noNetwork: false,
        inPlace: { ...(safetyRestorePointId ? { safetyRestorePointId } : {}), ...(approvalId ? { approvalId } : {}) },
      },
    },
  };
}
