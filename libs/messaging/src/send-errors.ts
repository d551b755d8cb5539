// What a sender gets back when a message cannot be delivered or answered: plain errors, apart
// from errors.ts (whose handler errors extend NestJS's RpcException), so that a client that only
// sends commands (the `cairn` CLI, through command-bus.entry.ts) loads neither NestJS nor
// reflect-metadata (docs/benchmarks.md "CLI start-up"). errors.ts re-exports them.

/** A message larger than the configured limit: refused before sending, or on receipt. */
export class MessageTooLargeError extends Error {
  override readonly name = 'MessageTooLargeError';
  constructor(readonly subject: string, readonly bytes: number, readonly maxBytes: number) {
    super(`message for ${subject} is ${bytes} bytes, over the limit of ${maxBytes} bytes`);
  }
}

/** No process listens for this command (nothing subscribed on its subject). */
export class CommandNoRespondersError extends Error {
  override readonly name = 'CommandNoRespondersError';
  constructor(readonly subject: string, options?: ErrorOptions) {
    super(`no service answers ${subject} (is it running and connected?)`, options);
  }
}

/** The command was sent but no reply came in time; it may or may not have been handled. */
export class CommandTimeoutError extends Error {
  override readonly name = 'CommandTimeoutError';
  constructor(readonly subject: string, readonly timeoutMs: number, options?: ErrorOptions) {
    super(`no reply to ${subject} within ${timeoutMs} ms; it may still be handled — resend with the same idempotency key`, options);
  }
}

/** The reply was not a valid command reply (a broken or foreign responder). */
export class InvalidReplyError extends Error {
  override readonly name = 'InvalidReplyError';
  constructor(readonly subject: string, readonly problem: string) {
    super(`invalid reply from ${subject}: ${problem}`);
  }
}
