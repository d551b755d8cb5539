// `cairn access recover`: the way back into a locked-out site (docs/security.md, Accounts). On
// the site's host, the administrator's own operator key (the one `cairn up` made in
// <data>/secrets, or --operator-key) signs RecoverAccess; the gateway answers with a new API
// token, written to --out (0600) or printed once, and records AccessRecovered.
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import { accepted, transportError } from '../cli-replies.ts';
import { output, withSession } from '../session.ts';

export function registerRecoverCommand(program: Command): void {
  const access = program.commands.find((c) => c.name() === 'access') ?? program.command('access').description('getting back into a site');
  access.command('recover')
    .description('locked out of the API? get a new API token with your own operator key (signed over NATS; recorded as AccessRecovered)')
    .requiredOption('--reason <text>', 'why (recorded)')
    .option('--out <file>', 'write the token here (0600) instead of printing it')
    .action(async function (this: Command, o: { reason: string; out?: string }) {
      await withSession(this, async (s) => {
        if (!s.operatorKey) {
          throw new CliError('no operator key to sign with', EXIT.usage, 'run on the site\'s host where `cairn up` keeps your key, or pass --operator-key <file>');
        }
        let result;
        try {
          result = accepted(await s.bus.send('gateway', 'RecoverAccess', { reason: o.reason }), 'access not recovered');
        } catch (e) {
          if (e instanceof CliError) throw e;
          transportError(e);
        }
        if (o.out) {
          const file = resolve(o.out);
          await writeFile(file, `${result.token}\n`, { mode: 0o600, flag: 'wx' });
          output(s, { userId: result.userId, tokenId: result.tokenId, file }, () => `new API token ${result.tokenId} for ${result.userId} written to ${file} (0600); revoke the lost ones with \`cairn token revoke\``);
        } else {
          output(s, result, () => `new API token for ${result.userId} (id ${result.tokenId}), shown once:\n${result.token}`);
        }
      });
    });
}
