// Builds the command tree; each command group lives in ./commands/<group>.command.ts.
// Every error leaves through here in one shape (see ./cli-error.ts) with its exit code.
import { Command, CommanderError } from 'commander';
import { registerRepoCommands } from './commands/repo.command.ts';
import { registerOperateCommands } from './commands/operate.command.ts';
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
import { registerFilesCommands } from './commands/files.command.ts';
import { registerNotifyCommands } from './commands/notify.command.ts';
import { registerTestRestoreCommand } from './commands/test-restore.command.ts';
import { registerInstantCommands } from './commands/instant.command.ts';

export function buildProgram(json = false): Command {
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
  registerRepoCommands(program);
  registerUpCommand(program);
  registerRunCommand(program);
  registerOperateCommands(program);
  registerAuditCommands(program);
  registerAccessCommands(program);
  registerRecoverCommand(program);
  registerSitesCommands(program);
  registerSiteCommands(program);
  registerConfigCommands(program);
  registerCompletionCommand(program);
  registerFilesCommands(program);
  registerNotifyCommands(program);
  registerTestRestoreCommand(program);
  registerInstantCommands(program);
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

/** Runs the CLI; returns the exit code (a code a command already set, e.g. 6 for a failed job, is kept). */
export async function main(argv: string[]): Promise<number> {
  const json = argv.slice(2).includes('--json');
  const fail = (e: CliError): number => {
    if (json) process.stdout.write(JSON.stringify(errorShape(e)) + '\n');
    // After `cairn: ` the sentence reads on in lower case (`cairn: no repository at …`); it still ends with a full stop.
    else process.stderr.write(`cairn: ${fullStop(e.message)}${e.hint ? `\n  ${sentence(e.hint)}` : ''}\n`);
    return e.exitCode;
  };
  try {
    await buildProgram(json).parseAsync(argv);
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
