// The hub's reports (site health, global policies) asked over NATS: one request to the hub's
// subject, the reply's `ok`/`error` turned into the CLI's errors and exit codes. Only the hub
// answers; elsewhere the caller is told where to run the command.
import { CliError, EXIT } from '../cli-error.ts';
import type { Session } from '../session.ts';

/** `reply[field]` of the hub's answer on `subject`; `what` names the report, `rerun` the command to run at the hub. */
export async function askHub<K extends string, T>(s: Session, subject: string, field: K, what: string, rerun: string): Promise<T> {
  let reply: { ok: boolean; error?: string } & Partial<Record<K, T>>;
  try {
    reply = (await s.nc.request(subject, '', { timeout: 15_000 })).json();
  } catch (e) {
    throw new CliError(`no hub answered for ${what}: ${(e as Error).message}`, EXIT.unavailable, `run it at the hub: cairn --data <hub data> ${rerun}`);
  }
  const value = reply[field];
  if (!reply.ok || value === undefined || value === null) throw new CliError(`${what}: ${reply.error ?? 'no answer'}`, EXIT.failure);
  return value;
}
