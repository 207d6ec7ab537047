// Cluster-wide reads, the machinery: asking every live peer the same request and merging the
// answers. Routes do not call this directly: they declare a read gathered (./gathered.ts) and
// answer from their own node's rows; each node keeps its own SQLite, so a list is gathered: the
// node the caller asked answers from its own rows and asks every live peer the same query
// (caller's own key, FORWARDED_HEADER so the peer answers from its rows only), then merges.
//
// Order and cursor: newest first by (time, id) — traces by receivedAt, events by createdAt,
// conversations by lastActivityAt, dead letters by createdAt — the same order and cursor as one
// node's list (src/services/pagination.ts): {at, id}, "strictly older than this (time, id)". Every
// node filters by that key, so a page is the top `limit` of the union of each node's top `limit`:
// no gaps or repeats across nodes. Event search uses the same order: FTS5 rank (bm25) depends on
// each node's own corpus statistics, so ranks from two nodes are not comparable and could not
// make one cursor; (createdAt, id) is a total order valid on every node.
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
import { type DomainError, NotFound, Unavailable } from '../../core/errors.ts';
import { encodeCursor, type TimeKey } from '../../services/pagination.ts';
import { FORWARDED_HEADER, type PeerDirectory, peerRequestParts } from './protocol.ts';

export const GATHER_TIMEOUT_MS = 2000;

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
 * Merges pages of the same list (this node's and the peers', each its top `limit` items newer
 * than the cursor and whether it has more) into one page.
 */
export function mergePages<T>(
  limit: number,
  pages: PageBody<T>[],
  keyOf: (item: T) => TimeKey,
): { items: T[]; hasMore: boolean; cursor: string | null } {
  const merged = mergeNewestFirst(
    pages.map((p) => p.items),
    keyOf,
  );
  const items = merged.slice(0, limit);
  // A node that had more than it sent has rows older than its last one: more pages follow.
  const hasMore = merged.length > limit || (pages.some((p) => p.meta.hasMore) && items.length > 0);
  return { items, hasMore, cursor: hasMore ? encodeCursor({ ...keyOf(items[items.length - 1]) }) : null };
}

/** Leaves out the items of a page whose id has a newer copy among `copies` (it was listed on an earlier page). */
export function dropOlderCopies<T>(items: T[], copies: T[], keyOf: (item: T) => TimeKey): T[] {
  const newest = new Map<string, TimeKey>();
  for (const c of copies) {
    const k = keyOf(c);
    const seen = newest.get(k.id);
    if (!seen || newer(k, seen)) newest.set(k.id, k);
  }
  return items.filter((i) => {
    const n = newest.get(keyOf(i).id);
    return !n || !newer(n, keyOf(i));
  });
}

/** v1 offset paging across nodes can fetch at most this many rows per node (the v1 `limit` maximum). */
export const V1_GATHER_MAX = 500;

/** A v1 offset page: a node's rows in the list order and its total. */
export interface OffsetPage<T> {
  total: number;
  traces: T[];
}

/**
 * v1 traces list (offset paging) in cluster mode: every node is asked for its first offset+limit
 * rows (offset 0), the answers merged and [offset, offset+limit) returned; total is the sum of the
 * nodes' totals. `local(limit, offset)` is this node's page. Approximation (documented):
 * offset+limit is capped at 500 rows per node, so pages past the 500th newest row come back short.
 */
export async function gatherOffsetPage<T>(
  cluster: PeerDirectory,
  request: Request,
  limit: number,
  offset: number,
  local: (limit: number, offset: number) => OffsetPage<T>,
  keyOf: (item: T) => TimeKey,
): Promise<OffsetPage<T> & { partial?: boolean }> {
  const window = Math.min(offset + limit, V1_GATHER_MAX);
  const own = local(window, 0);
  let total = own.total;
  const search = new URL(request.url).searchParams;
  search.set('limit', String(window));
  search.set('offset', '0');
  const asked = await askPeers(cluster, request, search);
  let partial = asked.partial;
  const lists: T[][] = [own.traces];
  for (const b of asked.bodies) {
    const body = b as { total?: unknown; traces?: unknown };
    if (typeof body?.total !== 'number' || !Array.isArray(body.traces)) {
      partial = true;
      continue;
    }
    total += body.total;
    lists.push(body.traces as T[]);
  }
  const merged = mergeNewestFirst(lists, keyOf);
  return { total, traces: merged.slice(offset, offset + limit), ...(partial ? { partial: true } : {}) };
}
