// Whole-VM restore: the plan (every disk of the restore point into a staging directory, a new
// UUID and MAC addresses unless the identity is kept), and the last steps once every disk is
// written: the configuration next to the disks, the staging directory renamed to the VM's
// directory (so a VM directory is complete or absent), then for QEMU a start script (run when
// asked), for libvirt (`--host`) the domain defined by the snapshot coordinator from the
// restore point's domain XML or the one a VMware VM's configuration translates into (and
// started when asked); in place over a QEMU VM's images, the
// coordinator checks its QEMU is still gone. Each step is idempotent for a redelivered job.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { EventDataMap, RestorePlannedDisk, RestorePlannedVm, RestoreRequestTarget } from '@cairn/contracts';
import { libvirtConfigFromVmware, newMac, qemuCommandLine, type LibvirtVmConfig, type QemuVmConfig } from '@cairn/hypervisor';
import type { Manifest } from '@cairn/repository';
import { RestoreJobRefused } from './restore-job.ts';

const run = promisify(execFile);
type VmTarget = Extract<RestoreRequestTarget, { kind: 'vm' }>;
export type RestoredVm = NonNullable<EventDataMap['RestoreCompleted']['vm']>;
/** Has the snapshot coordinator define (and start) a libvirt restore's domain (DefineRestoredVm). */
export type DefineRestoredVm = (restoreId: string) => Promise<{ host: string; domain: string; uuid: string; macs: string[]; started: boolean; vmware?: { moref: string; attached?: string[] } }>;

const files = (dir: string) => ({ config: join(dir, 'vm.json'), script: join(dir, 'start.sh'), qmp: join(dir, 'qmp.sock'), serial: join(dir, 'serial.log'), pid: join(dir, 'qemu.pid') });

