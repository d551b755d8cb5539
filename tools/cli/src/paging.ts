// Lists page through cursors (the API's `limit`, `after` and `next`). Every list command takes
// --limit <n> (at most n items), --after <cursor> (start after a page's `next`) and --all.
// Short lists (VMs, policies, users) give every item by default, fetched page by page; long
// ones (jobs, the audit trail) the newest few unless --all. With --json the output is the
// array of items, or `{ items, next }` when --limit or --after asked for one page of several.
import { Option, type Command } from 'commander';
import { CliError, EXIT } from './cli-error.ts';

/** The API's largest page. */
export const MAX_PAGE = 1000;

export interface Page<T> { readonly items: readonly T[]; readonly next: string | null }

export interface PagingChoice {
  /** At most this many items (undefined: every item). */
  readonly limit: number | undefined;
  readonly after: string | undefined;
  /** --limit or --after was given: the caller wants one stretch and its cursor. */
  readonly explicit: boolean;
}

/** Adds --limit, --after and --all; `defaultLimit` undefined means every item by default. */
export function pagingOptions(c: Command, what: string, defaultLimit?: number, withAll = true): Command {
  c.option('--limit <n>', `at most N ${what}${defaultLimit ? ` (default ${defaultLimit}; --all for every one)` : ' (default: all)'}`)
    .option('--after <cursor>', `continue after this cursor (the \`next\` a --limit listing printed)`);
  return withAll ? c.addOption(new Option('--all', `every one of the ${what}, page by page`).conflicts('limit')) : c;
}

export function pagingChoice(o: Record<string, unknown>, defaultLimit?: number): PagingChoice {
  let limit: number | undefined = defaultLimit;
  if (o['limit'] !== undefined) {
    limit = Number(o['limit']);
    if (!Number.isInteger(limit) || limit < 1) throw new CliError(`--limit must be a whole number above 0, not ${JSON.stringify(o['limit'])}`, EXIT.usage);
  }
  if (o['all'] === true && defaultLimit !== undefined) limit = undefined;
  const after = o['after'] === undefined ? undefined : String(o['after']);
  return { limit, after, explicit: o['limit'] !== undefined || after !== undefined };
}

/** Fetches pages until `choice.limit` items or the last page; returns them and where they end. */
export async function collectPages<T>(
  fetchPage: (request: { limit: number; after?: string }) => Promise<Page<T>>, choice: PagingChoice,
): Promise<Page<T>> {
  const items: T[] = [];
  let after = choice.after;
  const want = choice.limit ?? Number.POSITIVE_INFINITY;
  for (;;) {
    const page = await fetchPage({ limit: Math.min(MAX_PAGE, want - items.length), ...(after !== undefined ? { after } : {}) });
    items.push(...page.items);
    if (page.next === null || items.length >= want || page.items.length === 0) return { items, next: page.next };
    after = page.next;
  }
}

/**
 * Prints a listing: the items (human: the table, then on stderr the cursor that continues it);
 * with --json the array, or `{ items, next }` when one stretch was asked for.
 */
export function printPage<T>(json: boolean, page: Page<T>, choice: PagingChoice, human: () => string): void {
  if (json) {
    process.stdout.write(JSON.stringify(choice.explicit ? page : page.items, null, 2) + '\n');
    return;
  }
  process.stdout.write(human() + '\n');
  if (page.next !== null) process.stderr.write(`more: --after ${page.next}\n`);
}
