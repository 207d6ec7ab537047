// Persons across the cluster. The persons routes answer from this node's rows and call
// `gatheredPersons` for what differs by mode: reads gathered from every node, and link/unlink
// decided through the cluster's person log (src/cluster/persons/person-log.ts), which each node
// applies before it answers a persons read. In embedded mode each is the local operation.
//
// A person has rows on every node that handled its messages (each node
// keeps its own SQLite), under the same id on all of them (ids are derived from the platform
// identity, src/services/persons.ts), each row with the identities that node saw. A read asks every
// live peer the persons list (askPeers, ./gather.ts: caller's key, forwarded so the peer answers
// from its own rows) and merges rows by id: one person, the union of its identities (an identity
// held by several nodes: message counts added, first/last seen widened).
//
// Lists are ordered by person id and the cursor {id} means "after this id" on every node, so a page
// is the first `limit` ids of the union of each node's first limit+1: no gaps or repeats, and every
// node holding a person of the page returned it. Filters that only some rows of a person match
// (search text, identity id) would leave out the other nodes' rows: then the page's persons are
// asked again by id. A peer that does not answer is skipped and the answer says `partial`.
import type { Logger } from 'pino';
import { Conflict, NotFound, Unavailable } from '../../core/errors.ts';
import { isoNow, newId } from '../../services/ids.ts';
import { encodeCursor, page } from '../../services/pagination.ts';
import type { IdentityView, PersonOp, PersonService, PersonView } from '../../services/persons.ts';
import type { PersonLog } from '../persons/person-log.ts';
import { askPeers, isForwarded } from './gather.ts';
import type { PeerDirectory } from './protocol.ts';

const LIST_PATH = '/api/v2/persons';

interface PersonPage {
  items: PersonView[];
  meta: { hasMore: boolean };
}

function isPersonPage(b: unknown): b is PersonPage {
  return (
    !!b &&
    typeof b === 'object' &&
    Array.isArray((b as PersonPage).items) &&
    typeof (b as PersonPage).meta?.hasMore === 'boolean'
  );
}

const min = (a: string, b: string) => (a < b ? a : b);
const max = (a: string, b: string) => (a > b ? a : b);

/** One identity as held by two nodes: each counted the messages it handled. */
function mergeIdentity(a: IdentityView, b: IdentityView): IdentityView {
  const newer = b.lastSeenAt > a.lastSeenAt ? b : a;
  return {
    ...a,
    aliases: [...new Set([...a.aliases, ...b.aliases])].sort(),
    displayName: newer.displayName ?? a.displayName ?? b.displayName,
    phone: a.phone ?? b.phone,
    messageCount: a.messageCount + b.messageCount,
    firstSeenAt: min(a.firstSeenAt, b.firstSeenAt),
    lastSeenAt: max(a.lastSeenAt, b.lastSeenAt),
    unlinkedReason: a.unlinkedReason ?? b.unlinkedReason,
  };
}

/** One person as held by two nodes. */
function mergePerson(a: PersonView, b: PersonView): PersonView {
  const older = b.createdAt < a.createdAt ? b : a;
  const byId = new Map(a.identities.map((i) => [i.id, i]));
  for (const i of b.identities) {
    const seen = byId.get(i.id);
    byId.set(i.id, seen ? mergeIdentity(seen, i) : i);
  }
  return {
    id: a.id,
    displayName: older.displayName ?? a.displayName ?? b.displayName,
    identities: [...byId.values()].sort((x, y) =>
      x.firstSeenAt !== y.firstSeenAt ? (x.firstSeenAt < y.firstSeenAt ? -1 : 1) : x.id < y.id ? -1 : 1,
    ),
    createdAt: min(a.createdAt, b.createdAt),
    updatedAt: max(a.updatedAt, b.updatedAt),
  };
}

/** The nodes' rows merged by person id, ordered by id. */
export function mergePersonLists(lists: PersonView[][]): PersonView[] {
  const byId = new Map<string, PersonView>();
  for (const list of lists) {
    for (const p of list) {
      const seen = byId.get(p.id);
      byId.set(p.id, seen ? mergePerson(seen, p) : p);
    }
  }
  return [...byId.values()].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
}

/** The persons list with these query parameters, asked with the caller's credentials (whatever route the caller used). */
function listRequest(request: Request, search: URLSearchParams): Request {
  const u = new URL(LIST_PATH, request.url);
  u.search = search.toString();
  // A browser's ?apiKey= stays with the request: callPeers sends it to the peers as the header.
  const key = new URL(request.url).searchParams.get('apiKey');
  if (key) u.searchParams.set('apiKey', key);
  return new Request(u, { headers: request.headers });
}

