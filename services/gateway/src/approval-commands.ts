// Four-eyes over NATS (commands through the hub, issue 24): `RequestApproval` and `DecideApproval`
// do at a site exactly what `POST /v1/restore-points/<id>/deletion`, `/v1/repositories/<name>/deletion`,
// `/v1/sites/<site>/loss` and `POST /v1/approvals/<id>/approve|reject` do — through the same
// controller — for an administrator who reaches the site only through the hub. The command must
// be signed by the person's own operator key (checked by the command responder, which also checks
// the `admin` permission), and the approval statement inside it by the same person: the hub's
// identities can sign neither.
import type { CommandPayloadMap } from '@cairn/contracts';
import { CommandFailedError, JetStreamServer, type CommandContext } from '@cairn/messaging';
import type { NatsConnection } from '@nats-io/transport-node';
import type { IdentityController } from './identity.controller.ts';
import type { IdentityStore } from './identity.store.ts';
import type { HttpResponse } from './http.types.ts';
import type { Caller } from './route.decorator.ts';
import { ProblemError } from './problem.ts';

export async function serveApprovalCommands(o: {
  readonly nc: NatsConnection;
  readonly site: string;
  readonly identities: IdentityStore;
  readonly controller: IdentityController;
}): Promise<{ close(): Promise<void> }> {
  const server = new JetStreamServer({ connection: o.nc, site: o.site, actor: { kind: 'service', id: `gateway@${o.site}` } });
  const callerOf = async (ctx: CommandContext, name: string): Promise<Caller> => {
    if (ctx.info.vouchedBy !== 'user' || ctx.actor.kind !== 'user') {
      throw new CommandFailedError('forbidden', `${name} must be signed by the administrator's own operator key, not by a service`);
    }
    const user = await o.identities.user(ctx.actor.id);
    if (!user || user.disabled) throw new CommandFailedError('forbidden', `${name}: ${ctx.actor.id} is not an enabled user here`);
    return { actor: { kind: 'user', id: user.userId }, roles: user.roles, traceparent: ctx.trace?.traceparent ?? '' };
  };
  // The controller sets headers and statuses for HTTP; over NATS there is nobody to read them.
  const res = { setHeader: () => undefined, status: () => res } as unknown as HttpResponse;
  const asCommandError = (e: unknown): never => {
    if (e instanceof ProblemError) throw new CommandFailedError(e.extra.code ?? e.kind.replace(/-/g, '_'), e.message);
    throw e;
  };
  server.addCommandHandler('gateway', 'RequestApproval', async (payload, ctx: CommandContext) => {
    const p = payload as CommandPayloadMap['RequestApproval'];
    const caller = await callerOf(ctx, 'RequestApproval');
    const body = { approvalId: p.approvalId, signature: p.signature, ...(p.reason ? { reason: p.reason } : {}) };
    const a = p.action;
    const asked = a.kind === 'delete-restore-point' ? o.controller.requestDeletion({ restorePointId: a.restorePointId }, body, caller, res)
      : a.kind === 'delete-repository' ? o.controller.requestRepositoryDeletion({ repository: a.repository }, body, caller, res)
        : a.kind === 'declare-site-lost' ? o.controller.requestSiteLoss({ site: a.site }, body, caller, res)
          : Promise.reject(new CommandFailedError('invalid_command', `${a.kind}: ask for it at the site's API (only deletions and declaring a site lost go over NATS)`));
    return asked.catch(asCommandError);
  });
  server.addCommandHandler('gateway', 'DecideApproval', async (payload, ctx: CommandContext) => {
    const p = payload as CommandPayloadMap['DecideApproval'];
    const caller = await callerOf(ctx, 'DecideApproval');
    const decided = p.decision === 'approve'
      ? o.controller.approve({ approvalId: p.approvalId }, { signature: p.signature }, caller)
      : o.controller.reject({ approvalId: p.approvalId }, { signature: p.signature, ...(p.reason ? { reason: p.reason } : {}) }, caller);
    return decided.catch(asCommandError);
  });
  await new Promise<void>((resolve, reject) => { void server.listen((e?: unknown) => (e ? reject(e as Error) : resolve())); });
  return { close: () => Promise.resolve(server.close()) };
}
