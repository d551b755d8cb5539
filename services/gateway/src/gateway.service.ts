// The gateway's rules: a request becomes a catalogue query or a command on the bus, and every
// refusal becomes a problem with the right HTTP status. Controllers only pass things through.
import { Inject, Injectable } from '@nestjs/common';
import {
  COMMAND_SCHEMAS,
  type Actor, type CommandName, type CommandPayloadMap, type CommandReply, type CommandResultMap, type TraceContext,
} from '@cairn/contracts';
import type { QueryName, QueryRequest, QueryResult, QueryErrorCode } from '@cairn/catalogue-client';
import { GATEWAY_CATALOGUE, GATEWAY_COMMANDS, GATEWAY_CONFIG } from './gateway.tokens.ts';
import type { GatewayConfig } from './gateway.config.ts';
import { ProblemError } from './problem.ts';
import type { Caller } from './route.decorator.ts';

/** What the gateway needs from the catalogue. */
export interface CatalogueQueries {
  query<Q extends QueryName>(name: Q, request: QueryRequest<Q>): Promise<QueryResult<Q>>;
}

/** What the gateway needs from the command bus. */
export interface CommandSender {
  send<N extends CommandName>(
    service: string, name: N, payload: CommandPayloadMap[N],
    options?: { actor?: Actor; idempotencyKey?: string; timeoutMs?: number; trace?: TraceContext },
  ): Promise<CommandReply<CommandResultMap[N]>>;
}

const QUERY_STATUS: Record<QueryErrorCode, [number, string]> = {
  bad_request: [400, 'validation'],
  not_found: [404, 'not-found'],
  unavailable: [503, 'catalogue-unavailable'],
  internal: [502, 'catalogue-failed'],
};

/** HTTP status and problem kind of a service's refusal of a command (the relay route adds a site's own refusals). */
export const COMMAND_STATUS: Readonly<Record<string, readonly [number, string]>> = {
  invalid_command: [400, 'validation'],
  unknown_command: [400, 'unknown-command'],
  payload_too_large: [413, 'payload-too-large'],
  not_found: [404, 'not-found'],
  conflict: [409, 'conflict'],
  idempotency_conflict: [409, 'idempotency-conflict'],
  in_progress: [409, 'in-progress'],
  forbidden: [403, 'forbidden'],
  locked: [409, 'locked'],
  approval_required: [403, 'approval-required'],
  unavailable: [503, 'service-unavailable'],
  internal: [502, 'service-failed'],
};

/**
 * One entry of a problem's `errors` from what a service listed: `{ path, message }` as given, a
 * plain string as the message of the body as a whole (never the text "undefined").
 */
export function problemEntry(p: unknown): { path: string; message: string } {
  if (typeof p === 'string') return { path: 'body', message: p };
  const o = (typeof p === 'object' && p !== null ? p : {}) as { path?: unknown; message?: unknown };
  return {
    path: typeof o.path === 'string' && o.path ? o.path : 'body',
    message: typeof o.message === 'string' ? o.message : JSON.stringify(p) ?? 'invalid',
  };
}

@Injectable()
export class GatewayService {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayConfig,
    @Inject(GATEWAY_CATALOGUE) private readonly catalogue: CatalogueQueries,
    @Inject(GATEWAY_COMMANDS) private readonly commands: CommandSender,
  ) {}

  async query<Q extends QueryName>(name: Q, request: QueryRequest<Q>): Promise<QueryResult<Q>> {
    try {
      return await this.catalogue.query(name, request);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const mapped = typeof code === 'string' ? QUERY_STATUS[code as QueryErrorCode] : undefined;
      if (!mapped) throw e;
      throw new ProblemError(mapped[0], mapped[1], (e as Error).message, { code: code as string });
    }
  }

  /** Sends a command to the service that owns it; resolves with its result or throws a problem. */
  async command<N extends CommandName>(
    name: N, payload: CommandPayloadMap[N], caller: Caller, options: { long?: boolean } = {},
  ): Promise<CommandResultMap[N]> {
    const service = COMMAND_SCHEMAS[name].service;
    const timeoutMs = options.long ? this.config.longTimeoutMs : this.config.timeoutMs;
    let reply: CommandReply<CommandResultMap[N]>;
    try {
      reply = await this.commands.send(service, name, payload, {
        actor: caller.actor,
        timeoutMs,
        trace: { traceparent: caller.traceparent },
        ...(caller.idempotencyKey ? { idempotencyKey: caller.idempotencyKey } : {}),
      });
    } catch (e) {
      const kind = (e as Error).name;
      if (kind === 'CommandNoRespondersError') {
        throw new ProblemError(503, 'service-unavailable', `no ${service} is answering ${name} on site ${this.config.site}; is it running?`, { code: 'unavailable' });
      }
      if (kind === 'CommandTimeoutError') {
        throw new ProblemError(504, 'service-timeout', `${service} did not answer ${name} within ${timeoutMs} ms; retry with the same Idempotency-Key`, { code: 'timeout' });
      }
      throw e;
    }
    if (reply.accepted) return reply.result as CommandResultMap[N];
    const [status, kind] = COMMAND_STATUS[reply.error.code] ?? [422, 'rejected'];
    const details = reply.error.details as { problems?: { path: string; message: string }[] } | undefined;
    throw new ProblemError(status, kind, `${name} refused: ${reply.error.message}`, {
      code: reply.error.code,
      ...(Array.isArray(details?.problems) ? { errors: details.problems.map(problemEntry) } : {}),
    });
  }
}
