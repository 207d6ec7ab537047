// Pages of a list: opaque cursors (base64url JSON of the last row's sort key), the page itself
// and its meta's schema. Shared by the routes and the cluster's gathered reads.
import { t } from 'elysia';
import { Validation } from '../core/errors.ts';

export function encodeCursor(v: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(v)).toString('base64url');
}

export function decodeCursor<T extends Record<string, unknown>>(
  c: string | undefined,
  check: (v: Record<string, unknown>) => boolean,
): T | undefined {
  if (c === undefined || c === '') return undefined;
  try {
    const v = JSON.parse(Buffer.from(c, 'base64url').toString('utf8'));
    if (v && typeof v === 'object' && check(v)) return v as T;
  } catch {
    /* fall through */
  }
  throw new Validation('cursor is not valid; pass meta.cursor from a previous page', { field: 'cursor' });
}

/** Fetches limit+1 rows to know whether there is a next page. */
export function page<T>(rows: T[], limit: number, keyOf: (row: T) => Record<string, unknown>) {
  const hasMore = rows.length > limit;
  const items = hasMore ? rows.slice(0, limit) : rows;
  return { items, meta: { cursor: hasMore ? encodeCursor(keyOf(items[items.length - 1])) : null, hasMore } };
}

export const PageMeta = t.Object({
  total: t.Optional(t.Integer()),
  cursor: t.Union([t.String(), t.Null()], { description: 'Pass as ?cursor= for the next page; null at the end' }),
  hasMore: t.Boolean(),
});
