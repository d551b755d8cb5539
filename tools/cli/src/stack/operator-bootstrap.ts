// `cairn up` on a secure site: every command over NATS must be signed, so the local operator
// (CAIRN_USER or the OS user) gets a user (administrator) and an operator key on first start,
// the key in `<data>/secrets/operator-<user>.key` (0600), recorded in stack.json for the CLI.
// A key revoked since is not added again; a user that exists keeps its roles.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { newEvent, type Actor } from '@cairn/contracts';
import type { EventLog } from '@cairn/eventlog';
import { readOperator } from '@cairn/command-auth';
import { createOperatorKey, loadOperatorKey, type OperatorKey } from '../operator-key.ts';

const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;

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
    await o.log.append(streamId, [newEvent('UserKeyAdded', { userId, publicKey: key.publicKey, name: 'cairn up' }, { site: o.site, actor: by, streamId })], { expectedRevision: 'any' });
  }
  o.say(`operator             ${userId}${record && !record.roles.includes('administrator') ? ` (roles ${record.roles.join(', ')})` : ' (administrator)'}: CLI commands are signed with ${file}`);
  return key;
}
