// `cairn files ls|stat|get`: file-level restore over NATS. The data mover keeps a warm
// libguestfs appliance per (restore point, disk) being browsed: the first command on a
// restore point waits for it (20-75 s under TCG), the next ones answer at once.
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { CommandPayloadMap, GuestFileEntry } from '@cairn/contracts';
import { accepted, sessionAction } from '../cli-replies.ts';
import { CliError, EXIT } from '../cli-error.ts';
import { bytes, output, table } from '../session.ts';
import { FileProgressPrinter, progressMode, type FileProgress } from './files-progress.ts';

type Opts = Record<string, unknown>;

const act = sessionAction;

/** `ls -l`'s first column. */
export function modeString(e: Pick<GuestFileEntry, 'type' | 'mode'>): string {
  const t = { file: '-', directory: 'd', symlink: 'l', other: '?' }[e.type];
  const bits = 'rwxrwxrwx';
  let out = '';
  for (let i = 0; i < 9; i++) out += e.mode & (1 << (8 - i)) ? bits[i] : '-';
  return t + out;
}

function rows(entries: readonly GuestFileEntry[]) {
  return entries.map((e) => ({
    mode: modeString(e), owner: `${e.uid}:${e.gid}`, size: e.type === 'file' ? String(e.size) : '', modified: e.mtime.replace(/\.000Z$/, 'Z'),
    name: e.target !== undefined ? `${e.name} -> ${e.target}` : e.name,
  }));
}

const timeout = (o: Opts) => Number(o['timeout']) * 1000;

