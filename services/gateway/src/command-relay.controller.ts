// POST /v1/sites/:site/commands: relays a command a person signed in their browser (the console
// holds their operator key for the session, docs/console.md) to the named site's service,
// **unchanged**, and answers with the service's reply. At the hub this is how the console acts
// at a site (the leaf link carries the site's commands, docs/security.md "Commands through the
// hub"); at a site's own gateway, `:site` is its own site.
//
// Why the gateway cannot act for a person here: it does not sign. The envelope travels as the
// browser made it — id, idempotency key, actor, site, time, payload and `auth` — so a changed
// byte breaks the signature, and the site's command responder (SignedCommandPolicy) accepts it
// only if `auth` is a current, endorsed key of the actor's user *at that site* with the roles the
// command needs. The hub's identities are no site's service identities, so anything the hub's
// gateway signed itself, or an unsigned envelope, is refused at the site (`unauthenticated`,
// recorded there as AccessDenied). The gateway checks only what it can: the caller's own
// permission for the command here, the envelope's shape, and that it names the site it goes to.
import { Controller, Inject } from '@nestjs/common';
import { COMMAND_STATUS } from './gateway.service.ts';
import { Type } from '@sinclair/typebox';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  COMMAND_PERMISSIONS, COMMAND_SCHEMAS, CommandEnvelope, allows, commandSubject, isCommandName,
  type Command, type CommandReply,
} from '@cairn/contracts';
import { GATEWAY_AUTH, GATEWAY_COMMAND_RELAY, GATEWAY_CONFIG } from './gateway.tokens.ts';
import type { Authenticator } from './auth.guard.ts';
import type { GatewayConfig } from './gateway.config.ts';
import { CallerOf, Input, Route, type Caller } from './route.decorator.ts';
import { ProblemError } from './problem.ts';
import { problemEntry } from './gateway.service.ts';

/** The hub's site name (libs/nats-security HUB). */
const HUB_SITE = 'hub';

/** Publishes an envelope as it is and returns the reply (no signing, no rewriting). */
export interface CommandRelay {
  relay(subject: string, command: Command, timeoutMs: number): Promise<CommandReply>;
}

export function natsCommandRelay(nc: NatsConnection): CommandRelay {
  return {
    async relay(subject, command, timeoutMs) {
      const msg = await nc.request(subject, JSON.stringify(command), { timeout: timeoutMs });
      return msg.json<CommandReply>();
    },
  };
}

export const RelayParams = Type.Object({ site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) }, { additionalProperties: false });
export const RelayBody = Type.Object({
  command: CommandEnvelope,
}, { $id: 'RelayCommandRequest', additionalProperties: false, description: 'A command envelope exactly as the person signed it (`auth` over `commandSigningString`).' });
export const RelayReply = Type.Object({
  accepted: Type.Literal(true),
  result: Type.Optional(Type.Unknown()),
}, { $id: 'RelayCommandReply' });

/** HTTP status and problem kind of a site's refusal: a service's, and the site's signature checks'. */
export const RELAY_STATUS: Readonly<Record<string, readonly [number, string]>> = {
  ...COMMAND_STATUS,
  unauthenticated: [403, 'unauthenticated'],
  four_eyes: [403, 'four-eyes'],
};

/** What the gateway checks before it relays (pure): `undefined` when the envelope may go. */
export function relayRefusal(o: { gatewaySite: string; site: string; command: Command; roles: Caller['roles'] }): ProblemError | undefined {
  const { command } = o;
  // The caller's own permission first: someone who may not send the command learns nothing of
  // which sites this gateway reaches.
  if (!isCommandName(command.name)) return new ProblemError(400, 'unknown-command', `no command ${command.name}`, { code: 'unknown_command' });
  const permission = COMMAND_PERMISSIONS[command.name];
  if (!allows(o.roles, permission)) {
    return new ProblemError(403, 'forbidden', `${command.name} needs permission ${permission} here too; your roles are ${o.roles.join(', ') || '(none)'}`, { code: 'forbidden' });
  }
  if (o.gatewaySite === HUB_SITE ? o.site === HUB_SITE : o.site !== o.gatewaySite) {
    return new ProblemError(404, 'not-found', o.gatewaySite === HUB_SITE
      ? 'the hub relays commands to its sites, not to itself'
      : `this gateway is site ${o.gatewaySite}: commands for site ${o.site} go through the hub's gateway`, { code: 'not_found' });
  }
  if (command.site !== o.site) {
    return new ProblemError(400, 'validation', `the command is addressed to site ${command.site}, not ${o.site} (the site is signed; sign it again for ${o.site})`, { code: 'invalid_command' });
  }
  return undefined;
}

