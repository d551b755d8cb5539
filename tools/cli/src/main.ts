// Builds the command tree; each command group lives in ./commands/<group>.command.ts.
// Every error leaves through here in one shape (see ./cli-error.ts) with its exit code.
import { Command, CommanderError } from 'commander';
import { registerRepoCommands } from './commands/repo.command.ts';
import { registerInventoryCommands, registerLogCommands, registerRestoreCommands } from './commands/operate.command.ts';
import { registerUpCommand } from './commands/up.command.ts';
import { registerRunCommand } from './commands/run.command.ts';
import { registerAuditCommands } from './commands/audit.command.ts';
import { registerAccessCommands } from './commands/access.command.ts';
import { registerRecoverCommand } from './commands/recover.command.ts';
import { registerSitesCommands } from './commands/sites.command.ts';
import { registerSiteCommands } from './commands/site.command.ts';
import { registerCompletionCommand } from './commands/completion.command.ts';
import { registerConfigCommands } from './commands/config.command.ts';
import { CliError, EXIT, errorShape, fullStop, sentence } from './cli-error.ts';
import { cliVersion } from './version.ts';

export { exitsWhenDone } from './exit-when-done.ts';
import { registerFilesCommands } from './commands/files.command.ts';
import { registerNotifyCommands } from './commands/notify.command.ts';
import { registerTestRestoreCommand } from './commands/test-restore.command.ts';
import { registerInstantCommands } from './commands/instant.command.ts';

type Register = (program: Command) => void;

/**
 * Every command group with the top-level commands it defines or adds to, in the order they
 * register (a later group adds sub-commands to an earlier group's command: `access` to
 * `policy`, `repo`, `site`, `restore-point`). main.unit.spec checks the names against what
 * each group registers.
 */
export const GROUPS: ReadonlyArray<readonly [Register, readonly string[]]> = [
  [registerRepoCommands, ['repo']],
  [registerUpCommand, ['up']],
  [registerRunCommand, ['run']],
  [registerInventoryCommands, ['hypervisor', 'vm', 'policy', 'backup', 'job']],
  [registerRestoreCommands, ['restore-point', 'restore', 'restore-export']],
  [registerLogCommands, ['events', 'catalogue']],
  [registerAuditCommands, ['audit']],
  [registerAccessCommands, ['whoami', 'user', 'token', 'approval', 'policy', 'repo', 'site', 'restore-point']],
  [registerRecoverCommand, ['access']],
  [registerSitesCommands, ['hub', 'replication']],
  [registerSiteCommands, ['site']],
  [registerConfigCommands, ['config']],
  // `completion` walks the whole tree: it is never registered alone (commandNamed).
  [registerCompletionCommand, ['completion']],
  [registerFilesCommands, ['files']],
  [registerNotifyCommands, ['notify']],
  [registerTestRestoreCommand, ['test-restore']],
  [registerInstantCommands, ['instant', 'serve-restore-point']],
];

/** The program's options that take a value (`--data <dir>`): their value is not the command. */
const VALUE_OPTIONS = new Set(['--nats', '--site', '--data', '--operator-key']);

/**
 * The top-level command `argv` names, when only its groups need registering; undefined when
 * every group does (no command, help or version asked before it, an option this does not know,
 * `completion`). Registering every group cost ~60 ms of CPU per start at load 15 (V8 compiles
 * each group's definitions on first call); `cairn restore` needs one of fifteen.
 */
export function commandNamed(argv: readonly string[]): string | undefined {
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (VALUE_OPTIONS.has(a)) { i++; continue; }
    if (a === '--json' || [...VALUE_OPTIONS].some((o) => a.startsWith(`${o}=`))) continue;
    if (a.startsWith('-')) return undefined;
    return a === 'completion' ? undefined : a;
  }
  return undefined;
}

/**
 * The command tree. With `argv`, only the groups of the command it names (all of them when it
 * names none of theirs, so commander's help and unknown-command errors read as before).
 */