async function askPeerLists(
  cluster: PeerDirectory,
  request: Request,
  search: URLSearchParams,
): Promise<{ pages: PersonPage[]; partial: boolean }> {
  const asked = await askPeers(cluster, listRequest(request, search), search);
  const pages = asked.bodies.filter(isPersonPage);
  return { pages, partial: asked.partial || pages.length < asked.bodies.length };
}

/**
 * Persons by id across the cluster: `local` is this node's rows of them (already scoped to the
 * caller); every peer is asked for its rows (`?id=`), scoped the same way by its own key check.
 */
async function gatherPersonsById(
  cluster: PeerDirectory,
  request: Request,
  ids: string[],
  local: PersonView[],
): Promise<{ items: PersonView[]; partial: boolean }> {
  if (ids.length === 0) return { items: [], partial: false };
  const { pages, partial } = await askPeerLists(
    cluster,
    request,
    new URLSearchParams({ id: ids.join(','), limit: String(ids.length) }),
  );
  return { items: mergePersonLists([local, ...pages.map((p) => p.items)]), partial };
}

/**
 * One cluster-wide page of the persons list: `local` is this node's page (its first limit+1
 * persons after the cursor, scoped to the caller); peers answer the same query. `partialRows`:
 * the filter may match only some of a person's rows, so the page's persons are asked again by id
 * (`localById` gives this node's rows of them).
 */
async function gatherPersonPage(
  cluster: PeerDirectory,
  request: Request,
  limit: number,
  local: PersonView[],
  opts: { partialRows: boolean; localById: (ids: string[]) => PersonView[] },
): Promise<{ items: PersonView[]; meta: { cursor: string | null; hasMore: boolean; partial?: boolean } }> {
  const asked = await askPeerLists(cluster, request, new URL(request.url).searchParams);
  let partial = asked.partial;
  const merged = mergePersonLists([local, ...asked.pages.map((p) => p.items)]);
  let items = merged.slice(0, limit);
  // A peer that had more than it sent has persons after its last one: more pages follow.
  const hasMore = merged.length > limit || (asked.pages.some((p) => p.meta.hasMore) && items.length > 0);
  if (opts.partialRows && items.length) {
    const ids = items.map((p) => p.id);
    const full = await gatherPersonsById(cluster, request, ids, opts.localById(ids));
    partial ||= full.partial;
    const byId = new Map(full.items.map((p) => [p.id, p]));
    items = items.map((p) => byId.get(p.id) ?? p);
  }
  const meta: { cursor: string | null; hasMore: boolean; partial?: boolean } = {
    cursor: hasMore ? encodeCursor({ id: items[items.length - 1].id }) : null,
    hasMore,
  };
  if (partial) meta.partial = true;
  return { items, meta };
}

/** The persons holding these identities (at most 100), whole, from every node (link and unlink). */
async function gatherHolders(
  cluster: PeerDirectory,
  request: Request,
  identityIds: string[],
  local: PersonView[],
  localById: (ids: string[]) => PersonView[],
): Promise<{ holderOf: (identityId: string) => PersonView | null; partial: boolean }> {
  const list = listRequest(request, new URLSearchParams({ identityId: identityIds.join(','), limit: '100' }));
  const found = await gatherPersonPage(cluster, list, 100, local, { partialRows: true, localById });
  return {
    holderOf: (id) => found.items.find((p) => p.identities.some((i) => i.id === id)) ?? null,
    partial: found.meta.partial === true,
  };
}

/** What the persons routes need of a running cluster: whom to ask, and the shared link/unlink log. */
export interface PersonsCluster extends PeerDirectory {
  readonly personLog: PersonLog;
}

/** A page of the persons list, ordered by id (cursor {id}) in both modes. */
export interface PersonPageAnswer {
  items: PersonView[];
  meta: { cursor: string | null; hasMore: boolean; partial?: boolean };
}

/** Not on the nodes that answered: 404, or 503 when a silent node may hold it. */
function missing(what: string, partial: boolean, details: unknown = null) {
  return partial
    ? new Unavailable(
        `${what} not found on the nodes that answered; a node did not answer and may hold it, retry later`,
        details,
        2,
      )
    : new NotFound(`${what} not found`, details);
}

/**
 * The persons operations that differ by mode; `cluster()` is the running cluster, null in embedded
 * mode. `scope` is the caller's instance ids (null: every instance).
 */
