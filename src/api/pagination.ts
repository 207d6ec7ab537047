// Opaque cursors: base64url JSON of the last row's sort key.
import { invalid } from './errors.ts';

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
  throw invalid('cursor is not valid; pass meta.cursor from a previous page', { field: 'cursor' });
}

/** Fetches limit+1 rows to know whether there is a next page. */
export function page<T>(rows: T[], limit: number, keyOf: (row: T) => Record<string, unknown>) {
  const hasMore = rows.length > limit;
  const items = hasMore ? rows.slice(0, limit) : rows;
  return { items, meta: { cursor: hasMore ? encodeCursor(keyOf(items[items.length - 1])) : null, hasMore } };
}

/** "a,b" → ["a","b"]; undefined stays undefined. */
export function commaList(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const parts = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return parts.length ? parts : undefined;
}
