// Decorators that route a Nest controller method to our transport: a durable JetStream
// consumer (`@JetStreamHandler`) or a command responder (`@CommandHandler`). Both carry
// their options in the pattern's extras, which the server reads when it binds.
import { Catch, UseFilters, applyDecorators, type RpcExceptionFilter } from '@nestjs/common';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { throwError, type Observable } from 'rxjs';
import type { MessageValidator } from './message-validation.ts';

/** Transport id of JetStreamServer: handlers decorated here bind only to it. */
export const JETSTREAM_TRANSPORT: unique symbol = Symbol.for('cairn.transport.jetstream');

export interface JetStreamHandlerOptions {
  /** The stream to consume (must exist). */
  readonly stream: string;
  /** Durable consumer name (`[A-Za-z0-9_-]`); every instance of the handler shares it. */
  readonly durable: string;
  /** Only messages on these subjects (one filter: NATS 2.9 has no multi-filter consumers). */
  readonly filterSubject?: string;
  /** Deliveries before the message is dead-lettered (default 5). */
  readonly maxDeliver?: number;
  /** Redelivery delays after failures 1, 2, …; the last repeats (default 1 s, 2 s, 4 s … 5 min). */
  readonly backoffMs?: readonly number[];
  /** Unacknowledged time before the server redelivers (default 30 s); in-progress acks every third of it. */
  readonly ackWaitMs?: number;
  /** Messages handled at once by one instance (default 1). */
  readonly concurrency?: number;
  /** How a decoded payload is checked (default: Cairn events, validated and upcast). */
  readonly validate?: MessageValidator;
  /** Where a new durable starts (default `all`). */
  readonly deliverPolicy?: 'all' | 'new';
  /** Drop messages whose id was already handled by this durable (default true). */
  readonly dedup?: boolean;
  /**
   * Deliveries out at once for the durable, over all instances (default max(1000, 4 × concurrency)).
   * 1: one at a time in stream order, a message naked for later holding back the ones after it.
   */
  readonly maxAckPending?: number;
}

export interface CommandHandlerOptions {
  /** Queue group (default `cairn.<service>`): one instance of the service answers each request. */
  readonly queue?: string;
  /** The code an unexpected error (not a Refusal) is answered with, e.g. `restore_failed` (default `internal`). */
  readonly failureCode?: string;
  /**
   * Keep the first reply of each idempotency key in the reply store (default true: a claim and
   * the reply, two replicated KV writes per command). False only where the handler itself is
   * idempotent by an id in the payload and answers a repeat as it answered the first time (the
   * snapshot coordinator's RequestSnapshot and ReleaseSnapshot: four of a backup job's six KV
   * writes); its handler may then run again for a repeat, and concurrent repeats are its to order.
   */
  readonly replyStore?: boolean;
}

export const JETSTREAM_EXTRAS = 'cairnJetStream';
export const COMMAND_EXTRAS = 'cairnCommand';

export interface CommandRoute extends CommandHandlerOptions {
  readonly service: string;
  readonly name: string;
}

export function jetStreamPattern(durable: string): string {
  return `jetstream:${durable}`;
}

export function commandPattern(service: string, name: string): string {
  return `command:${service}.${name}`;
}

/** Handles messages of a stream through a durable pull consumer (ack after success). */
export function JetStreamHandler(options: JetStreamHandlerOptions): MethodDecorator {
  return EventPattern<string>(jetStreamPattern(options.durable), JETSTREAM_TRANSPORT, { [JETSTREAM_EXTRAS]: options });
}

/**
 * Lets what a command handler throws reach the command responder intact (Nest's default filter
 * reduces any error that is not an RpcException to "Internal server error"): the responder turns
 * a `Refusal` into the caller's rejected reply with its code, anything else into `internal` with
 * its message (not kept for a retry). So a handler is one line, with no try/catch.
 */
@Catch()
export class RefusalFilter implements RpcExceptionFilter<unknown> {
  catch(error: unknown): Observable<never> {
    return throwError(() => error);
  }
}

/** Answers command `name` of `service` (`cairn.<site>.cmd.<service>.<name>`); a `Refusal` it throws is the caller's error. */
export function CommandHandler(service: string, name: string, options: CommandHandlerOptions = {}): MethodDecorator {
  const route: CommandRoute = { service, name, ...options };
  return applyDecorators(
    MessagePattern(commandPattern(service, name), JETSTREAM_TRANSPORT, { [COMMAND_EXTRAS]: route }),
    UseFilters(RefusalFilter),
  );
}
