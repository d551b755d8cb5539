// `cairn restore-point show <id>`: one restore point in full: its disks, how it was taken
// (full or incremental and why, application- or crash-consistent and why) and the VM's
// configuration it holds (libvirt: the domain summary, host-specific paths and secret
// references; the domain XML itself with --xml).
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import { transportError } from '../cli-replies.ts';
import { bytes, output, table, withSession } from '../session.ts';

interface Summary {
  name?: string; machine?: string; vcpus?: number; memoryBytes?: number; firmware?: string;
  disks?: Array<{ target?: string; id?: string; format?: string; source?: string; file?: string; sizeBytes?: number }>;
  nics?: Array<{ mac?: string; model?: string; type?: string; source?: string; id?: string }>;
}

/** The configuration lines a person reads: what the VM was, then what only held on its host. */
export function describeVmConfig(config: Record<string, unknown> | null | undefined): string[] {
  if (!config) return ['configuration: not recorded (taken before Cairn kept VM configurations)'];
  const kind = String(config['kind'] ?? 'unknown');
  const s = (kind === 'libvirt' ? config['summary'] : config) as Summary;
  const lines = [`configuration (${kind}): ${s.name ?? ''}${s.machine ? `, machine ${s.machine}` : ''}${s.vcpus ? `, ${s.vcpus} vCPU` : ''}${s.memoryBytes ? `, ${bytes(s.memoryBytes)} memory` : ''}${s.firmware ? `, firmware ${s.firmware}` : ''}`];
  for (const d of s.disks ?? []) lines.push(`  disk ${d.target ?? d.id}: ${d.format ?? ''}${d.sizeBytes ? ` ${bytes(d.sizeBytes)}` : ''}`);
  for (const n of s.nics ?? []) lines.push(`  nic ${n.id ?? n.type ?? ''}${n.model ? ` ${n.model}` : ''}${n.mac ? ` ${n.mac}` : ''}${n.source ? ` on ${n.source}` : ''}`);
  for (const p of (config['hostPaths'] as Array<{ where: string; path: string }> | undefined) ?? []) lines.push(`  host-specific ${p.where}: ${p.path}`);
  for (const x of (config['secrets'] as Array<{ where: string; uuid?: string; usage?: string }> | undefined) ?? []) lines.push(`  secret reference ${x.where}: ${x.uuid ?? ''}${x.usage ? ` (${x.usage})` : ''}`);
  return lines;
}

export function registerRestorePointShowCommand(program: Command): void {
  const rp = program.commands.find((c) => c.name() === 'restore-point') ?? program.command('restore-point').description('restore points');
  rp.command('show <restorePoint>')
    .description('one restore point: disks, full or incremental and why, consistency, the VM configuration it holds')
    .option('--xml', 'print only the libvirt domain XML it holds')
    .action(async function (this: Command, restorePointId: string, o: { xml?: boolean }) {
      await withSession(this, async (s) => {
        try {
          const p = await s.catalogue.query('restorePoint.get', { restorePointId });
          if (o.xml) {
            const xml = p.vmConfig?.['domainXml'];
            if (typeof xml !== 'string') throw new CliError(`restore point ${restorePointId} holds no libvirt domain XML`, EXIT.notFound);
            process.stdout.write(xml.endsWith('\n') ? xml : `${xml}\n`);
            return;
          }
          const job = await s.catalogue.query('job.get', { jobId: p.jobId }).catch(() => undefined);
          const snapshot = job?.phases?.find((ph) => ph.phase === 'snapshot')?.detail;
          output(s, p, () => [
            `restore point ${p.restorePointId} of VM ${p.vmId}, ${p.kind}${p.parentId ? ` (parent ${p.parentId})` : ''}, taken ${p.createdAt} by job ${p.jobId}`,
            `consistency: ${p.consistency ?? 'not recorded'}${p.consistencyReason ? ` (${p.consistencyReason})` : ''}`,
            ...(snapshot ? [`snapshot: ${snapshot}`] : []),
            `size ${bytes(p.sizeBytes)}, read ${bytes(p.bytesRead)}, stored ${bytes(p.bytesStored)}`,
            table(p.disks.map((d) => ({ disk: d.name, size: bytes(d.sizeBytes), read: bytes(d.bytesRead), stored: bytes(d.bytesStored) })), ['disk', 'size', 'read', 'stored']),
            ...describeVmConfig(p.vmConfig),
          ].join('\n'));
        } catch (e) {
          transportError(e);
        }
      });
    });
}
