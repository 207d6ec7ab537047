// Gathered routes: a route answers from its own node's rows, and declares which of its reads are
// gathered across the cluster by wrapping them here. In embedded mode, and on a node answering a
// peer's forwarded request, the wrapper is the local read itself; in cluster mode the node the
// caller asked also asks every live peer the same request and merges the answers (./gather.ts).
// The local read and a peer's answer have the same shape and the same cursor, so a gathered page
// is a merge of pages. Figures (the console overview's) are gathered raw: each peer sends its own
// figures with its answer, and the route computes its answer once from all of them.
import { DomainError, NotFound } from '../../core/errors.ts';
import type { TimeKey } from '../../services/pagination.ts';
import type { LocalDeadLetter } from '../handoff/replay.ts';
import {
  askHolders,
  callPeers,
  dropOlderCopies,
  type GatheredMeta,
  gatherOffsetPage,
  isForwarded,
  isPageBody,
  mergePages,
  notHeld,
  type OffsetPage,
  type PageBody,
} from './gather.ts';
import type { PeerDirectory } from './protocol.ts';

/** What gathered routes need of a running cluster. */
export interface GatheringCluster extends PeerDirectory {
  /** This node's id (gathered figures name the nodes they come from). */
  readonly node: string;
  /** The first peer's 200 answer to the same GET (null when none has it). */
  fromPeers(request: Request): Promise<unknown | null>;
  /** A dead letter this node holds, handed to its instance's shard owner (src/cluster/handoff/replay.ts). */
  replayInboxDeadLetter(d: LocalDeadLetter): Promise<{ traceId: string; status: 'pending' }>;
}

/** A page of a list as one node answers it. */
export type LocalPage<T> = PageBody<T> & { meta: { cursor: string | null; hasMore: boolean } };
/** The fields of a page besides items and meta (a timeline's channels, a search's total). */
type Extra<P> = Omit<P, 'items' | 'meta'>;
type ItemOf<P> = P extends { items: Array<infer T> } ? T : never;

export interface GatheredList<T, X> {
  /** The list's order: newest first by (time, id). */
  key: (item: T) => TimeKey;
  /**
   * Rows one id may have on several nodes at different times (a shard moved): on a page past the
   * first, the page's ids are read again everywhere — here with `copies(ids)`, at the peers with the
   * request's query and `?ids=` — and an item with a newer copy (listed earlier) is left out.
   */
  copies?: (ids: string[]) => T[];
  /** Peers are asked with this JSON body (same method and path) instead of the request's query. */
  peerBody?: unknown;
  /** Fields of the answer besides items and meta: whether a peer's answer has them, and their merge. */
  extra?: { valid: (body: object) => boolean; merge: (own: X | null, peers: X[]) => X };
  /**
   * The list of one thing (a person's timeline): a node that does not know it answers 404 (the
   * local read throws a NOT_FOUND error). None knows it → 404, or 503 when a node did not answer.
   */
  of?: string;
  /**
   * A check made once, where the request came in (not by the peers answering it): it throws to
   * refuse, and its `partial` (a node did not answer) marks the page.
   */
  entry?: () => Promise<{ partial: boolean }>;
}

/** Which nodes gathered figures come from (null in embedded mode). */
export interface FigureNodes {
  /** Nodes whose figures are included, this one first. */
  nodes: string[];
  /** Live nodes that did not answer (and why a node may be missing: untrusted entries, no node list). */
  missing: string[];
  /** True when some node's figures are missing. */
  partial: boolean;
}

export interface GatheredFigures<F, D> {
  /** Set on the request's query for the peers (e.g. the window's end, so every node reads the same window). */
  peerQuery?: Record<string, string>;
  /** Whether a peer's figures add up with this node's (same window and buckets; else another version answered). */
  fits: (peer: F) => boolean;
  /** The answer from the figures of the nodes that answered (this node's first) and which nodes they are. */
  answer: (figures: F[], nodes: FigureNodes | null) => D;
}

