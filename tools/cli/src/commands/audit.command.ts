// `cairn audit`: the audit trail (who did what, when) from the catalogue, and `audit verify`,
// which checks the tamper-evident hash chain the audit bridge seals the log into.
import type { Command } from 'commander';
import { verifyChain } from '@cairn/audit';
import { auditStream, readAuditChain } from '@cairn/audit-bridge';
import { CliError, EXIT } from '../cli-error.ts';
import { transportError } from '../cli-replies.ts';
import { output, table, withSession } from '../session.ts';

interface AuditOptions { actor?: string; vm?: string; type?: string; job?: string; since?: string; until?: string; limit: string }

function isoOrThrow(v: string | undefined, flag: string): string | undefined {
  if (v === undefined) return undefined;
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new CliError(`${flag} ${JSON.stringify(v)} is not a date/time (e.g. 2026-11-25T04:00:00Z)`, EXIT.usage);
  return new Date(t).toISOString();
}

export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit')
    .description('the audit trail: every event with its actor')
    .option('--actor <id>', 'only what this user or service did')
    .option('--vm <vm>', 'only events about this VM (id)')
    .option('--type <event>', 'only this event type, e.g. PolicyCreated')
    .option('--job <id>', 'only this job')
    .option('--since <time>', 'from this time (ISO 8601)')
    .option('--until <time>', 'up to this time')
    .option('--limit <n>', 'at most N events', '200')
    .action(async function (this: Command, o: AuditOptions) {
      await withSession(this, async (s) => {
        try {
          const from = isoOrThrow(o.since, '--since');
          const to = isoOrThrow(o.until, '--until');
          const { items } = await s.catalogue.query('audit.timeline', {
            ...(o.actor ? { actor: o.actor } : {}), ...(o.type ? { type: o.type } : {}), ...(o.job ? { correlationId: o.job } : {}),
            ...(from ? { from } : {}), ...(to ? { to } : {}), limit: Number(o.limit),
          });
          const rows = o.vm ? items.filter((e) => e.streamId === `vm-${o.vm}` || (e.data as { vmId?: string } | null)?.vmId === o.vm) : items;
          output(s, rows, () => table(rows.map((e) => ({
            position: e.position, time: e.time, type: e.type, actor: `${e.actor.kind}:${e.actor.id}`, stream: e.streamId, correlation: e.correlationId,
          })), ['position', 'time', 'type', 'actor', 'stream', 'correlation']));
        } catch (e) {
          transportError(e);
        }
      });
    });

  audit.command('verify')
    .description('check the hash chain of the audit trail: names the first removed, reordered or altered record')
    .action(async function (this: Command) {
      await withSession(this, async (s) => {
        const records = await readAuditChain(s.nc, auditStream(s.site)).catch((e: Error) => {
          throw new CliError(`cannot read the audit chain: ${e.message}`, EXIT.unavailable, 'the audit bridge keeps it; is it running (cairn up does)?');
        });
        const verdict = verifyChain(records);
        output(s, verdict, () => verdict.ok
          ? `audit chain intact: ${verdict.count} records, head ${verdict.head}`
          : `audit chain BROKEN (${verdict.problem.kind}) at ${verdict.problem.message}`);
        if (!verdict.ok) process.exitCode = EXIT.failure;
      });
    });
}
