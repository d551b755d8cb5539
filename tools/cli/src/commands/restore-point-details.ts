// What `cairn restore-point show` adds about how a restore point was taken: full or
// incremental and why (the job's snapshot phase), application- or crash-consistent and why,
// and the VM configuration it holds (libvirt: the domain summary, host-specific paths and
// secret references; VMware: the same summary with the datastore paths as host-specific; `--xml`
// prints the libvirt domain XML itself).
import type { RestorePointView } from '@cairn/catalogue-client';
import { CliError, EXIT } from '../cli-error.ts';
import { bytes } from '../session.ts';

interface Summary {
  name?: string; machine?: string; vcpus?: number; memoryBytes?: number; firmware?: string;
  disks?: Array<{ target?: string; id?: string; format?: string; sizeBytes?: number }>;
  nics?: Array<{ mac?: string; model?: string; type?: string; source?: string; id?: string }>;
}

/** The configuration lines a person reads: what the VM was, then what only held on its host. */
export function describeVmConfig(config: Record<string, unknown> | null | undefined): string[] {
  if (!config) return ['  configuration: not recorded (taken before Cairn kept VM configurations)'];
  const kind = String(config['kind'] ?? 'unknown');
  const s = (kind === 'libvirt' ? config['summary'] : config) as Summary;
  const lines = [`  configuration (${kind}): ${s.name ?? ''}${s.machine ? `, machine ${s.machine}` : ''}${s.vcpus ? `, ${s.vcpus} vCPU` : ''}${s.memoryBytes ? `, ${bytes(s.memoryBytes)} memory` : ''}${s.firmware ? `, firmware ${s.firmware}` : ''}`];
  for (const d of s.disks ?? []) lines.push(`    disk ${d.target ?? d.id}: ${d.format ?? ''}${d.sizeBytes ? ` ${bytes(d.sizeBytes)}` : ''}`);
  for (const n of s.nics ?? []) lines.push(`    nic ${n.id ?? n.type ?? ''}${n.model ? ` ${n.model}` : ''}${n.mac ? ` ${n.mac}` : ''}${n.source ? ` on ${n.source}` : ''}`);
  for (const p of (config['hostPaths'] as Array<{ where: string; path: string }> | undefined) ?? []) lines.push(`    host-specific ${p.where}: ${p.path}`);
  for (const x of (config['secrets'] as Array<{ where: string; uuid?: string; usage?: string }> | undefined) ?? []) lines.push(`    secret reference ${x.where}: ${x.uuid ?? ''}${x.usage ? ` (${x.usage})` : ''}`);
  return lines;
}

export function restorePointDetails(p: RestorePointView, snapshotDetail: string | null | undefined): string[] {
  return [
    `  consistency: ${p.consistency ?? 'not recorded'}${p.consistencyReason ? ` (${p.consistencyReason})` : ''}`,
    `  boot-tested: ${p.lastTestRestore ? `${p.lastTestRestore.status} at ${p.lastTestRestore.at}${p.lastTestRestore.durationMs !== null ? ` in ${Math.round(p.lastTestRestore.durationMs / 1000)} s` : ''} (${p.lastTestRestore.checks.join(', ')})${p.lastTestRestore.failedCheck ? `, failed ${p.lastTestRestore.failedCheck}` : ''} — test restore ${p.lastTestRestore.testRestoreId}` : 'never'}`,
    ...(p.damage ? [`  DAMAGED: verify ${p.damage.verifyId} at ${p.damage.at} found ${p.damage.damagedCount} object(s) it uses damaged; the next backup of the VM heals it`] : []),
    ...(snapshotDetail ? [`  snapshot: ${snapshotDetail}`] : []),
    ...describeVmConfig(p.vmConfig),
  ];
}

/** The libvirt domain XML a restore point holds, or a clear refusal. */
export function domainXmlOf(p: RestorePointView): string {
  const xml = p.vmConfig?.['domainXml'];
  if (typeof xml !== 'string') throw new CliError(`restore point ${p.restorePointId} holds no libvirt domain XML`, EXIT.notFound);
  return xml.endsWith('\n') ? xml : `${xml}\n`;
}
