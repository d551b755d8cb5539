// The sending side of commands: builds the envelope, sends it as a request on
// `cairn.<site>.cmd.<service>.<name>` and returns the typed reply. Transport failures are
// typed errors; a rejection by the service is a reply (`accepted: false`), not an exception.
import { randomUUID } from 'node:crypto';
import { errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Context } from '@opentelemetry/api';
import {
  CommandReply as CommandReplySchema, commandSubject, latestCommandVersion,
  type Actor, type Command, type CommandName, type CommandPayloadMap, type CommandReply, type CommandResultMap, type TraceContext,
} from '@cairn/contracts';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { CommandNoRespondersError, CommandTimeoutError, InvalidReplyError, MessageTooLargeError } from './send-errors.ts';
// OpenTelemetry's API loads only where a span can exist (a context passed, or one registered).
import { sendTrace } from './send-trace.ts';
import { asPermissionDenied } from './permissions.ts';
import { commandSecurityOf, signCommand, type CommandSigner } from '@cairn/command-auth';

export interface CommandBusOptions {
  readonly site: string;
  /** Actor used when a send does not name one. */
  readonly actor?: Actor;
  readonly defaultTimeoutMs?: number;
  /** Larger commands are refused before sending (default 1 MiB). */
  readonly maxMessageBytes?: number;
  /** Signs every command (`auth`); default: the signer bound to the connection (`bindCommandSecurity`), else unsigned. */
  readonly signer?: CommandSigner;
}

export interface SendOptions {
  readonly actor?: Actor;
  /** Default: a fresh UUID (no deduplication across sends). Reuse it when retrying. */
  readonly idempotencyKey?: string;
  readonly timeoutMs?: number;
  readonly trace?: TraceContext;
  readonly otelContext?: Context;
  /** Default: the latest version this build knows. */
  readonly schemaVersion?: number;
}

// Compiled for the first reply, after the first request has left (not at import).
let compiledReplyCheck: TypeCheck<typeof CommandReplySchema> | undefined;
const replyCheck = (): TypeCheck<typeof CommandReplySchema> => (compiledReplyCheck ??= TypeCompiler.Compile(CommandReplySchema));

export class CommandBus {
  private readonly maxMessageBytes: number;

  constructor(private readonly nc: NatsConnection, private readonly options: CommandBusOptions) {
    this.maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
  }

  async send<N extends CommandName>(
    service: string,
    name: N,
    payload: CommandPayloadMap[N],
    options: SendOptions = {},
  ): Promise<CommandReply<CommandResultMap[N]>> {
    const actor = options.actor ?? this.options.actor;
    if (!actor) throw new TypeError(`CommandBus.send(${name}): no actor (pass options.actor or configure one)`);
    const subject = commandSubject(this.options.site, service, name);
    const traced = await sendTrace(options.trace, options.otelContext);
    const trace = traced.command;
    const unsigned: Command = {
      id: randomUUID(),
      name,
      schemaVersion: options.schemaVersion ?? latestCommandVersion(name),
      idempotencyKey: options.idempotencyKey ?? randomUUID(),
      actor,
      site: this.options.site,
      time: new Date().toISOString(),
      ...(trace ? { trace } : {}),
      payload,
    };
    const signer = this.options.signer ?? commandSecurityOf(this.nc)?.signer;
    const command = signer ? signCommand(unsigned, signer) : unsigned;
    const body = Buffer.from(JSON.stringify(command));
    if (body.byteLength > this.maxMessageBytes) throw new MessageTooLargeError(subject, body.byteLength, this.maxMessageBytes);
    const h = natsHeaders();
    if (traced.headers) {
      h.set('traceparent', traced.headers.traceparent);
      if (traced.headers.tracestate) h.set('tracestate', traced.headers.tracestate);
    }
    const timeoutMs = options.timeoutMs ?? this.options.defaultTimeoutMs ?? 5000;
    let msg;
    try {
      msg = await this.nc.request(subject, body, { timeout: timeoutMs, headers: h });
    } catch (e) {
      if (e instanceof natsErrors.RequestError && e.isNoResponders()) throw new CommandNoRespondersError(subject, { cause: e });
      if (e instanceof natsErrors.NoRespondersError) throw new CommandNoRespondersError(subject, { cause: e });
      if (e instanceof natsErrors.TimeoutError) throw new CommandTimeoutError(subject, timeoutMs, { cause: e });
      throw asPermissionDenied(e) ?? e;
    }
    let reply: unknown;
    try {
      reply = msg.json();
    } catch {
      throw new InvalidReplyError(subject, 'not JSON');
    }
    if (!replyCheck().Check(reply)) {
      const first = replyCheck().Errors(reply).First();
      throw new InvalidReplyError(subject, first ? `${first.path || '(reply)'}: ${first.message}` : 'does not match CommandReply');
    }
    return reply as CommandReply<CommandResultMap[N]>;
  }
}
