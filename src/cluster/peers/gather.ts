// Cluster-wide reads. Each node keeps its own SQLite, so a list is gathered: the node the caller
// asked answers from its own rows and asks every live peer the same query (caller's own key,
// FORWARDED_HEADER so the peer answers from its rows only), then merges. Gathered: traces (v1, v2),
// events (list and search), conversations, dead letters.
//
// Order and cursor: newest first by (time, id) — traces by receivedAt, events by createdAt,
// conversations by lastActivityAt, dead letters by createdAt — and the cursor is base64url JSON
// {at, id} meaning "strictly older than this (time, id)". Every node filters by that key, so a
// page is the top `limit` of the union of each node's top `limit`: no gaps or repeats across
// nodes. A row written later with an older timestamp than a cursor already passed is not seen by
// that walk (the seq cursor of embedded mode has no such case). Event search uses the same order:
// FTS5 rank (bm25) depends on each node's own corpus statistics, so ranks from two nodes are not
// comparable and could not make one cursor; (createdAt, id) is a total order valid on every node.
//
// Rows that exist on several nodes under one id with different times (a conversation whose
// shard moved: each owner keeps its copy, with its own last activity) are listed once, at their
// newest time: within a page the newest copy wins, and on later pages (`copiesOf`) an older copy
// whose id has a newer copy on some node — listed on an earlier page — is left out. Such a page
// may hold fewer than `limit` items while meta.hasMore is still true.
//
// By-id requests (get, replay, delete) for a row this node does not hold go to every peer
// (`askHolders`): the node holding it answers, the others say 404.
//
// A peer that does not answer within the timeout (or answers an error) is skipped and the
// answer says `partial: true`; it is never a 500.
import { t } from 'elysia';
import { type DomainError, NotFound, Unavailable } from '../../core/errors.ts';
import { decodeCursor, encodeCursor, PageMeta } from '../../services/pagination.ts';
import { v1Trace } from '../../services/trace-views.ts';
import type { TraceFilter, TraceService } from '../../services/traces.ts';
import { FORWARDED_HEADER, type PeerDirectory, peerRequestParts } from './protocol.ts';

type V1View = ReturnType<typeof v1Trace>;

export const GATHER_TIMEOUT_MS = 2000;

