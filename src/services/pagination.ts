// Pages of a list: opaque cursors (base64url JSON of the last row's sort key), the page itself
// and its meta's schema. Shared by the routes and the cluster's gathered reads.
//
// Time-ordered lists (traces, events, conversations, dead letters) are newest first by (time, id)
// in embedded and cluster mode alike, with the cursor {at, id}: "strictly older than this". A seq
// would be cheaper but is per node; (time, id) is a total order every node can filter by, so one
// node's page and a page gathered from every node have the same cursor and the same ORDER BY.
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

/** The sort key of a time-ordered list and its cursor: a row's time (ISO string) and id. */
export interface TimeKey {
  at: string;
  id: string;
}

export function decodeTimeCursor(c: string | undefined): TimeKey | undefined {
  return decodeCursor<{ at: string; id: string }>(c, (v) => typeof v.at === 'string' && typeof v.id === 'string');
}

/** SQL keyset condition "(time, id) strictly older than the cursor" (a row value, so an index on (time, id) serves it). */
export function olderThan(timeColumn: string, idColumn: string, key: TimeKey): { sql: string; params: string[] } {
  return { sql: `(${timeColumn}, ${idColumn}) < (?, ?)`, params: [key.at, key.id] };
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

/** PageMeta plus `partial` (lists gathered from every node in cluster mode). */
export const GatheredPageMeta = t.Object({
  ...PageMeta.properties,
  partial: t.Optional(
    t.Boolean({ description: 'Cluster mode: true when a node did not answer in time and its rows are missing' }),
  ),
});
