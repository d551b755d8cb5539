// Server side of one command: a queue-group subscription on `cairn.<site>.cmd.<service>.<name>`
// that checks the request, answers a repeated idempotency key with the first reply, runs the
// handler once, and maps every outcome to `{ accepted, result | error }`. Never throws at the
// caller's expense: every request gets a reply.
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import { SpanKind, SpanStatusCode, trace as otelTrace } from '@opentelemetry/api';
import { COMMAND_ERROR_CODES, Refusal, checkCommand, commandSubject, type Command, type CommandReply } from '@cairn/contracts';
import type { CommandRoute } from './decorators.ts';
import { CommandFailedError, NonRetryableError, errorMessage } from './errors.ts';
import { CommandContext, type CommandInfo } from './handler-context.ts';
import { commandFingerprint, type CommandReplies } from './idempotency.ts';
import type { ConsumerLogger } from './jetstream-consumer.ts';
import { extractTrace } from './trace-context.ts';
import type { CommandAuthorizer } from '@cairn/command-auth';
import { ensureContextManager, jobIdOf, traceOf, withJobId } from '@cairn/telemetry';

export type CommandHandlerFn = (payload: unknown, context: CommandContext) => Promise<unknown>;

export interface ResponderDeps {
  readonly nc: NatsConnection;
  readonly site: string;
  readonly replies: CommandReplies;
  readonly maxMessageBytes: number;
  readonly logger: ConsumerLogger;
  /** Checks who sent a command before anything else happens (signed commands, docs/security.md). */
  readonly authorizer?: CommandAuthorizer;
}

/** Header set on a reply that was answered from the idempotency store. */
export const REPLAYED_HEADER = 'Cairn-Idempotent-Replay';

const decoder = new TextDecoder('utf-8', { fatal: true });
const tracer = otelTrace.getTracer('@cairn/messaging');

/** Longest error message a reply carries (the CommandError schema's limit): a longer one is cut, never an invalid reply. */
const MAX_ERROR_MESSAGE = 4096;

