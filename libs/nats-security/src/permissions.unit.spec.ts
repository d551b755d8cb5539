// The permission matrix as data: the properties docs/security.md promises, for any site.
import { describe, expect, it } from 'vitest';
import { ALL_IDENTITIES, SERVICE_IDENTITIES, inboxPrefix, sitePermissions } from './permissions.ts';

const matches = (pattern: string, subject: string): boolean => {
  const p = pattern.split('.'); const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (s[i] === undefined || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
};
const allows = (rules: { allow: readonly string[]; deny?: readonly string[] }, subject: string) =>
  rules.allow.some((a) => matches(a, subject)) && !(rules.deny ?? []).some((d) => matches(d, subject));

describe('sitePermissions', () => {
  for (const site of ['site-a', 'x']) {
    const perms = sitePermissions(site, { peers: ['hq'] });
    const S = `cairn.${site}`;

    it(`${site}: no service may touch another site, except replication on repl subjects`, () => {
      for (const id of SERVICE_IDENTITIES) {
        const p = perms[id];
        const foreign = [...p.publish.allow, ...p.subscribe.allow].filter((a) => a.startsWith('cairn.') && !a.startsWith(`${S}.`));
        if (id === 'replication') expect(foreign.every((f) => f.startsWith('cairn.hq.'))).toBe(true);
        else expect(foreign, id).toEqual([]);
      }
      expect(allows(perms.replication.publish, `cairn.hq.repl.${site}.put`)).toBe(true);
      expect(allows(perms.replication.publish, 'cairn.hq.cmd.scheduler.RequestBackup')).toBe(false);
    });

    it(`${site}: the audit bridge only reads; the catalogue writes no events (both only report refused ones); a data mover commands the scheduler only to back up (an in-place restore's safety backup)`, () => {
      const audit = perms['audit-bridge'];
      expect(audit.allowResponses).toBe(false);
      expect(audit.subscribe.allow).toEqual([`${inboxPrefix(site, 'audit-bridge')}.>`]);
      expect(audit.publish.allow.filter((a) => a.startsWith('cairn.'))).toEqual([`${S}.evt.provenance.>`, `${S}.audit.chain`]);
      expect(perms.catalogue.publish.allow.filter((a) => a.startsWith('cairn.'))).toEqual([`${S}.evt.provenance.>`]);
      expect(allows(perms.catalogue.publish, `${S}.evt.job.job-1`)).toBe(false);
      expect(allows(perms['data-mover'].publish, `${S}.cmd.scheduler.RequestBackup`)).toBe(true);
      for (const other of ['CancelJob', 'CreatePolicy', 'UpdatePolicy', 'DeletePolicy', 'PausePolicy']) {
        expect(allows(perms['data-mover'].publish, `${S}.cmd.scheduler.${other}`), other).toBe(false);
      }
      expect(allows(perms['data-mover'].subscribe, `${S}.cmd.scheduler.RequestBackup`)).toBe(false);
      expect(allows(perms['data-mover'].publish, `${S}.cmd.snapshot-coordinator.RequestSnapshot`)).toBe(false);
      expect(allows(perms.scheduler.publish, `${S}.cmd.snapshot-coordinator.RequestSnapshot`)).toBe(true);
    });

    it(`${site}: each identity publishes only the event subjects of the kinds the writer table gives it`, () => {
      const may = (id: keyof typeof perms, streamId: string) => allows(perms[id].publish, `${S}.evt.${streamId.split('-')[0]}.${streamId}`);
      for (const id of ['scheduler', 'snapshot-coordinator', 'data-mover', 'replication', 'catalogue', 'audit-bridge'] as const) {
        for (const forged of ['user-eve', 'token-abc', 'approval-1']) expect(may(id, forged), `${id} ${forged}`).toBe(false);
      }
      expect(may('gateway', 'user-eve')).toBe(true);
      expect(may('gateway', 'approval-1')).toBe(true);
      expect(may('gateway', 'job-1')).toBe(false);
      expect(may('gateway', 'restorepoint-1')).toBe(false);
      expect(may('data-mover', 'restorepoint-1')).toBe(true);
      expect(may('data-mover', 'policy-1')).toBe(false);
      expect(may('snapshot-coordinator', 'restorepoint-1')).toBe(false);
      expect(may('scheduler', 'job-1')).toBe(true);
      for (const id of SERVICE_IDENTITIES) expect(may(id, 'provenance-x'), id).toBe(true);
    });

    it(`${site}: idempotency and dedup entries: each service writes only its own`, () => {
      expect(allows(perms['data-mover'].publish, '$KV.cairn_command_replies.data-mover.h_x')).toBe(true);
      expect(allows(perms['data-mover'].publish, '$KV.cairn_command_replies.scheduler.h_x')).toBe(false);
      expect(allows(perms.scheduler.publish, '$KV.cairn_command_replies.data-mover.h_x')).toBe(false);
      expect(allows(perms['data-mover'].publish, '$KV.cairn_processed.data-mover-retention.e1')).toBe(true);
      expect(allows(perms.scheduler.publish, '$KV.cairn_processed.data-mover.e1')).toBe(false);
      for (const id of ['catalogue', 'gateway', 'audit-bridge'] as const) {
        expect(allows(perms[id].publish, '$KV.cairn_command_replies.scheduler.h_x'), id).toBe(false);
      }
    });

    it(`${site}: no service deletes, purges or reconfigures a stream; each subscribes to its own inbox only`, () => {
      const stream = `CAIRN_EVT_${site.toUpperCase().replace(/-/g, '_')}`;
      for (const id of SERVICE_IDENTITIES) {
        for (const api of ['STREAM.DELETE', 'STREAM.PURGE', 'STREAM.UPDATE', 'STREAM.MSG.DELETE']) {
          expect(allows(perms[id].publish, `$JS.API.${api}.${stream}`), `${id} ${api}`).toBe(false);
          expect(allows(perms[id].publish, `$JS.API.${api}.KV_cairn_processed`), `${id} ${api} KV`).toBe(false);
        }
        for (const other of ALL_IDENTITIES.filter((o) => o !== id)) {
          expect(allows(perms[id].subscribe, `${inboxPrefix(site, other)}.abc`), `${id} reads ${other}'s inbox`).toBe(false);
        }
      }
      expect(allows(perms.admin.publish, `$JS.API.STREAM.DELETE.${stream}`)).toBe(true);
    });
  }
});