export function buildProgram(json = false, argv?: readonly string[]): Command {
  const program = new Command('cairn')
    .description('Cairn: event-sourced backup for virtual machines')
    .version(`cairn ${cliVersion()} (node ${process.version})`, '-V, --version', 'print the version and exit')
    .option('--json', 'machine-readable output (errors too: {"error":{"code","message","hint"}} on stdout)')
    .option('--nats <url>', 'NATS of a running Cairn (default: from `cairn up` state or CAIRN_NATS_URL)')
    .option('--site <name>', 'site name (default: from state or CAIRN_SITE)')
    .option('--data <dir>', 'data directory of `cairn up` (default ./.cairn)')
    .option('--operator-key <file>', 'sign commands sent over NATS with this operator key (default $CAIRN_OPERATOR_KEY, else the key `cairn up` made for you)')
    .exitOverride();
  // With --json, usage errors come out as JSON below instead of commander's text and help.
  if (json) program.configureOutput({ outputError: () => undefined });
  else program.showHelpAfterError();
  const named = commandNamed(argv ?? []);
  const only = named === undefined ? undefined : GROUPS.filter(([, names]) => names.includes(named));
  for (const [register] of only?.length ? only : GROUPS) register(program);
  // Sub-commands fail like the program does (exit code, not process.exit).
  const override = (c: Command): void => {
    for (const sub of c.commands) {
      sub.exitOverride();
      if (json) sub.configureOutput({ outputError: () => undefined });
      override(sub);
    }
  };
  override(program);
  return program;
}

/** The commands that run services until stopped; the short commands start without the floor below. */
const SERVICE_COMMANDS = new Set(['up', 'run']);
/** The old generation's floor of a service process, MiB (CAIRN_OLD_SPACE_MB; 0: V8's own limits). */
const OLD_SPACE_MB = 128;

/**
 * Node's arguments for running `argv` again with a floor under V8's old-generation limit, when it
 * is a service command (`cairn up`, `cairn run <service>`); undefined for the short commands, with
 * CAIRN_OLD_SPACE_MB=0, or when a heap size is given already (the restarted process). All the
 * services of `cairn up` share one heap of ~40 MB live, and V8 sets the next limit just above
 * the live size: an incremental's survivors reached it once or twice per job, each time a
 * mark-compact of the whole heap (docs/benchmarks.md, "2026-12-07: a floor under the services'
 * old generation"). The flag is not allowed in NODE_OPTIONS, so the process restarts itself.
 */
export function serviceNodeArgs(argv: readonly string[], execArgv: readonly string[], env: NodeJS.ProcessEnv): string[] | undefined {
  const named = commandNamed(argv);
  if (named === undefined || !SERVICE_COMMANDS.has(named)) return undefined;
  const mb = env['CAIRN_OLD_SPACE_MB'] === undefined ? OLD_SPACE_MB : Number(env['CAIRN_OLD_SPACE_MB']);
  if (!(mb >= 1) || execArgv.some((a) => /^--initial-(old-space|heap)-size\b/.test(a))) return undefined;
  return [`--initial-old-space-size=${Math.round(mb)}`, ...execArgv, ...argv.slice(1)];
}

/** Runs the CLI; returns the exit code (a code a command already set, e.g. 6 for a failed job, is kept). */
export async function main(argv: string[]): Promise<number> {
  // Replaces this process (same pid, nothing started or written yet); Node 22.15+/23.11+, POSIX.
  const nodeArgs = serviceNodeArgs(argv, process.execArgv, process.env);
  if (nodeArgs && process.execve) process.execve(process.execPath, [process.execPath, ...nodeArgs], process.env);
  const json = argv.slice(2).includes('--json');
  const fail = (e: CliError): number => {
    if (json) process.stdout.write(JSON.stringify(errorShape(e)) + '\n');
    // After `cairn: ` the sentence reads on in lower case (`cairn: no repository at …`); it still ends with a full stop.
    else process.stderr.write(`cairn: ${fullStop(e.message)}${e.hint ? `\n  ${sentence(e.hint)}` : ''}\n`);
    return e.exitCode;
  };
  try {
    await buildProgram(json, argv).parseAsync(argv);
    // A command that ran but found something wrong sets process.exitCode (audit verify, a failed job).
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return EXIT.ok;
      // Commander has printed the message (and help) on stderr unless --json.
      if (!json) return EXIT.usage;
      return fail(new CliError(e.message.replace(/^error: /, ''), EXIT.usage, 'see `cairn --help` or `cairn <command> --help`', 'usage'));
    }
    if (e instanceof CliError) return fail(e);
    return fail(new CliError(e instanceof Error ? e.message : String(e), EXIT.failure));
  }
}