function rejected(code: string, message: string, details?: unknown): CommandReply {
  const text = message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE - 1)}…` : message;
  return { accepted: false, error: { code, message: text, ...(details === undefined ? {} : { details }) } };
}

/**
 * Maps what a handler threw to a reply code; `stored` says whether a retry should get the same
 * answer. A `Refusal` is the caller's error with its code; anything else is the route's
 * `failureCode` when it names one, else `internal`.
 */
export function replyForError(err: unknown, failureCode?: string): { reply: CommandReply; stored: boolean } {
  if (err instanceof CommandFailedError || err instanceof Refusal) return { reply: rejected(err.code, err.message, err.details), stored: err.code !== COMMAND_ERROR_CODES.unavailable };
  if (err instanceof NonRetryableError) return { reply: rejected('rejected', err.message, err.details), stored: true };
  if (failureCode) return { reply: rejected(failureCode, errorMessage(err)), stored: true };
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && /^[a-z][a-z0-9_]{0,63}$/.test(code)) {
    return { reply: rejected(code, errorMessage(err)), stored: code !== COMMAND_ERROR_CODES.unavailable && code !== COMMAND_ERROR_CODES.internal };
  }
  return { reply: rejected(COMMAND_ERROR_CODES.internal, errorMessage(err)), stored: false };
}

export class CommandResponder {
  readonly subject: string;
  private sub: Subscription | undefined;
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly deps: ResponderDeps, readonly route: CommandRoute, private readonly handler: CommandHandlerFn) {
    this.subject = commandSubject(deps.site, route.service, route.name);
  }

  start(): void {
    this.sub = this.deps.nc.subscribe(this.subject, {
      queue: this.route.queue ?? `cairn.${this.route.service}`,
      callback: (err, msg) => {
        if (err) {
          this.deps.logger.error(`${this.subject}: subscription failed: ${err.message}`);
          return;
        }
        const p = this.handle(msg).catch((e) => this.deps.logger.error(`${this.subject}: ${errorMessage(e)}`));
        this.inflight.add(p);
        void p.finally(() => this.inflight.delete(p));
      },
    });
  }

  /** Why the server closed the subscription at once (a permission violation), or undefined. Call after a flush. */
  async refusal(): Promise<Error | undefined> {
    if (!this.sub?.isClosed()) return undefined;
    const reason = await this.sub.closed;
    return reason instanceof Error ? reason : undefined;
  }

  /** Stops taking requests and waits (up to `timeoutMs`) for those in flight. */
  async stop(timeoutMs: number): Promise<void> {
    this.sub?.unsubscribe();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inflight]), new Promise((r) => { timer = setTimeout(r, timeoutMs); })]);
    clearTimeout(timer);
  }

  private respond(msg: Msg, reply: CommandReply, replayed = false): void {
    if (!msg.reply) return;
    let body = JSON.stringify(reply);
    if (Buffer.byteLength(body) > this.deps.maxMessageBytes) {
      this.deps.logger.error(`${this.subject}: reply of ${Buffer.byteLength(body)} bytes is over the limit`);
      body = JSON.stringify(rejected(COMMAND_ERROR_CODES.internal, `the reply is over the limit of ${this.deps.maxMessageBytes} bytes`));
    }
    const h = natsHeaders();
    if (replayed) h.set(REPLAYED_HEADER, 'true');
    msg.respond(body, { headers: h });
  }

  private async handle(msg: Msg): Promise<void> {
    if (!msg.reply) {
      this.deps.logger.warn(`${this.subject}: dropped a command sent without a reply subject`);
      return;
    }
    if (msg.data.byteLength > this.deps.maxMessageBytes) {
      return this.respond(msg, rejected(COMMAND_ERROR_CODES.payloadTooLarge,
        `command is ${msg.data.byteLength} bytes, over the limit of ${this.deps.maxMessageBytes} bytes`,
        { bytes: msg.data.byteLength, maxBytes: this.deps.maxMessageBytes }));
    }
    let raw: unknown;
    try {
      raw = JSON.parse(decoder.decode(msg.data));
    } catch (e) {
      return this.respond(msg, rejected(COMMAND_ERROR_CODES.invalidCommand, 'command is not UTF-8 JSON',
        { problems: [{ path: '', message: errorMessage(e) }] }));
    }
    const checked = checkCommand(raw, this.route.name);
    if (!checked.ok) {
      return this.respond(msg, rejected(checked.code, `${this.route.name}: ${checked.problems.length} problem(s)`, { problems: checked.problems }));
    }
    let command = checked.command;
    if (command.site !== this.deps.site) {
      return this.respond(msg, rejected(COMMAND_ERROR_CODES.invalidCommand, `command for site ${command.site} reached site ${this.deps.site}`,
        { problems: [{ path: '/site', message: `expected ${this.deps.site}` }] }));
    }

    let vouchedBy: CommandInfo['vouchedBy'];
    if (this.deps.authorizer) {
      let decision;
      try {
        decision = await this.deps.authorizer.authorize(command, this.subject);
      } catch (e) {
        return this.respond(msg, rejected(COMMAND_ERROR_CODES.unavailable, `cannot check who sent ${command.name}: ${errorMessage(e)}`));
      }
      vouchedBy = decision.ok ? decision.by : undefined;
      if (!decision.ok) {
        this.deps.logger.warn(`${this.subject}: refused ${command.name} ${command.id} from ${command.actor.kind}:${command.actor.id}: ${decision.message}`);
        return this.respond(msg, rejected(decision.code, decision.message));
      }
      // The actor handlers see (and record) is what was checked: a name nobody verified says so.
      const actor = { kind: command.actor.kind, id: command.actor.id, ...(decision.by === 'unchecked' ? { authenticated: false as const } : {}) };
      command = { ...command, actor };
    }

    if (this.route.replyStore === false) {
      // The handler answers a repeat itself (see CommandHandlerOptions.replyStore).
      const { reply } = await this.run(msg, command, vouchedBy);
      return this.respond(msg, reply);
    }
    const key = `${this.route.service}:${command.name}:${command.idempotencyKey}`;
    const fingerprint = commandFingerprint(command.name, command.schemaVersion, command.payload);
    let claim;
    try {
      claim = await this.deps.replies.claim(key, fingerprint);
    } catch (e) {
      return this.respond(msg, rejected(COMMAND_ERROR_CODES.unavailable, `idempotency store unavailable: ${errorMessage(e)}`));
    }
    switch (claim.state) {
      case 'done': return this.respond(msg, claim.reply, true);
      case 'pending': return this.respond(msg, rejected(COMMAND_ERROR_CODES.inProgress, `a ${command.name} with this idempotency key is being handled; retry later`));
      case 'conflict': return this.respond(msg, rejected(COMMAND_ERROR_CODES.idempotencyConflict, `idempotency key ${JSON.stringify(command.idempotencyKey)} was used for a different ${command.name}`));
      case 'claimed': break;
    }

    const { reply, stored } = await this.run(msg, command, vouchedBy);
    try {
      if (stored) await this.deps.replies.complete(key, claim.token, fingerprint, reply);
      else await this.deps.replies.abandon(key, claim.token);
    } catch (e) {
      this.deps.logger.warn(`${this.subject}: could not store the reply for key ${command.idempotencyKey}: ${errorMessage(e)}`);
    }
    this.respond(msg, reply);
  }

  private async run(msg: Msg, command: Command, vouchedBy?: CommandInfo['vouchedBy']): Promise<{ reply: CommandReply; stored: boolean }> {
    ensureContextManager();
    const { context: incomingContext, trace: incoming } = extractTrace(msg.headers);
    const jobId = jobIdOf(command.payload);
    const parent = withJobId(incomingContext, jobId);
    return tracer.startActiveSpan(`${this.route.service} ${command.name}`, {
      kind: SpanKind.SERVER,
      attributes: {
        'messaging.system': 'nats',
        'messaging.destination.name': this.subject,
        'cairn.command.id': command.id,
        'cairn.command.actor': `${command.actor.kind}:${command.actor.id}`,
        ...(jobId ? { 'cairn.job.id': jobId } : {}),
      },
    }, parent, async (span): Promise<{ reply: CommandReply; stored: boolean }> => {
      const otelContext = otelTrace.setSpan(parent, span);
      const info: CommandInfo = {
        subject: this.subject,
        service: this.route.service,
        command,
        trace: traceOf(otelContext) ?? incoming ?? command.trace,
        otelContext,
        ...(vouchedBy ? { vouchedBy } : {}),
      };
      try {
        const result = await this.handler(command.payload, new CommandContext([info]));
        span.setStatus({ code: SpanStatusCode.OK });
        const reply: CommandReply = result === undefined ? { accepted: true } : { accepted: true, result };
        return { reply, stored: true };
      } catch (e) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(e) });
        const mapped = replyForError(e, this.route.failureCode);
        if (!mapped.stored) this.deps.logger.error(`${this.subject}: ${command.name} ${command.id} failed: ${errorMessage(e)}`);
        return mapped;
      } finally {
        span.end();
      }
    });
  }
}
