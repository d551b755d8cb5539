// The way back into a locked-out site (docs/security.md, Accounts): the `RecoverAccess` command,
// over NATS only, answered by the gateway with a new API token for the administrator whose own
// current operator key signed it (the local CLI's `cairn access recover`). A command a service
// signed (the REST API acting for someone, any service identity) or an unsigned one is refused;
// so is a user who is not an enabled administrator. AccessRecovered and TokenIssued record it.
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandFailedError, JetStreamServer, type CommandContext } from '@cairn/messaging';
import type { NatsConnection } from '@nats-io/transport-node';
import type { IdentityStore } from './identity.store.ts';

export async function serveAccessRecovery(o: {
  readonly nc: NatsConnection;
  readonly site: string;
  readonly identities: IdentityStore;
}): Promise<{ close(): Promise<void> }> {
  const server = new JetStreamServer({ connection: o.nc, site: o.site, actor: { kind: 'service', id: `gateway@${o.site}` } });
  server.addCommandHandler('gateway', 'RecoverAccess', async (payload, ctx: CommandContext) => {
    const p = payload as CommandPayloadMap['RecoverAccess'];
    const actor = ctx.actor;
    const publicKey = ctx.command.auth?.publicKey;
    if (ctx.info.vouchedBy !== 'user' || actor.kind !== 'user' || !publicKey) {
      throw new CommandFailedError('forbidden', 'RecoverAccess must be signed by the administrator\'s own operator key (`cairn access recover` on the site\'s host), not by a service or the REST API');
    }
    const user = await o.identities.user(actor.id);
    if (!user || user.disabled || !user.roles.includes('administrator')) {
      throw new CommandFailedError('forbidden', `RecoverAccess: ${actor.id} is not an enabled administrator`);
    }
    const issued = await o.identities.issueToken(user.userId, `recovery ${new Date().toISOString().slice(0, 16)}`, actor);
    await o.identities.recordAccess('AccessRecovered', { userId: user.userId, tokenId: issued.record.tokenId, publicKey, reason: p.reason }, actor);
    return { userId: user.userId, tokenId: issued.record.tokenId, token: issued.token };
  });
  await new Promise<void>((resolve, reject) => { void server.listen((e?: unknown) => (e ? reject(e as Error) : resolve())); });
  return { close: () => Promise.resolve(server.close()) };
}