export function registerFilesCommands(program: Command): void {
  const files = program.command('files').description('files inside restore points: browse, download (docs/files.md)');
  files.command('ls <restorePoint> [path]')
    .description('list a directory of a restore point\'s disk; `/` lists its file systems (part1, part2, …)')
    .option('--disk <name>', 'disk of the restore point (default: its only disk)')
    .option('--timeout <seconds>', 'give up after this long (the first call starts an appliance)', '300')
    .action(act(async (s, restorePointId: string, path: string | undefined, o: Opts) => {
      const r = accepted(await s.bus.send('data-mover', 'BrowseFiles', {
        restorePointId, op: 'list', path: path ?? '/', ...(o['disk'] ? { disk: String(o['disk']) } : {}),
      }, { timeoutMs: timeout(o) }), 'cannot list');
      output(s, r, () => {
        const unreadable = r.filesystems.filter((f) => !f.mounted).map((f) => `  (${f.name}: ${f.type}, ${f.reason})`);
        return [table(rows(r.entries), ['mode', 'owner', 'size', 'modified', 'name']), ...((path ?? '/') === '/' ? unreadable : []),
          ...(r.truncated ? [`  (only the first ${r.entries.length} entries)`] : [])].join('\n');
      });
    }));
  files.command('stat <restorePoint> <path>')
    .description('type, size, mode, owner and time of one file')
    .option('--disk <name>', 'disk of the restore point')
    .option('--timeout <seconds>', 'give up after this long', '300')
    .action(act(async (s, restorePointId: string, path: string, o: Opts) => {
      const r = accepted(await s.bus.send('data-mover', 'BrowseFiles', {
        restorePointId, op: 'stat', path, ...(o['disk'] ? { disk: String(o['disk']) } : {}),
      }, { timeoutMs: timeout(o) }), 'cannot stat');
      const e = r.entries[0]!;
      output(s, e, () => [
        `path      ${e.path}`, `type      ${e.type}${e.target !== undefined ? ` -> ${e.target}` : ''}`,
        `size      ${e.size} (${bytes(e.size)}; ${bytes(e.allocated)} allocated)`, `mode      ${modeString(e)} (${e.mode.toString(8).padStart(4, '0')})`,
        `owner     ${e.uid}:${e.gid}`, `modified  ${e.mtime}`,
      ].join('\n'));
    }));
  files.command('get <restorePoint> <paths...>')
    .description('copy files or directories out (modes, owners, times, links and holes kept) to a directory, a tar or a zip archive on the data mover\'s host, or write files into a running VM through its guest agent')
    .option('--disk <name>', 'disk of the restore point')
    .option('--to <dir>', 'directory to copy into (each path under its own name); with --into-vm: the guest directory to write into (default: each file\'s own path)')
    .option('--tar <file>', 'write one directory as a tar archive')
    .option('--zip <file>', 'write the paths (files or directories) as one zip archive')
    .option('--into-vm <vm>', 'write regular files into this running VM (name or id) through its QEMU guest agent')
    .option('--overwrite', 'replace what exists at the target')
    .option('--timeout <seconds>', 'give up after this long', '3600')
    .action(act(async (s, restorePointId: string, paths: string[], o: Opts) => {
      let target: CommandPayloadMap['RestoreFiles']['target'];
      if (o['intoVm']) {
        if (o['tar'] || o['zip']) throw new CliError('--into-vm writes files into the guest: not with --tar or --zip', EXIT.usage);
        const { items } = await s.catalogue.query('vm.list', {});
        const vm = items.find((v) => v.vmId === o['intoVm']) ?? items.find((v) => v.name === o['intoVm']);
        if (!vm) throw new CliError(`unknown VM ${JSON.stringify(o['intoVm'])}`, EXIT.notFound);
        const to = o['to'] === undefined ? undefined : String(o['to']);
        if (to !== undefined && !to.startsWith('/')) throw new CliError(`--to ${JSON.stringify(to)}: with --into-vm, give an absolute path inside the guest`, EXIT.usage);
        target = { kind: 'vm', vmId: vm.vmId, ...(to ? { path: to } : {}) };
      } else {
        const given = (['to', 'tar', 'zip'] as const).filter((k) => o[k]);
        if (given.length !== 1) throw new CliError('give exactly one of --to <dir>, --tar <file>, --zip <file> or --into-vm <vm>', EXIT.usage);
        const kind = given[0] === 'to' ? 'directory' as const : given[0]!;
        target = { kind, path: resolve(String(o[given[0]!])) };
      }
      // The long ones (an archive, a write through the guest agent) show how far they got.
      const progressId = target.kind === 'zip' || target.kind === 'vm' ? randomUUID() : undefined;
      const printer = progressId === undefined ? undefined
        : new FileProgressPrinter(target.kind === 'zip' ? 'zip' : 'into vm', progressMode(s.json, process.stderr.isTTY), (t) => process.stderr.write(t), Date.now());
      // The contracts' schemas load on use, not at every start (docs/benchmarks.md "CLI start-up").
      const sub = progressId === undefined ? undefined : s.nc.subscribe((await import('@cairn/contracts')).progressSubject(s.site, progressId));
      if (sub && printer) void (async () => { for await (const m of sub) printer.update(m.json<FileProgress>(), Date.now()); })();
      let r;
      try {
        r = accepted(await s.bus.send('data-mover', 'RestoreFiles', {
          restorePointId, paths, target, ...(o['disk'] ? { disk: String(o['disk']) } : {}), ...(o['overwrite'] ? { overwrite: true } : {}),
          ...(progressId ? { progressId } : {}),
        }, { timeoutMs: timeout(o) }), 'files not restored');
      } finally {
        sub?.unsubscribe();
        printer?.end();
      }
      output(s, r, () => [
        target.kind === 'vm'
          ? `wrote ${r.files} files (${bytes(r.bytes)}) from ${r.disk} of ${restorePointId} into VM ${String(o['intoVm'])} in ${(r.durationMs / 1000).toFixed(1)} s:`
          : `restored ${r.files} files, ${r.directories} directories, ${r.symlinks} links (${bytes(r.bytes)}) from ${r.disk} of ${restorePointId} in ${(r.durationMs / 1000).toFixed(1)} s:`,
        ...r.written.map((w) => `  ${w}`),
        ...(r.skipped.length ? [`skipped (devices, sockets, FIFOs): ${r.skipped.join(', ')}`] : []),
      ].join('\n'));
    }));
  files.command('search <pattern>')
    .description('which restore points hold files matching a glob (`*.xlsx`: by name; `/part1/etc/**`: by path) or, with --regex, a regular expression; from the file indexes, no appliance')
    .option('--regex', 'the pattern is a regular expression over the path')
    .option('--vm <vm>', 'only restore points of this VM (name or id)')
    .option('--since <time>', 'only restore points committed at or after this time (ISO 8601)')
    .option('--limit <n>', 'at most N matches', '1000')
    .action(act(async (s, pattern: string, o: Opts) => {
      let vmId: string | undefined;
      if (o['vm']) {
        const { items } = await s.catalogue.query('vm.list', {});
        const vm = items.find((v) => v.vmId === o['vm']) ?? items.find((v) => v.name === o['vm']);
        if (!vm) throw new CliError(`unknown VM ${JSON.stringify(o['vm'])}`, EXIT.notFound);
        vmId = vm.vmId;
      }
      const since = o['since'] ? String(o['since']) : undefined;
      if (since && Number.isNaN(Date.parse(since))) throw new CliError(`--since ${JSON.stringify(since)} is not a time (ISO 8601)`, EXIT.usage);
      const r = accepted(await s.bus.send('data-mover', 'SearchFiles', {
        pattern, ...(o['regex'] ? { regex: true } : {}), ...(vmId ? { vmId } : {}), ...(since ? { since: new Date(since).toISOString() } : {}), limit: Number(o['limit']),
      }), 'search failed');
      output(s, r, () => {
        const byPath = new Map<string, typeof r.matches>();
        for (const m of r.matches) byPath.set(`${m.vmName}:${m.disk}:${m.path}`, [...(byPath.get(`${m.vmName}:${m.disk}:${m.path}`) ?? []), m]);
        const lines: string[] = [];
        for (const [key, ms] of byPath) {
          lines.push(`${key}  in ${ms.length} of ${r.pointsSearched} restore points searched`);
          for (const m of ms) lines.push(`  ${m.restorePointId}  ${m.committedAt}  ${m.type === 'file' ? bytes(m.size) : m.type}  modified ${m.mtime}`);
        }
        if (lines.length === 0) lines.push(`no match in ${r.pointsSearched} restore points searched`);
        if (r.truncated) lines.push(`(only the first ${r.matches.length} matches)`);
        if (r.pointsWithoutIndex.length) lines.push(`${r.pointsWithoutIndex.length} restore points have no file index (not built yet, or off in their policy)`);
        return lines.join('\n');
      });
    }));
}
