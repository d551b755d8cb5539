// How a data mover started by the CLI (`cairn up`, `cairn run data-mover`) starts the exporter
// of an instant recovery session: this CLI again, `cairn serve-restore-point`, with the
// repository's passphrase in its environment (never on its command line).
import { fileURLToPath } from 'node:url';

/** How a data mover starts an exporter (the shape of the data mover's `instantExporter` option). */
export type ExporterLauncher = (o: { readonly repository: string; readonly restorePointId: string; readonly disks: readonly string[]; readonly socket: string; readonly shared?: boolean }) =>
  { readonly command: string; readonly args: readonly string[]; readonly env: NodeJS.ProcessEnv } | undefined;

/**
 * The CLI's entry (tools/cli/bin/cairn.js): two levels up from this file in the sources
 * (src/stack/) and from the bundle (dist/<build>/) alike.
 */
export const CAIRN_BIN = fileURLToPath(new URL('../../bin/cairn.js', import.meta.url));

export function instantExporter(o: { readonly repo: string; readonly passphrase: string; readonly downloadLimit?: number }): ExporterLauncher {
  return ({ repository, restorePointId, disks, socket, shared }) => repository !== 'default' ? undefined : {
    command: process.execPath,
    args: [CAIRN_BIN, 'serve-restore-point', '--repo', o.repo, '--restore-point', restorePointId, '--disks', disks.join(','), '--socket', socket,
      ...(o.downloadLimit ? ['--download-limit', String(o.downloadLimit)] : []), ...(shared ? ['--shared-socket'] : [])],
    env: { ...process.env, CAIRN_REPO_PASSPHRASE: o.passphrase, CAIRN_LOG_LEVEL: 'warn' },
  };
}
