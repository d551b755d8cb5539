// Exit codes and the error type every command throws for a clean message.
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  unavailable: 5,
  jobFailed: 6,
  /** Refused: not authenticated (signature) or not allowed (role). */
  denied: 7,
} as const;

export class CliError extends Error {
  constructor(message: string, readonly exitCode: number = EXIT.failure, readonly hint?: string) {
    super(message);
    this.name = 'CliError';
  }
}
