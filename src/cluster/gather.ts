// Cluster-wide LIST reads (traces v1/v2, events v2). Each node keeps its own SQLite, so a list is
// gathered: the node the caller asked answers from its own rows and asks every live peer the same
// query (caller's own key, FORWARDED_HEADER so the peer answers from its rows only), then merges.
//
// Order and cursor: newest first by (time, id) — traces by receivedAt, events by createdAt — and
// the cursor is base64url JSON {at, id} meaning "strictly older than this (time, id)". Every node
// filters by that key, so a page is the top `limit` of the union of each node's top `limit`: no
// gaps or repeats across nodes. A row written later with an older timestamp than a cursor already
// passed is not seen by that walk (the seq cursor of embedded mode has no such case).
//
// A peer that does not answer within the timeout (or answers an error) is skipped and the
// answer says `partial: true`; it is never a 500.
import { t } from 'elysia';
import { decodeCursor, encodeCursor } from '../api/pagination.ts';
import { PageMeta } from '../api/schemas.ts';
import type { Cluster } from './index.ts';
import { v1Trace } from '../api/trace-views.ts';
import type { TraceFilter, TraceService } from '../services/traces.ts';

type V1View = ReturnType<typeof v1Trace>;

/** = FORWARDED_HEADER of ./index.ts, not imported from there: that module loads ioredis, which embedded mode never loads. */
const FORWARDED_HEADER = 'x-switchboard-forwarded-by';

export const GATHER_TIMEOUT_MS = 2000;

/** PageMeta plus the cluster's `partial` flag (page meta of gathered lists). */
export const GatheredPageMeta = t.Object({
  ...PageMeta.properties,
  partial: t.Optional(t.Boolean({ description: 'Cluster mode: true when a node did not answer in time and its rows are missing' })),
});

export interface TimeKey {
  at: string;
  id: string;
}

/** The composite cursor of cluster mode: {at, id}. */
export function decodeTimeCursor(c: string | undefined): TimeKey | undefined {
  return decodeCursor<{ at: string; id: string }>(c, (v) => typeof v.at === 'string' && typeof v.id === 'string');
}

/** True when the request came from a peer (it must be answered from local rows only). */
export function isForwarded(request: Request): boolean {
  return request.headers.has(FORWARDED_HEADER);
}

/**
 * Asks every live peer the same GET (path and query; `search` replaces the query when given) with
 * the caller's credentials. Returns the JSON bodies of the 200 answers and whether any peer was
 * missed (timeout, error status, unreachable, or the peer list itself unavailable).
 */
