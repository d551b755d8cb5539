// `cairn audit`: the audit trail (who did what, when) from the catalogue, and `audit verify`,
// which checks the tamper-evident hash chain the audit bridge seals the log into.
import type { Command } from 'commander';
import { CliError, EXIT } from '../cli-error.ts';
import { transportError } from '../cli-replies.ts';
import { output, table, withSession } from '../session.ts';
import { collectPages, pagingChoice, pagingOptions, printPage } from '../paging.ts';

interface AuditOptions { actor?: string; vm?: string; type?: string; kind?: string; stream?: string; job?: string; since?: string; until?: string; limit?: string; after?: string; all?: boolean }

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
    .option('--kind <event>', 'the same as --type (e.g. RepositoryKeyRotated)')
    .option('--stream <id>', 'only this stream, e.g. repository-<repository id> (its key operations)')
    .option('--job <id>', 'only this job')
    .option('--since <time>', 'from this time (ISO 8601)')
    .option('--until <time>', 'up to this time');
  pagingOptions(audit, 'events', 200);
  audit
    .action(async function (this: Command, o: AuditOptions) {
      await withSession(this, async (s) => {
        try {
          const from = isoOrThrow(o.since, '--since');
          const to = isoOrThrow(o.until, '--until');
          if (o.type && o.kind && o.type !== o.kind) throw new CliError('--type and --kind name the same filter: give one', EXIT.usage);
          const type = o.type ?? o.kind;
          const choice = pagingChoice(o as unknown as Record<string, unknown>, 200);
          const page = await collectPages((p) => s.catalogue.query('audit.timeline', {
            ...(o.actor ? { actor: o.actor } : {}), ...(type ? { type } : {}), ...(o.job ? { correlationId: o.job } : {}),
            ...(o.stream ? { streamId: o.stream } : {}),
            ...(from ? { from } : {}), ...(to ? { to } : {}), ...p,
          }), choice);
          const { items } = page;
          const rows = o.vm ? items.filter((e) => e.streamId === `vm-${o.vm}` || (e.data as { vmId?: string } | null)?.vmId === o.vm) : items;
          printPage(s.json, { items: rows, next: page.next }, choice, () => table(rows.map((e) => ({
            position: e.position, time: e.time, type: e.type, actor: `${e.actor.kind}:${e.actor.id}`, stream: e.streamId, correlation: e.correlationId,
          })), ['position', 'time', 'type', 'actor', 'stream', 'correlation']));
        } catch (e) {
          transportError(e);
        }
      });
    });

  audit.command('start-signing')
    .description('secure sites: record that every event from now on must be signed by its writer (cairn up does this itself; once for services run with cairn run)')
    .action(async function (this: Command) {
      await withSession(this, async (s) => {
        if (!s.securityDir) throw new CliError('this site does not run secure: there are no identity keys to sign events with', EXIT.usage);
        await s.bindSigning();
        const { recordSigningCutover } = await import('./audit-provenance.ts');
        const position = await recordSigningCutover(s.nc, s.site, s.securityDir);
        output(s, { cutover: String(position) }, () => `events are signed from position ${position} on; unsigned events before it are legacy`);
      });
    });

  audit.command('verify')
    .description('check the hash chain of the audit trail (names the first removed, reordered or altered record) and, on a secure site, every event\'s signature and writer (names each one its readers refuse)')
    .action(async function (this: Command) {
      await withSession(this, async (s) => {
        const { verifyChain } = await import('@cairn/audit');
        await s.bindSigning();
        const { auditStream, readAuditChain } = await import('@cairn/eventlog');
        const { checkLogProvenance, provenanceLines } = await import('./audit-provenance.ts');
        const records = await readAuditChain(s.nc, auditStream(s.site)).catch((e: Error) => {
          throw new CliError(`cannot read the audit chain: ${e.message}`, EXIT.unavailable, 'the audit bridge keeps it; is it running (cairn up does)?');
        });
        const verdict = verifyChain(records);
        // A secure site: every event of the log must be signed by an identity the writer table allows.
        const provenance = s.securityDir ? await checkLogProvenance(s.nc, s.site, s.securityDir) : undefined;
        output(s, { ...verdict, ...(provenance ? { provenance } : {}) }, () => [
          verdict.ok
            ? `audit chain intact: ${verdict.count} records, head ${verdict.head}`
            : `audit chain BROKEN (${verdict.problem.kind}) at ${verdict.problem.message}`,
          ...(provenance ? provenanceLines(provenance) : []),
        ].join('\n'));
        if (!verdict.ok || (provenance && provenance.refused.length > 0)) process.exitCode = EXIT.failure;
      });
    });
}