/** Decides where every disk goes and the new VM's identity; refuses a restore point without a configuration. */
export function planVmRestore(restoreId: string, manifest: Manifest, target: VmTarget, dir: string): { disks: RestorePlannedDisk[]; vm: RestorePlannedVm } {
  // The manifest keeps the hypervisor's configuration under `hypervisor` (data-mover.service.ts).
  const config = (manifest.vm.config as { hypervisor?: { kind?: string } } | undefined)?.hypervisor;
  const stagingDir = `${dir}.cairn-restore-${restoreId}`;
  const ext = target.format === 'qcow2' ? 'qcow2' : 'raw';
  const missing = (target.disks ?? []).filter((n) => !manifest.disks.some((d) => d.name === n));
  if (missing.length > 0) throw new RestoreJobRefused('not_found', `restore point ${manifest.id} has no disk ${missing.join(', ')} (has ${manifest.disks.map((d) => d.name).join(', ')})`);
  if (target.attach && (!target.host || config?.kind !== 'vmware')) {
    throw new RestoreJobRefused('invalid', target.host
      ? `restore point ${manifest.id} is not of a VMware VM (${config?.kind ?? 'no configuration'}): only a VMware VM's disk is attached to a vSphere VM`
      : 'attaching disks to an existing VM names its VMware hypervisor (host)');
  }
  if (target.attach && target.format !== 'raw') throw new RestoreJobRefused('invalid', 'disks attached to a vSphere VM are uploaded raw (flat VMDKs): restore with format raw');
  const chosen = target.disks ? manifest.disks.filter((d) => target.disks!.includes(d.name)) : manifest.disks;
  const disks = chosen.map((d) => ({
    disk: d.name, path: join(dir, `${d.name}.${ext}`), writePath: join(stagingDir, `${d.name}.${ext}`),
    partialPath: join(stagingDir, `${d.name}.${ext}.partial`), format: target.format, sizeBytes: d.sizeBytes,
  }));
  const keep = target.keepIdentity;
  if (target.host) {
    // A VMware VM goes to KVM as the libvirt domain its configuration translates into (its disks as vda…),
    // or back into vSphere when the host is a VMware hypervisor: the plan keeps the VMware configuration
    // and the coordinator, which knows the host's kind, translates it or creates the vSphere VM.
    const domain = config?.kind === 'vmware' ? libvirtConfigFromVmware(config as Record<string, unknown>) as unknown as typeof config : config;
    if (domain?.kind !== 'libvirt') {
      throw new RestoreJobRefused('invalid', `restore point ${manifest.id} holds no libvirt domain XML (${config?.kind ? `its VM ran under ${config.kind}: restore it without --host` : 'made before configurations were recorded'})`);
    }
    const kept = config?.kind === 'vmware' ? config : domain;
    const lv = domain as unknown as LibvirtVmConfig;
    const macs = Object.fromEntries(lv.summary.nics.map((n, i) => [`nic${i}`, keep && n.mac ? n.mac : newMac()]));
    return {
      disks,
      vm: {
        name: target.vmName, dir, stagingDir, uuid: keep && lv.summary.uuid ? lv.summary.uuid : randomUUID(), macs, start: target.start,
        config: kept as RestorePlannedVm['config'],
        libvirt: {
          host: target.host, networkMap: { ...(target.networkMap ?? {}) }, noNetwork: target.noNetwork ?? false,
          ...(target.storagePool ? { pool: target.storagePool } : {}), ...(target.attach ? { attach: true } : {}),
        },
      },
    };
  }
  if (config?.kind !== 'qemu') {
    throw new RestoreJobRefused('invalid', config?.kind === 'libvirt'
      ? `restore point ${manifest.id} is of a libvirt domain: name the libvirt hypervisor to define it on with --host`
      : `restore point ${manifest.id} holds no QEMU configuration of its VM (made before configurations were recorded, or by another hypervisor); restore its disks one by one with --to`);
  }
  const qemu = config as unknown as QemuVmConfig;
  const macs = Object.fromEntries(qemu.nics.map((n) => [n.id, keep && n.mac ? n.mac : newMac()]));
  return { disks, vm: { name: target.vmName, dir, stagingDir, uuid: keep && qemu.uuid ? qemu.uuid : randomUUID(), macs, start: target.start, config: config as RestorePlannedVm['config'] } };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

async function alive(pidFile: string): Promise<number | undefined> {
  const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try { process.kill(pid, 0); return pid; } catch { return undefined; }
}

/** Writes the configuration and start script, puts the VM directory in place, starts it when asked. */
export async function finishVmRestore(plan: RestorePlannedVm, disks: readonly RestorePlannedDisk[], restoreId: string, define?: DefineRestoredVm): Promise<RestoredVm> {
  if (plan.libvirt) return finishLibvirtRestore(plan, disks, restoreId, define);
  if (plan.qemuInPlace) {
    // The images were written over the QEMU VM's own; the coordinator checks its QEMU is still gone.
    if (!define) throw new Error('this data mover cannot reach the snapshot coordinator to finish an in-place restore');
    await define(restoreId);
    return { name: plan.name, dir: plan.dir, uuid: plan.uuid, macs: {}, started: false, serialLog: '',
      qemuInPlace: { host: plan.qemuInPlace.host, ...(plan.qemuInPlace.safetyRestorePointId ? { safetyRestorePointId: plan.qemuInPlace.safetyRestorePointId } : {}) } };
  }
  const final = files(plan.dir);
  if (await exists(plan.stagingDir)) {
    const staged = files(plan.stagingDir);
    const argv = qemuCommandLine(plan.config as unknown as QemuVmConfig, {
      name: plan.name, uuid: plan.uuid, macs: plan.macs, qmpSocket: final.qmp, serialLog: final.serial, pidFile: final.pid,
      disks: disks.map((d) => ({ name: d.disk, file: d.path, format: d.format })),
    });
    const quote = (a: string) => (/^[A-Za-z0-9_./:=,@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
    await writeFile(staged.config, JSON.stringify({ name: plan.name, uuid: plan.uuid, macs: plan.macs, config: plan.config, disks: disks.map((d) => ({ disk: d.disk, path: d.path, format: d.format })) }, null, 2) + '\n', { mode: 0o600 });
    await writeFile(staged.script, `#!/bin/sh\n# Starts the VM ${plan.name} restored by Cairn (network devices are not connected to any network).\nexec ${argv.map(quote).join(' ')}\n`, { mode: 0o700 });
    await mkdir(join(plan.dir, '..'), { recursive: true });
    await rename(plan.stagingDir, plan.dir);
  } else if (!(await exists(final.script))) {
    throw new Error(`neither ${plan.stagingDir} nor ${plan.dir} holds the restored VM`);
  }
  let pid = await alive(final.pid);
  if (plan.start && pid === undefined) {
    await run('/bin/sh', [final.script], { timeout: 120_000 }).catch((e: Error & { stderr?: string }) => {
      throw new Error(`the restored VM ${plan.name} did not start: ${(e.stderr ?? e.message).trim().slice(0, 2000)}`);
    });
    pid = await alive(final.pid);
  }
  return {
    name: plan.name, dir: plan.dir, uuid: plan.uuid, macs: plan.macs, started: pid !== undefined, ...(pid !== undefined ? { pid } : {}),
    qmpSocket: final.qmp, serialLog: final.serial, startScript: final.script,
  };
}

/** libvirt: the disks and vm.json put in place, then the domain defined (and started) by the coordinator. */
async function finishLibvirtRestore(plan: RestorePlannedVm, disks: readonly RestorePlannedDisk[], restoreId: string, define?: DefineRestoredVm): Promise<RestoredVm> {
  if (!define) throw new Error('this data mover cannot reach the snapshot coordinator to define a libvirt domain');
  if (plan.libvirt?.inPlace) {
    // The disks went over the domain's own images; the coordinator checks it is still shut off and starts it when asked.
    const d = await define(restoreId);
    return { name: plan.name, dir: plan.dir, uuid: d.uuid, macs: Object.fromEntries(d.macs.map((m, i) => [`nic${i}`, m])), started: d.started, serialLog: '',
      libvirt: { host: d.host, domain: d.domain, ...(plan.libvirt.inPlace.safetyRestorePointId ? { safetyRestorePointId: plan.libvirt.inPlace.safetyRestorePointId } : {}) } };
  }
  const final = files(plan.dir);
  if (await exists(plan.stagingDir)) {
    await writeFile(files(plan.stagingDir).config, JSON.stringify({ name: plan.name, uuid: plan.uuid, macs: plan.macs, libvirt: plan.libvirt, config: plan.config, disks: disks.map((d) => ({ disk: d.disk, path: d.path, format: d.format })) }, null, 2) + '\n', { mode: 0o600 });
    await mkdir(join(plan.dir, '..'), { recursive: true });
    await rename(plan.stagingDir, plan.dir);
  } else if (!(await exists(final.config))) {
    throw new Error(`neither ${plan.stagingDir} nor ${plan.dir} holds the restored VM`);
  }
  // QEMU runs as libvirt's user: it must pass through the directory (libvirt gives it the images).
  await chmod(plan.dir, 0o711);
  const d = await define(restoreId);
  if (d.vmware) {
    return {
      name: plan.name, dir: plan.dir, uuid: d.uuid, macs: {}, started: d.started, serialLog: '',
      vmware: { host: d.host, vm: d.domain, moref: d.vmware.moref, ...(d.vmware.attached ? { attached: d.vmware.attached } : {}) },
    };
  }
  return {
    name: plan.name, dir: plan.dir, uuid: d.uuid, macs: Object.fromEntries(d.macs.map((m, i) => [`nic${i}`, m])), started: d.started,
    serialLog: final.serial, libvirt: { host: d.host, domain: d.domain },
  };
}