export async function askPeers(cluster: Cluster, request: Request, search?: URLSearchParams, timeoutMs = GATHER_TIMEOUT_MS): Promise<{ bodies: unknown[]; partial: boolean }> {
  let peers: Array<{ id: string; url: string }>;
  try {
    peers = await cluster.peers();
  } catch {
    return { bodies: [], partial: true };
  }
  if (!peers.length) return { bodies: [], partial: false };
  const u = new URL(request.url);
  const qs = search ? `?${search}` : u.search;
  const headers: Record<string, string> = { ...cluster.peerHeaders('GET', u.pathname + qs), accept: 'application/json' };
  for (const h of ['x-api-key', 'authorization']) {
    const v = request.headers.get(h);
    if (v) headers[h] = v;
  }
  const results = await Promise.allSettled(
    peers.map(async (p) => {
      const res = await fetch(p.url + u.pathname + qs, { headers, signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) {
        await res.arrayBuffer().catch(() => undefined);
        throw new Error(`peer ${p.id} answered ${res.status}`);
      }
      return (await res.json()) as unknown;
    }),
  );
  const bodies: unknown[] = [];
  let partial = false;
  for (const r of results) {
    if (r.status === 'fulfilled') bodies.push(r.value);
    else partial = true;
  }
  return { bodies, partial };
}

/** Newest first by (at, id); duplicates by id (a row a shard's previous owner also holds) kept once. */
export function mergeNewestFirst<T>(lists: T[][], keyOf: (item: T) => TimeKey): T[] {
  const seen = new Set<string>();
  const all: T[] = [];
  for (const list of lists) {
    for (const item of list) {
      const id = keyOf(item).id;
      if (seen.has(id)) continue;
      seen.add(id);
      all.push(item);
    }
  }
  return all.sort((x, y) => {
    const a = keyOf(x);
    const b = keyOf(y);
    if (a.at !== b.at) return a.at < b.at ? 1 : -1;
    return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
  });
}

interface PageBody<T> {
  items: T[];
  meta: { hasMore: boolean };
}

function isPageBody<T>(b: unknown): b is PageBody<T> {
  return !!b && typeof b === 'object' && Array.isArray((b as PageBody<T>).items) && typeof (b as PageBody<T>).meta?.hasMore === 'boolean';
}

/**
 * One cluster-wide cursor page: `local` is this node's page (its top limit+1 rows older than the
 * cursor, as views); peers answer the same request. Not forwarded → merged with the peers' pages.
 */
export async function gatherPage<T>(
  cluster: Cluster,
  request: Request,
  limit: number,
  local: T[],
  keyOf: (item: T) => TimeKey,
): Promise<{ items: T[]; meta: { cursor: string | null; hasMore: boolean; partial?: boolean } }> {
  const lists: T[][] = [local];
  let othersHaveMore = false;
  let partial = false;
  if (!isForwarded(request)) {
    const asked = await askPeers(cluster, request);
    partial = asked.partial;
    for (const b of asked.bodies) {
      if (!isPageBody<T>(b)) {
        partial = true;
        continue;
      }
      lists.push(b.items);
      othersHaveMore ||= b.meta.hasMore;
    }
  }
  const merged = mergeNewestFirst(lists, keyOf);
  const items = merged.slice(0, limit);
  // A peer that had more than it sent has rows older than its last one: more pages follow.
  const hasMore = merged.length > limit || (othersHaveMore && items.length > 0);
  const meta: { cursor: string | null; hasMore: boolean; partial?: boolean } = {
    cursor: hasMore ? encodeCursor({ ...keyOf(items[items.length - 1]) }) : null,
    hasMore,
  };
  if (partial) meta.partial = true;
  return { items, meta };
}

/** v1 offset paging across nodes can fetch at most this many rows per node (the v1 `limit` maximum). */
export const V1_GATHER_MAX = 500;

/**
 * v1 traces list (offset paging) in cluster mode. Forwarded: this node's rows, newest first by
 * (created_at, trace_id), with its own total. Otherwise every node is asked for its first
 * offset+limit rows (offset 0), the answers merged and [offset, offset+limit) returned; total is
 * the sum of the nodes' totals. Approximation (documented): offset+limit is capped at 500 rows per
 * node, so pages past the 500th newest row come back short.
 */
export async function gatherOffsetPage(
  cluster: Cluster,
  request: Request,
  filter: Omit<TraceFilter, 'limit' | 'offset'>,
  limit: number,
  offset: number,
  traces: Pick<TraceService, 'list' | 'count'>,
): Promise<{ total: number; traces: V1View[]; partial?: boolean }> {
  if (isForwarded(request)) {
    return { total: traces.count(filter), traces: traces.list({ ...filter, byReceived: true, limit, offset }).map(v1Trace) };
  }
  const window = Math.min(offset + limit, V1_GATHER_MAX);
  const local = traces.list({ ...filter, byReceived: true, limit: window, offset: 0 }).map(v1Trace);
  let total = traces.count(filter);
  const search = new URL(request.url).searchParams;
  search.set('limit', String(window));
  search.set('offset', '0');
  const asked = await askPeers(cluster, request, search);
  let partial = asked.partial;
  const lists: V1View[][] = [local];
  for (const b of asked.bodies) {
    const body = b as { total?: unknown; traces?: unknown };
    if (typeof body?.total !== 'number' || !Array.isArray(body.traces)) {
      partial = true;
      continue;
    }
    total += body.total;
    lists.push(body.traces as V1View[]);
  }
  const merged = mergeNewestFirst(lists, (v) => ({ at: v.created_at, id: v.trace_id }));
  return { total, traces: merged.slice(offset, offset + limit), ...(partial ? { partial: true } : {}) };
}