/** The gathered reads of routes; `cluster()` is the running cluster, null in embedded mode. */
export function clusterReads(cluster: () => GatheringCluster | null) {
  /** The cluster to ask: none in embedded mode, nor for a request a peer forwarded (answered from local rows only). */
  const asking = (request: Request): GatheringCluster | null => {
    const c = cluster();
    return c && !isForwarded(request) ? c : null;
  };

  return {
    /**
     * A newest-first list: this node's page (`local`), in cluster mode merged with every peer's page
     * of the same request. meta.partial when a peer did not answer.
     */
    async list<P extends LocalPage<unknown>>(
      request: Request,
      limit: number,
      local: () => P | Promise<P>,
      spec: GatheredList<ItemOf<P>, Extra<P>>,
    ): Promise<Extra<P> & { items: ItemOf<P>[]; meta: GatheredMeta }> {
      type T = ItemOf<P>;
      const c = asking(request);
      if (!c) {
        if (spec.entry && !isForwarded(request)) await spec.entry();
        // This node's page is the answer as it is (a page of one node is a gathered page without `partial`).
        return (await local()) as unknown as Extra<P> & { items: T[]; meta: GatheredMeta };
      }
      const own = await Promise.resolve()
        .then(local)
        .catch((err: unknown) => {
          if (spec.of && err instanceof DomainError && err.code === 'NOT_FOUND') return null;
          throw err;
        });
      const [entry, answered] = await Promise.all([
        spec.entry?.(),
        callPeers(
          c,
          request,
          spec.peerBody === undefined ? { method: 'GET' } : { method: request.method, body: spec.peerBody },
        ),
      ]);
      let partial = answered.missed || entry?.partial === true;
      const peers: P[] = [];
      for (const a of answered.answers) {
        const b = a.body;
        if (a.status === 200 && isPageBody<T>(b) && (!spec.extra || spec.extra.valid(b))) peers.push(b as P);
        else if (!(spec.of && a.status === 404)) partial = true;
      }
      if (spec.of && !own && peers.length === 0) throw notHeld(spec.of, partial);
      const pages = (own ? [own, ...peers] : peers) as unknown as PageBody<T>[];
      const merged = mergePages(limit, pages, spec.key);
      let items = merged.items;
      if (spec.copies && items.length) {
        // The cursor keeps moving by the rows scanned, the ones left out included.
        const copies = await copiesAcross(
          c,
          request,
          spec.copies,
          items.map((i) => spec.key(i).id),
        );
        partial ||= copies.partial;
        items = dropOlderCopies(items, copies.items, spec.key);
      }
      const meta: GatheredMeta = { cursor: merged.cursor, hasMore: merged.hasMore };
      if (partial) meta.partial = true;
      const extra = spec.extra?.merge(own ? extraOf(own) : null, peers.map(extraOf)) ?? ({} as Extra<P>);
      return { ...extra, items, meta };
    },

    /**
     * A v1 offset list (traces): this node's page, in cluster mode merged from every node's first
     * offset+limit rows (capped, see gatherOffsetPage).
     */
    offsetList<T>(
      request: Request,
      limit: number,
      offset: number,
      local: (limit: number, offset: number) => OffsetPage<T>,
      key: (item: T) => TimeKey,
    ): OffsetPage<T> | Promise<OffsetPage<T> & { partial?: boolean }> {
      const c = asking(request);
      return c ? gatherOffsetPage(c, request, limit, offset, local, key) : local(limit, offset);
    },

    /**
     * Figures every node computes from its own rows (the overview's counts and latency samples): in
     * cluster mode the node asked adds every peer's raw figures to its own (`local`) and answers
     * from all of them, naming the nodes they come from and the live ones that did not answer. A
     * peer asked for its part answers its own figures as `figures` (with `node`), next to the
     * answer from its figures alone. Embedded: the answer from `local`, `nodes` null.
     */
    async figures<F, D>(
      request: Request,
      local: F,
      spec: GatheredFigures<F, D>,
    ): Promise<{ data: D; figures?: F; node?: string }> {
      const c = cluster();
      if (!c) return { data: spec.answer([local], null) };
      // A peer gathering the figures: this node's own, for the same window.
      if (isForwarded(request)) return { data: spec.answer([local], null), figures: local, node: c.node };
      let expected: string[] = [];
      let untrusted = 0;
      let listed = true;
      try {
        const list = await c.peerList();
        expected = list.peers.map((x) => x.id);
        untrusted = list.untrusted;
      } catch {
        listed = false;
      }
      const search = new URL(request.url).searchParams;
      for (const [k, v] of Object.entries(spec.peerQuery ?? {})) search.set(k, v);
      const { answers, missed } = await callPeers(c, request, { method: 'GET', search });
      const figures: F[] = [local];
      const answered: string[] = [];
      for (const a of answers) {
        const b = a.body as { figures?: F; node?: string } | null;
        if (a.status !== 200 || !b?.figures || typeof b.node !== 'string') continue;
        if (!spec.fits(b.figures)) continue;
        figures.push(b.figures);
        answered.push(b.node);
      }
      const missing = expected.filter((id) => !answered.includes(id));
      if (untrusted > 0) missing.push(`${untrusted} node(s) without a valid signature`);
      if (!listed) missing.push('the node list (Redis) did not answer');
      return {
        data: spec.answer(figures, { nodes: [c.node, ...answered], missing, partial: missing.length > 0 || missed }),
      };
    },

    /**
     * One row by id, held by one node (a trace lives on the node that owned its instance's shard):
     * `local` is null when this node does not hold it; then the first peer that has it answers (its
     * answer is passed back as it is, so `local` returns the same envelope).
     */
    async byId<R>(request: Request, what: string, local: () => R | null): Promise<R> {
      const here = local();
      if (here !== null) return here;
      const remote = await asking(request)?.fromPeers(request);
      if (remote) return remote as R;
      throw new NotFound(`${what} not found`);
    },

    /**
     * One row by id that several nodes may hold a copy of (a conversation whose shard moved): the
     * copy with the latest `at` among this node's (`local`, null when none) and the peers'.
     */
    async newestCopy<V>(request: Request, what: string, local: V | null, at: (v: V) => string): Promise<V> {
      const c = asking(request);
      if (!c) {
        if (local === null) throw new NotFound(`${what} not found`);
        return local;
      }
      const { answers, missed } = await callPeers(c, request);
      const copies: V[] = local === null ? [] : [local];
      for (const a of answers) if (a.status === 200) copies.push((a.body as { data: V }).data);
      const newest = copies.sort((x, y) => (at(x) < at(y) ? 1 : at(x) > at(y) ? -1 : 0))[0];
      if (newest) return newest;
      throw notHeld(what, missed || answers.some((a) => a.status !== 404));
    },

    /**
     * A by-id change of a row held by the node that wrote it (a dead letter): `act` on this node's
     * row, or, when it is not here, the same request at the node holding it, whose answer (status
     * and body) is passed back as it is.
     */
    async atHolder<D, R>(
      request: Request,
      set: { status?: number | string },
      what: string,
      held: D | null,
      act: (row: D) => R | Promise<R>,
    ): Promise<R> {
      if (held !== null) return act(held);
      const c = asking(request);
      if (!c) throw new NotFound(`${what} not found`);
      const answer = await askHolders(c, request, what);
      set.status = answer.status;
      return answer.body as R; // the holder's answer as it is (its 409 included)
    },

    /**
     * Replays a dead letter this node holds. Cluster: handed to the instance's shard owner through
     * the shard's stream, as a webhook would be — also when this node is the owner: only a stream
     * entry survives the shard moving while the replay runs (a row reopened in this node's SQLite
     * alone would be closed as "handled elsewhere" by the next owner's catch-up). A new message (new
     * trace), queued after what the owner already has, the agent asked again. Embedded: `here`.
     */
    async replayDeadLetter<R>(d: LocalDeadLetter, here: () => R): Promise<R | { traceId: string; status: 'pending' }> {
      const c = cluster();
      return c ? c.replayInboxDeadLetter(d) : here();
    },
  };
}

export type ClusterReads = ReturnType<typeof clusterReads>;

/** The fields of a page besides items and meta. */
function extraOf<P extends LocalPage<unknown>>(page: P): Extra<P> {
  const { items: _items, meta: _meta, ...rest } = page;
  return rest;
}

/** Every node's copies of these ids: `local(ids)` here, and the peers asked the same list with `?ids=` (cursor dropped). */
async function copiesAcross<T>(
  cluster: PeerDirectory,
  request: Request,
  local: (ids: string[]) => T[],
  ids: string[],
): Promise<{ items: T[]; partial: boolean }> {
  const search = new URL(request.url).searchParams;
  search.delete('cursor');
  search.set('ids', ids.join(','));
  search.set('limit', String(ids.length));
  const { answers, missed } = await callPeers(cluster, request, { method: 'GET', search });
  const items = local(ids);
  let partial = missed;
  for (const a of answers) {
    if (a.status === 200 && isPageBody<T>(a.body)) items.push(...a.body.items);
    else partial = true;
  }
  return { items, partial };
}
