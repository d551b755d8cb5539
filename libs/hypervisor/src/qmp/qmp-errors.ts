// Errors of the QMP client: a command QEMU refused (with QEMU's error class), a timeout, a lost
// connection. Callers branch on the class, never on message text.

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpError extends Error {
  override readonly name = 'QmpError';
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
  }
}

/** No answer (or no awaited event) within the deadline. The command may still run in QEMU. */
export class QmpTimeoutError extends Error {
  override readonly name = 'QmpTimeoutError';
  constructor(readonly what: string, readonly timeoutMs: number) {
    super(`QMP ${what}: no answer within ${timeoutMs} ms`);
  }
}

/** The monitor connection is closed or was lost before the answer came. */
export class QmpConnectionError extends Error {
  override readonly name = 'QmpConnectionError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
