// Exit codes, the error type every command throws for a clean message, and the one shape an
// error takes on the way out (a sentence on stderr, or `{ error: { code, message, hint } }` on
// stdout with --json).
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  unavailable: 5,
  jobFailed: 6,
  /** Refused: not authenticated (signature, token) or not allowed (role, four eyes). */
  denied: 7,
} as const;

/** The machine-readable code of each exit code, when the error does not name a finer one. */
const CODE_OF_EXIT: Record<number, string> = {
  [EXIT.failure]: 'failed',
  [EXIT.usage]: 'usage',
  [EXIT.notFound]: 'not_found',
  [EXIT.conflict]: 'conflict',
  [EXIT.unavailable]: 'unavailable',
  [EXIT.jobFailed]: 'job_failed',
  [EXIT.denied]: 'denied',
};

export class CliError extends Error {
  /** `code`: a finer machine-readable reason (e.g. `four_eyes`); default from the exit code. */
  constructor(message: string, readonly exitCode: number = EXIT.failure, readonly hint?: string, readonly code?: string) {
    super(message);
    this.name = 'CliError';
  }
}

export interface ErrorShape {
  readonly error: { readonly code: string; readonly message: string; readonly hint?: string };
}

/** The text with a full stop at its end (unless it ends a sentence already). */
export function fullStop(text: string): string {
  const t = text.trim();
  if (!t) return 'something failed without saying what.';
  return /[.!?:]$/.test(t) ? t : `${t}.`;
}

/**
 * A message as a whole sentence: a full stop at the end, a capital first letter; a first word
 * that is a name (`createUser`, a path) is quoted or left as it is, not capitalised.
 */
export function sentence(text: string): string {
  const t = fullStop(text);
  const first = t.split(/\s/)[0]!;
  if (/^[a-z]+[A-Z]\w*$/.test(first)) return `\`${first}\`${t.slice(first.length)}`;
  return /^[a-z]/.test(t) ? t[0]!.toUpperCase() + t.slice(1) : t;
}

export function errorShape(e: CliError): ErrorShape {
  return {
    error: {
      code: e.code ?? CODE_OF_EXIT[e.exitCode] ?? 'failed',
      message: sentence(e.message),
      ...(e.hint ? { hint: sentence(e.hint) } : {}),
    },
  };
}
