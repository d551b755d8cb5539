// Errors of the messaging layer: what a handler throws to steer the consumer, and what a
// sender gets back when a message cannot be delivered or answered (send-errors.ts, re-exported).
// The exception alone, not the package index: the CLI's bundle then leaves NestJS out of commands that do not start services.
// Nest's decorators, loaded by the exception's module, need the metadata polyfill first.
import 'reflect-metadata';
import { RpcException } from '@nestjs/microservices/exceptions/rpc-exception.js';

export { CommandNoRespondersError, CommandTimeoutError, InvalidReplyError, MessageTooLargeError } from './send-errors.ts';

/**
 * Thrown by a handler when retrying cannot help (the message is poison): the consumer
 * terminates the message and records it as dead-lettered instead of redelivering it.
 *
 * It is an RpcException whose `getError()` is the exception itself, so Nest's default
 * exception filter hands it on to the transport intact (a plain Error is reduced to
 * "Internal server error" on the way, and then counts as retryable).
 */
export class NonRetryableError extends RpcException {
  override readonly name: string = 'NonRetryableError';
  constructor(message: string, readonly details?: unknown, options?: ErrorOptions) {
    super(message);
    this.message = message;
    if (options?.cause !== undefined) this.cause = options.cause;
  }
  override getError(): object { return this; }
}

/**
 * Thrown by a handler that cannot act on the message yet (a copy not due, a target away, a
 * lock not ended): the consumer redelivers it after `delayMs` and does not dead-letter it for that.
 */
export class RetryLaterError extends RpcException {
  override readonly name: string = 'RetryLaterError';
  constructor(message: string, readonly delayMs: number) {
    super(message);
    this.message = message;
  }
  override getError(): object { return this; }
}

/**
 * Thrown by a command handler to reject a command with a code (`not_found`, `conflict`…):
 * the caller gets `{ accepted: false, error: { code, message, details } }`.
 */
export class CommandFailedError extends RpcException {
  override readonly name: string = 'CommandFailedError';
  constructor(readonly code: string, message: string, readonly details?: unknown) {
    super(message);
    this.message = message;
  }
  override getError(): object { return this; }
}

/** True for errors a handler marks as not worth retrying (also duck-typed `retryable: false`). */
export function isNonRetryable(err: unknown): boolean {
  if (err instanceof NonRetryableError) return true;
  return typeof err === 'object' && err !== null && (err as { retryable?: unknown }).retryable === false;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string') {
    return (err as { message: string }).message;
  }
  return String(err);
}
