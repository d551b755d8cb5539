// `cairn up` on a secure site: every command over NATS must be signed, so the local operator
// (CAIRN_USER or the OS user) gets a user (administrator) and an operator key on first start,
// the key in `<data>/secrets/operator-<user>.key` (0600), recorded in stack.json for the CLI.
// A key revoked since is not added again; a user that exists keeps its roles.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { newEvent, type Actor } from '@cairn/contracts';
import { handleCommand, type EventLog } from '@cairn/eventlog';
import { userDecider } from '@cairn/jobs';
import { readOperator } from '@cairn/command-auth';
import { createOperatorKey, loadOperatorKey, type OperatorKey } from '../operator-key.ts';

const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * The local operator's key file, made on first start: its public key is the site's root
 * operator, named in the signing cut-over before anything else is recorded.
 */
export async function operatorRootKey(o: { readonly secretsDir: string; readonly userId: string; readonly site: string }): Promise<{ userId: string; publicKey: string } | undefined> {
  if (!USER_ID.test(o.userId)) return undefined;
  const file = join(o.secretsDir, `operator-${o.userId}.key`);
  const exists = await access(file).then(() => true, () => false);
  const key = exists ? await loadOperatorKey(file) : await createOperatorKey(file, o.userId, o.site);
  return { userId: o.userId, publicKey: key.publicKey };
}

export async function ensureOperator(o: {
  readonly log: EventLog;
  readonly site: string;
  readonly secretsDir: string;
  readonly actor: Actor;
  readonly say: (line: string) => void;
}): Promise<OperatorKey | undefined> {
  const userId = o.actor.id;
  if (!USER_ID.test(userId)) {
    o.say(`operator             none: user name ${JSON.stringify(userId)} is not a valid user id (set CAIRN_USER to letters, digits, - and _); CLI commands need --operator-key`);
    return undefined;
  }
  const by: Actor = { kind: 'service', id: `cairn-up@${o.site}` };
  const streamId = `user-${userId}`;
  let record = await readOperator(o.log, userId);
  if (!record) {
    await o.log.append(streamId, [newEvent('UserCreated', { userId, roles: ['administrator'], displayName: 'local operator (cairn up)' }, { site: o.site, actor: by, streamId })], { expectedRevision: 'no_stream' })
      .catch((e: Error) => { if (e.name !== 'WrongExpectedRevisionError') throw e; });
    record = await readOperator(o.log, userId);
  }
  const file = join(o.secretsDir, `operator-${userId}.key`);
  const exists = await access(file).then(() => true, () => false);
  const key = exists ? await loadOperatorKey(file) : await createOperatorKey(file, userId, o.site);
  if (record?.revokedKeys.has(key.publicKey)) {
    o.say(`operator             ${userId}: the key in ${file} was revoked; CLI commands need another (--operator-key)`);
    return undefined;
  }
  if (!record?.keys.has(key.publicKey)) {
    // Through the user decider, at the revision it read (the root's key: no endorsement).
    await handleCommand(o.log, streamId, userDecider, {
      kind: 'addKey', publicKey: key.publicKey, name: 'cairn up', context: { endorsementRequired: false, otherEnabledAdministrators: 0 },
    }, { meta: { site: o.site, actor: by } });
  }
  o.say(`operator             ${userId}${record && !record.roles.includes('administrator') ? ` (roles ${record.roles.join(', ')})` : ' (administrator)'}: CLI commands are signed with ${file}`);
  return key;
}