export function gatheredPersons(cluster: () => PersonsCluster | null, persons: PersonService, log: Logger) {
  /** This node's rows of some persons, as the caller may see them. */
  const localById = (ids: string[], scope: string[] | null) =>
    persons.search({ ids, limit: ids.length, instanceIds: scope }).map((p) => persons.scoped(p, scope));
  /** Before a read: the link/unlink decisions of every node applied here. */
  const synced = async () => {
    await cluster()?.personLog.catchUp();
  };

  /** The person as the caller may see it (cluster mode: from every node). */
  const find = async (
    request: Request,
    id: string,
    scope: string[] | null,
  ): Promise<{ person: PersonView; partial: boolean }> => {
    await synced();
    const local = localById([id], scope);
    const c = cluster();
    const found = c ? await gatherPersonsById(c, request, [id], local) : { items: local, partial: false };
    const person = found.items.find((p) => p.id === id);
    if (!person) throw missing('Person', found.partial);
    return { person, partial: found.partial };
  };

  /** Link and unlink: the persons holding the identities, whole, from every node. */
  const holdersOf = async (c: PersonsCluster, identityIds: string[], request: Request) => {
    await synced();
    const local = persons.search({ identityIds, limit: 100, instanceIds: null });
    const found = await gatherHolders(c, request, identityIds, local, (ids) => localById(ids, null));
    const holder = (identityId: string, field: string): PersonView => {
      const p = found.holderOf(identityId);
      if (!p) throw missing(`Identity '${identityId}'`, found.partial, { field });
      return p;
    };
    return { holder, partial: found.partial };
  };

  /** Appends a link or unlink to the cluster's person log and applies it here. */
  const decide = async (c: PersonsCluster, op: PersonOp) => {
    try {
      await c.personLog.append(op);
    } catch (err) {
      log.warn({ err: String(err) }, 'persons: appending to the cluster person log failed');
      throw new Unavailable('The cluster person log (Redis) did not answer; retry later', null, 2);
    }
    await synced();
  };

  return {
    synced,
    find,

    /**
     * The persons list: `local` is this node's page (its first limit+1 persons after the cursor,
     * scoped to the caller), cut to a page here; in cluster mode merged with every peer's page.
     * `partialRows`: the filter may match only some of a person's rows (search text, identity id),
     * so the page's persons are asked again by id.
     */
    async list(
      request: Request,
      limit: number,
      local: PersonView[],
      opts: { partialRows: boolean; scope: string[] | null },
    ): Promise<PersonPageAnswer> {
      const c = cluster();
      if (!c || isForwarded(request)) return page(local, limit, (p) => ({ id: p.id }));
      return gatherPersonPage(c, request, limit, local, {
        partialRows: opts.partialRows,
        localById: (ids) => localById(ids, opts.scope),
      });
    },

    /** Links two identities. Cluster: found on whichever nodes hold them; the merge is one log entry every node applies. */
    async link(request: Request, identityA: string, identityB: string, scope: string[] | null): Promise<PersonView> {
      const c = cluster();
      if (!c) return persons.link(identityA, identityB);
      const { holder } = await holdersOf(c, [identityA, identityB], request);
      const [a, b] = [holder(identityA, 'identityA'), holder(identityB, 'identityB')];
      await decide(c, { op: 'link', keeper: a.id, loser: b.id, identities: [identityA, identityB] });
      return (await find(request, persons.resolve(a.id), scope)).person;
    },

    /** Moves an identity to a new person of its own (through the person log in cluster mode). */
    async unlink(
      request: Request,
      identityId: string,
      reason: string,
      scope: string[] | null,
    ): Promise<{ person: PersonView; identity: IdentityView }> {
      const c = cluster();
      if (!c) return persons.unlink(identityId, reason);
      const { holder, partial } = await holdersOf(c, [identityId], request);
      const from = holder(identityId, 'identityId');
      if (from.identities.length <= 1) {
        // Counted across nodes: a node that did not answer may hold the person's other identities.
        if (partial)
          throw new Unavailable(
            "A node did not answer and may hold the person's other identities; retry later",
            null,
            2,
          );
        throw new Conflict('The identity is the only one of its person; nothing to unlink', { identityId });
      }
      const personId = newId();
      await decide(c, { op: 'unlink', identity: identityId, person: personId, reason, at: isoNow() });
      const { person, partial: silent } = await find(request, personId, scope);
      const identity = person.identities.find((i) => i.id === identityId);
      if (!identity) throw missing(`Identity '${identityId}'`, silent);
      return { person, identity };
    },
  };
}
