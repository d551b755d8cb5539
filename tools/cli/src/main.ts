// Builds the command tree; each command group lives in ./commands/<group>.command.ts.
import { Command, CommanderError } from 'commander';
import { registerRepoCommands } from './commands/repo.command.ts';
import { registerOperateCommands } from './commands/operate.command.ts';
import { registerUpCommand } from './commands/up.command.ts';
import { registerRunCommand } from './commands/run.command.ts';
import { registerAuditCommands } from './commands/audit.command.ts';
import { registerAccessCommands } from './commands/access.command.ts';
import { registerSitesCommands } from './commands/sites.command.ts';
import { registerSiteCommands } from './commands/site.command.ts';
import { CliError, EXIT } from './cli-error.ts';

export async function main(argv: string[]): Promise<number> {
  const program = new Command('cairn')
    .description('Cairn: event-sourced backup for virtual machines')
    .option('--json', 'machine-readable output')
    .option('--nats <url>', 'NATS of a running Cairn (default: from `cairn up` state or CAIRN_NATS_URL)')
    .option('--site <name>', 'site name (default: from state or CAIRN_SITE)')
    .option('--data <dir>', 'data directory of `cairn up` (default ./.cairn)')
    .option('--operator-key <file>', 'sign commands sent over NATS with this operator key (default $CAIRN_OPERATOR_KEY, else the key `cairn up` made for you)')
    .exitOverride()
    .showHelpAfterError();
  registerRepoCommands(program);
  registerUpCommand(program);
  registerRunCommand(program);
  registerOperateCommands(program);
  registerAuditCommands(program);
  registerAccessCommands(program);
  registerSitesCommands(program);
  registerSiteCommands(program);
  try {
    await program.parseAsync(argv);
    // A command that ran but found something wrong sets process.exitCode (audit verify, a failed job).
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (e instanceof CliError) {
      console.error(`cairn: ${e.message}${e.hint ? `\n  ${e.hint}` : ''}`);
      return e.exitCode;
    }
    console.error(`cairn: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.failure;
  }
}