@Controller()
export class CommandRelayController {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(GATEWAY_COMMAND_RELAY) private readonly relay: CommandRelay | undefined,
    @Inject(GATEWAY_AUTH) private readonly auth: Authenticator,
  ) {}

  @Route({
    method: 'POST', path: '/v1/sites/:site/commands', operationId: 'relayCommand', tag: 'sites', permission: 'read',
    summary: 'Relay a command signed in the browser with the person\'s operator key to a site, unchanged (at the hub: to any site)',
    description: 'The gateway neither signs nor changes the envelope: the site checks `auth` (a current key of the actor\'s user there, the command\'s permission, signed within 5 minutes) and refuses anything else (403, code unauthenticated). The caller also needs the command\'s permission at this gateway. 404 when `site` is not reachable from here (a site\'s gateway relays only to itself; the hub not to itself); 503 when nobody answers at the site.',
    params: RelayParams, body: RelayBody, response: RelayReply, problems: [400, 403, 404, 409, 413, 502, 503, 504],
  })
  async relayCommand(@Input('params') p: { site: string }, @Input('body') body: { command: Command }, @CallerOf() caller: Caller) {
    const refused = relayRefusal({ gatewaySite: this.config.site, site: p.site, command: body.command, roles: caller.roles });
    if (refused?.status === 403 && isCommandName(body.command.name)) {
      // A role that may not send the command: recorded as AccessDenied, as the route gate records its refusals.
      throw await this.auth.denied({ actor: caller.actor, roles: caller.roles, method: 'token' }, 'relayCommand', COMMAND_PERMISSIONS[body.command.name], {
        method: 'POST', path: `/v1/sites/${p.site}/commands`, traceparent: caller.traceparent,
      });
    }
    if (refused) throw refused;
    if (!this.relay) throw new ProblemError(503, 'service-unavailable', 'this gateway has no NATS relay', { code: 'unavailable' });
    const name = body.command.name as keyof typeof COMMAND_SCHEMAS;
    const subject = commandSubject(p.site, COMMAND_SCHEMAS[name].service, name);
    let reply: CommandReply;
    try {
      reply = await this.relay.relay(subject, body.command, this.config.longTimeoutMs);
    } catch (e) {
      const m = (e as Error).message;
      if (/no responders|503/i.test(m) || (e as { code?: string }).code === '503') {
        throw new ProblemError(503, 'service-unavailable', `nobody at site ${p.site} answers ${name} (is the site up and its leaf link to the hub?)`, { code: 'unavailable' });
      }
      if ((e as Error).name === 'TimeoutError' || /timeout/i.test(m)) {
        throw new ProblemError(504, 'service-timeout', `site ${p.site} did not answer ${name} in time; send the same signed command again (same idempotency key)`, { code: 'timeout' });
      }
      if (/permission/i.test(m)) throw new ProblemError(403, 'forbidden', `this gateway may not send ${name} to site ${p.site}: ${m}`, { code: 'forbidden' });
      throw e;
    }
    if (reply.accepted) return { accepted: true, ...(reply.result !== undefined ? { result: reply.result } : {}) };
    const [status, kind] = RELAY_STATUS[reply.error.code] ?? [422, 'rejected'];
    const details = reply.error.details as { problems?: unknown[] } | undefined;
    throw new ProblemError(status, kind, `site ${p.site} refused ${name}: ${reply.error.message}`, {
      code: reply.error.code,
      ...(Array.isArray(details?.problems) ? { errors: details.problems.map(problemEntry) } : {}),
    });
  }
}