/** PageMeta plus the cluster's `partial` flag (page meta of gathered lists). */
export const GatheredPageMeta = t.Object({
  ...PageMeta.properties,
  partial: t.Optional(
    t.Boolean({ description: 'Cluster mode: true when a node did not answer in time and its rows are missing' }),
  ),
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

/** One peer's answer: its HTTP status and JSON body. */
export interface PeerAnswer {
  status: number;
  body: unknown;
}

/**
 * Sends every live peer the same request (path, and the request's method unless `method` is given;
 * `search` replaces the query; `body` is sent as JSON) with the caller's credentials and the
 * signed peer headers. Returns the answers and whether some peer did not answer at all (timeout,
 * unreachable, or the peer list unavailable).
 */
export async function callPeers(
  cluster: PeerDirectory,
  request: Request,
  opts: { method?: string; search?: URLSearchParams; body?: unknown; timeoutMs?: number } = {},
): Promise<{ answers: PeerAnswer[]; missed: boolean }> {
  let peers: Array<{ id: string; url: string }>;
  let untrusted: number;
  try {
    ({ peers, untrusted } = await cluster.peerList());
  } catch {
    return { answers: [], missed: true };
  }
  // A live node entry without a valid MAC is not asked: if it is a real node, its rows are missing.
  if (!peers.length) return { answers: [], missed: untrusted > 0 };
  const { path, credentials } = peerRequestParts(request, opts.search);
  const method = opts.method ?? request.method;
  const headers: Record<string, string> = {
    ...cluster.peerHeaders(method, path),
    accept: 'application/json',
    ...credentials,
  };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  const results = await Promise.allSettled(
    peers.map(async (p): Promise<PeerAnswer> => {
      const res = await fetch(p.url + path, {
        method,
        headers,
        body,
        signal: AbortSignal.timeout(opts.timeoutMs ?? GATHER_TIMEOUT_MS),
      });
      const text = await res.text();
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON: kept as null */
      }
      return { status: res.status, body: parsed };
    }),
  );
  const answers: PeerAnswer[] = [];
  let missed = untrusted > 0;
  for (const r of results) {
    if (r.status === 'fulfilled') answers.push(r.value);
    else missed = true;
  }
  return { answers, missed };
}

/**
 * Asks every live peer the same GET (`search` replaces the query when given) — or, with `body`,
 * the same request with that JSON body — with the caller's credentials. Returns the JSON bodies of
 * the 200 answers and whether any peer was missed (timeout, error status, unreachable, or the peer
 * list itself unavailable).
 */
export async function askPeers(
  cluster: PeerDirectory,
  request: Request,
  search?: URLSearchParams,
  timeoutMs = GATHER_TIMEOUT_MS,
  body?: unknown,
): Promise<{ bodies: unknown[]; partial: boolean }> {
  const { answers, missed } = await callPeers(cluster, request, {
    method: body === undefined ? 'GET' : request.method,
    search,
    body,
    timeoutMs,
  });
  const ok = answers.filter((a) => a.status === 200);
  return { bodies: ok.map((a) => a.body), partial: missed || ok.length < answers.length };
}

/**
 * A by-id request for a row this node does not hold (dead letters: a row lives on the node that
 * wrote it). The same request goes to every peer; each answers from its own rows only. The
 * holder's answer (status and body) is to be passed back as it is; none → 404, or 503 when some
 * peer did not answer (the row may be on it).
 */
export async function askHolders(
  cluster: PeerDirectory,
  request: Request,
  what: string,
  timeoutMs = GATHER_TIMEOUT_MS,
): Promise<PeerAnswer> {
  const { answers, missed } = await callPeers(cluster, request, { timeoutMs });
  // The holder acted (2xx) or refused for the row's state (409); other statuses say nothing about the row.
  const held = answers.find((a) => (a.status >= 200 && a.status < 300) || a.status === 409);
  if (held) return held;
  throw notHeld(what, missed || answers.some((a) => a.status !== 404));
}

/** No node that answered holds the row: 503 when some node did not answer (it may hold it), else 404. */
export function notHeld(what: string, someNodeSilent: boolean): DomainError {
  if (someNodeSilent)
    return new Unavailable(
      `${what} not found on the nodes that answered; a node did not answer and may hold it, retry later`,
      null,
      2,
    );
  return new NotFound(`${what} not found`);
}

function newer(a: TimeKey, b: TimeKey): boolean {
  return a.at !== b.at ? a.at > b.at : a.id > b.id;
}

/** Newest first by (at, id); an id on several nodes (a shard's previous owner also holds it) kept once, its newest copy. */
export function mergeNewestFirst<T>(lists: T[][], keyOf: (item: T) => TimeKey): T[] {
  const byId = new Map<string, T>();
  for (const list of lists) {
    for (const item of list) {
      const prev = byId.get(keyOf(item).id);
      if (!prev || newer(keyOf(item), keyOf(prev))) byId.set(keyOf(item).id, item);
    }
  }
  return [...byId.values()].sort((x, y) => (newer(keyOf(x), keyOf(y)) ? -1 : newer(keyOf(y), keyOf(x)) ? 1 : 0));
}

export interface PageBody<T> {
  items: T[];
  meta: { hasMore: boolean };
}

export function isPageBody<T>(b: unknown): b is PageBody<T> {
  return (
    !!b &&
    typeof b === 'object' &&
    Array.isArray((b as PageBody<T>).items) &&
    typeof (b as PageBody<T>).meta?.hasMore === 'boolean'
  );
}

export interface GatheredMeta {
  cursor: string | null;
  hasMore: boolean;
  partial?: boolean;
}

/**
 * Merges this node's page (its top limit+1 rows older than the cursor) with the peers' pages (each
 * its top `limit` and hasMore) into one page.
 */
export function mergePages<T>(
  limit: number,
  local: T[],
  peers: PageBody<T>[],
  keyOf: (item: T) => TimeKey,
): { items: T[]; hasMore: boolean; cursor: string | null } {
  const merged = mergeNewestFirst([local, ...peers.map((p) => p.items)], keyOf);
  const items = merged.slice(0, limit);
  // A peer that had more than it sent has rows older than its last one: more pages follow.
  const hasMore = merged.length > limit || (peers.some((p) => p.meta.hasMore) && items.length > 0);
  return { items, hasMore, cursor: hasMore ? encodeCursor({ ...keyOf(items[items.length - 1]) }) : null };
}

export interface GatherOptions<T> {
  /** Peers are asked with this JSON body (same method and path) instead of the request's query. */
  body?: unknown;
  /**
   * For rows one id may have on several nodes at different times: every node's copies of these ids
   * (any time); a copy newer than the page's one was listed on an earlier page. Pass it past the
   * first page only (on the first, every newest copy is in the page).
   */
  copiesOf?: (ids: string[]) => Promise<{ items: T[]; partial: boolean }>;
}

/**
 * `copiesOf` for gatherPage: this node's copies of the ids (`local`) and every peer's, asked on the
 * same path with the query `search(ids)` (an ids filter).
 */
export function copiesFromPeers<T>(
  cluster: PeerDirectory,
  request: Request,
  search: (ids: string[]) => URLSearchParams,
  local: (ids: string[]) => T[],
) {
  return async (ids: string[]): Promise<{ items: T[]; partial: boolean }> => {
    const asked = await askPeers(cluster, request, search(ids));
    const items = local(ids);
    let partial = asked.partial;
    for (const b of asked.bodies) {
      if (isPageBody<T>(b)) items.push(...b.items);
      else partial = true;
    }
    return { items, partial };
  };
}

/**
 * One cluster-wide cursor page: `local` is this node's page (its top limit+1 rows older than the
 * cursor, as views); peers answer the same request. Not forwarded → merged with the peers' pages.
 */
export async function gatherPage<T>(
  cluster: PeerDirectory,
  request: Request,
  limit: number,
  local: T[],
  keyOf: (item: T) => TimeKey,
  opts: GatherOptions<T> = {},
): Promise<{ items: T[]; meta: GatheredMeta }> {
  const peers: PageBody<T>[] = [];
  let partial = false;
  const forwarded = isForwarded(request);
  if (!forwarded) {
    const asked = await askPeers(cluster, request, undefined, GATHER_TIMEOUT_MS, opts.body);
    partial = asked.partial;
    for (const b of asked.bodies) {
      if (isPageBody<T>(b)) peers.push(b);
      else partial = true;
    }
  }
  const page = mergePages(limit, local, peers, keyOf);
  let items = page.items;
  if (!forwarded && opts.copiesOf && items.length) {
    // The cursor keeps moving by the rows scanned, the ones left out included.
    const copies = await opts.copiesOf(items.map((i) => keyOf(i).id));
    partial ||= copies.partial;
    const newest = new Map<string, TimeKey>();
    for (const c of copies.items) {
      const k = keyOf(c);
      const seen = newest.get(k.id);
      if (!seen || newer(k, seen)) newest.set(k.id, k);
    }
    items = items.filter((i) => {
      const n = newest.get(keyOf(i).id);
      return !n || !newer(n, keyOf(i));
    });
  }
  const meta: GatheredMeta = { cursor: page.cursor, hasMore: page.hasMore };
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
  cluster: PeerDirectory,
  request: Request,
  filter: Omit<TraceFilter, 'limit' | 'offset'>,
  limit: number,
  offset: number,
  traces: Pick<TraceService, 'list' | 'count'>,
): Promise<{ total: number; traces: V1View[]; partial?: boolean }> {
  if (isForwarded(request)) {
    return {
      total: traces.count(filter),
      traces: traces.list({ ...filter, byReceived: true, limit, offset }).map(v1Trace),
    };
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
