// `cairn instant list|show|finish|discard` (instant recovery sessions started with
// `cairn restore <point> --instant --vm <name>`), and `cairn serve-restore-point`, the exporter
// process a data mover starts for each session (not for people: it is hidden from help).
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type * as InstantFollowModule from './instant-follow.ts';
import { accepted, sessionAction } from '../cli-replies.ts';
import { CliError, EXIT } from '../cli-error.ts';
import { bytes, output, table } from '../session.ts';
import { instantLine, mirrorShare } from './instant-line.ts';

type Opts = Record<string, unknown>;
/** Following a finish loads the event log and the deciders: only when it runs (lazy-import.ts). */
const watchFinish: typeof InstantFollowModule.watchFinish = async (...a) => (await import('./instant-follow.ts')).watchFinish(...a);

const act = sessionAction;

export function registerInstantCommands(program: Command): void {
  const instant = program.command('instant').description('instant recovery sessions: VMs running straight from the repository (docs/restore.md)');
  instant.command('list')
    .description('the running sessions: state, overlay size (the guest\'s writes so far), mirror progress')
    .option('--ended', 'also finished, discarded and failed ones')
    .action(act(async (s, o: Opts) => {
      const r = accepted(await s.bus.send('data-mover', 'ListInstant', { all: Boolean(o['ended']) }), 'cannot list instant recoveries');
      output(s, r.items, () => r.items.length === 0 ? 'no instant recovery sessions' : table(r.items.map((v) => ({
        instant: v.instantId, vm: v.vmName, state: v.state, running: v.running ? `pid ${v.pid}` : 'no', overlay: bytes(v.overlayBytes),
        mirror: mirrorShare(v), restorePoint: v.restorePointId, dir: v.dir,
      })), ['instant', 'vm', 'state', 'running', 'overlay', 'mirror', 'restorePoint', 'dir']));
    }));
  instant.command('finish <instantId>')
    .description('mirror the VM\'s disks to local storage while it runs, pivot onto them and close the export (no guest write is lost)')
    .option('--storage <dir>', 'where the disks go (default: the session\'s directory)')
    .option('--format <format>', 'raw or qcow2', 'raw')
    .option('--no-wait', 'return once the mirror started (`cairn instant list` shows its progress)')
    .option('--timeout <seconds>', 'give up waiting after this long', '86400')
    .action(act(async (s, instantId: string, o: Opts) => {
      const format = String(o['format']);
      if (format !== 'raw' && format !== 'qcow2') throw new CliError(`--format must be raw or qcow2, not ${format}`, EXIT.usage);
      const r = accepted(await s.bus.send('data-mover', 'FinishInstant', {
        instantId, format, ...(o['storage'] ? { storage: resolve(String(o['storage'])) } : {}),
      }, { timeoutMs: 120_000 }), 'instant recovery not finished');
      if (o['wait'] === false || r.view.state === 'finished') {
        output(s, r.view, () => instantLine(r.view));
        return;
      }
      if (!s.json) process.stderr.write(`mirroring ${r.view.vmName}'s disks to local storage while it runs\n`);
      await watchFinish(s, instantId, Number(o['timeout']) * 1000);
    }));
  instant.command('discard <instantId>')
    .description('stop the VM and remove its exporter, overlays, sockets and directory (its writes are lost)')
    .action(act(async (s, instantId: string) => {
      const r = accepted(await s.bus.send('data-mover', 'DiscardInstant', { instantId }, { timeoutMs: 120_000 }), 'instant recovery not discarded');
      output(s, r.view, () => `instant recovery ${instantId} discarded: VM ${r.view.vmName} stopped, its exporter, overlays and sockets removed`);
    }));

  // The exporter of one session, started by a data mover (its own process: it outlives mover restarts).
  program.command('serve-restore-point', { hidden: true })
    .description('serve the disks of a restore point read-only over NBD on a unix socket until SIGTERM (started by the data mover for instant recovery)')
    .requiredOption('--repo <dir>', 'repository directory (passphrase from CAIRN_REPO_PASSPHRASE)')
    .requiredOption('--restore-point <id>', 'restore point')
    .requiredOption('--disks <names>', 'comma-separated disk names (each one an export of that name)')
    .requiredOption('--socket <path>', 'unix socket to serve on')
    .option('--download-limit <bytesPerSec>', 'most bytes per second read from the repository')
    .option('--shared-socket', 'any user may connect to the socket (QEMU under libvirt runs as its own user; the socket\'s directory keeps others out)')
    .action(async (o: { repo: string; restorePoint: string; disks: string; socket: string; downloadLimit?: string; sharedSocket?: boolean }) => {
      const passphrase = process.env['CAIRN_REPO_PASSPHRASE'];
      if (!passphrase) throw new CliError('CAIRN_REPO_PASSPHRASE is not set', EXIT.usage);
      const limit = o.downloadLimit ? Number(o.downloadLimit) : undefined;
      if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new CliError(`--download-limit must be a positive number of bytes per second, not ${o.downloadLimit}`, EXIT.usage);
      const [{ DirectoryBackend, openRepository, withBandwidthLimit }, { serveRestorePoint }] = await Promise.all([import('@cairn/repository'), import('../stack/restore-point-exporter.ts')]);
      const backend = new DirectoryBackend(resolve(o.repo));
      const repository = await openRepository(limit ? withBandwidthLimit(backend, { downloadBytesPerSec: limit }) : backend, { passphrase });
      const served = await serveRestorePoint(repository, o.restorePoint, o.disks.split(',').filter(Boolean), resolve(o.socket), { shared: o.sharedSocket === true });
      process.stdout.write(`serving ${o.disks} of ${o.restorePoint} on ${o.socket}\n`);
      await new Promise<void>((r) => { process.once('SIGINT', r); process.once('SIGTERM', r); });
      await served.close();
      await repository.close();
    });
}
