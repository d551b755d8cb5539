// Cursors for every list (issue 21): a page is `{ items, next }`; `next` is an opaque cursor
// naming where the page ended (the sort key of its last item), passed back as `after` for the
// following page, and null on the last page. Keys are the list's whole sort order, ending in a
// unique id, so a walk from the first page to the last meets every item once, and items added
// meanwhile either come on a later page or (added before the cursor) not at all.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const Cursor = Type.String({
  minLength: 1, maxLength: 1024, pattern: '^[A-Za-z0-9_-]+$',
  description: 'Where the previous page ended: its `next`. Leave out for the first page.',
});

export const Page = <T extends TSchema>(item: T) => Type.Object({
  items: Type.Array(item),
  next: Type.Union([Cursor, Type.Null()], { description: 'Pass as `after` to get the next page; null on the last page.' }),
});
export interface PageOf<T> {
  items: T[];
  next: string | null;
}

/** The sort key of an item: the values of the list's ORDER BY, in order. */
export type CursorKey = ReadonlyArray<string | number>;

export class CursorError extends Error {
  override readonly name = 'CursorError';
}

// base64url of the key's JSON, with btoa/atob so the browser console can hold cursors too.
const toBase64Url = (text: string): string => {
  let binary = '';
  for (const b of new TextEncoder().encode(text)) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
};
const fromBase64Url = (text: string): string =>
  new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(atob(text.replaceAll('-', '+').replaceAll('_', '/')), (c) => c.charCodeAt(0)));

export function encodeCursor(key: CursorKey): string {
  return toBase64Url(JSON.stringify(key));
}

/** The key a cursor names; throws CursorError for anything this list did not hand out. */
export function decodeCursor(cursor: string, shape: ReadonlyArray<'string' | 'number'>): CursorKey {
  let key: unknown;
  try {
    key = JSON.parse(fromBase64Url(cursor));
  } catch {
    throw new CursorError(`the cursor ${JSON.stringify(cursor.slice(0, 40))} is not one this list handed out (pass a page's \`next\` as \`after\`)`);
  }
  if (!Array.isArray(key) || key.length !== shape.length || key.some((v, i) => typeof v !== shape[i])) {
    throw new CursorError('the cursor belongs to another list or another version of it (pass a page\'s `next` as `after`)');
  }
  return key as CursorKey;
}

/**
 * A page of an in-memory list: `sorted` in its list order (`direction` of `keyOf`, a key ending
 * in a unique id). For lists kept in memory (API users, tokens, approvals).
 */
export function pageOf<T>(
  sorted: readonly T[], keyOf: (item: T) => CursorKey, shape: ReadonlyArray<'string' | 'number'>,
  q: { after?: string; limit?: number }, defaultLimit: number, direction: 'asc' | 'desc' = 'asc',
): PageOf<T> {
  const limit = q.limit ?? defaultLimit;
  let start = 0;
  if (q.after !== undefined) {
    const after = decodeCursor(q.after, shape);
    start = sorted.findIndex((item) => (direction === 'asc' ? 1 : -1) * compareKeys(keyOf(item), after) > 0);
    if (start < 0) start = sorted.length;
  }
  const items = sorted.slice(start, start + limit);
  const more = start + limit < sorted.length;
  return { items, next: more && items.length > 0 ? encodeCursor(keyOf(items.at(-1)!)) : null };
}

/** Ascending order of two keys, value by value. */
export function compareKeys(a: CursorKey, b: CursorKey): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!; const y = b[i]!;
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return a.length - b.length;
}

export type CursorValue = Static<typeof Cursor>;
