// Maps a refused command reply or a failed query to a CLI error with a fitting exit code.
import type { CommandReply } from '@cairn/contracts';
import type { CatalogueQueryError } from '@cairn/catalogue-client';
import type { Command } from 'commander';
import { CliError, EXIT } from './cli-error.ts';
import { withSession, type Preload, type Session } from './session.ts';

const CODE_EXIT: Record<string, number> = {
  not_found: EXIT.notFound,
  conflict: EXIT.conflict,
  invalid_command: EXIT.usage,
  unavailable: EXIT.unavailable,
  forbidden: EXIT.denied,
  unauthenticated: EXIT.denied,
  four_eyes: EXIT.denied,
  approval_required: EXIT.denied,
  locked: EXIT.conflict,
};

export function accepted<R>(reply: CommandReply<R>, what: string): R {
  if (reply.accepted) return reply.result as R;
  const problems = (reply.error.details as { problems?: Array<{ path?: string; message: string }> } | undefined)?.problems;
  // Problems without a message say nothing: left out rather than printed as `- undefined`.
  const said = (problems ?? []).filter((p) => typeof p.message === 'string' && p.message && p.message !== 'undefined');
  const detail = said.length ? '\n' + said.map((p) => `  - ${p.path && p.path !== 'undefined' ? `${p.path}: ` : ''}${p.message}`).join('\n') : '';
  throw new CliError(`${what}: ${reply.error.message}${detail}`, CODE_EXIT[reply.error.code] ?? EXIT.failure, undefined, reply.error.code);
}

export function transportError(e: unknown): never {
  // By name, not instanceof: the CLI loads the bus and the catalogue client only when used (start-up).
  const name = (e as Error | undefined)?.name;
  if (name === 'CommandNoRespondersError' || name === 'CommandTimeoutError') {
    throw new CliError(`${(e as Error).message}`, EXIT.unavailable, 'is `cairn up` running with all its services? `cairn status` shows their health');
  }
  if (name === 'CatalogueQueryError') {
    const q = e as CatalogueQueryError;
    throw new CliError(q.message, q.code === 'not_found' ? EXIT.notFound : q.code === 'bad_request' ? EXIT.usage : EXIT.failure, undefined, q.code === 'bad_request' ? 'usage' : q.code);
  }
  throw e;
}

/** A command's action run in a session, with transport failures (no responders, a refused query) mapped to their exit codes. */
export function sessionAction<A extends unknown[]>(fn: (s: Session, ...args: A) => Promise<void>, load?: Preload) {
  return async function (this: Command, ...args: A) {
    await withSession(this, async (s) => {
      try {
        await fn(s, ...args);
      } catch (e) {
        transportError(e);
      }
    }, load);
  };
}
