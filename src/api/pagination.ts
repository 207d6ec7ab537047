// Query helpers of list routes; cursors and pages are in src/services/pagination.ts.
export { decodeCursor, decodeTimeCursor, encodeCursor, page } from '../services/pagination.ts';

/** "a,b" → ["a","b"]; undefined stays undefined. */
export function commaList(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const parts = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return parts.length ? parts : undefined;
}
