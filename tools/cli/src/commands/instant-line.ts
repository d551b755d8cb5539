// How the CLI shows an instant recovery session to people (`cairn instant list`, `restore --instant`).
import type { InstantView } from '@cairn/contracts';
import { bytes } from '../session.ts';

export const mirrorShare = (v: InstantView) => (v.mirror ? `${Math.round((v.mirror.bytesDone / Math.max(1, v.mirror.bytesTotal)) * 100)}%${v.mirror.ready ? ' ready' : ''}` : '');

/** One line about a session for people. */
export function instantLine(v: InstantView): string {
  const where = v.state === 'finished' ? `runs from ${v.disks.map((d) => d.path).join(', ')}` : `overlays ${bytes(v.overlayBytes)}`;
  return `instant recovery ${v.instantId}: VM ${v.vmName} ${v.state}${v.running ? (v.libvirt ? ` (libvirt domain ${v.libvirt.domain} on ${v.libvirt.host}, console ${v.serialLog})` : ` (pid ${v.pid}, console ${v.serialLog}, QMP ${v.qmpSocket})`) : ''}; ${where}${v.mirror ? `; mirror ${mirrorShare(v)}` : ''}`
    + (v.failure ? `; last failure in ${v.failure.step}: ${v.failure.reason}` : '');
}
