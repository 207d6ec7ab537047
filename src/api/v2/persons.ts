// v2 persons: search, one person, presence across channels, timeline, link and unlink identities.
// Cluster mode: every read is gathered from all live nodes and merged by person id
// (src/cluster/peers/gather-persons.ts); link and unlink go through the cluster's person log
// (src/cluster/person-log.ts), which each node applies before it answers a persons read.
import { Elysia, t } from 'elysia';
import { decodeTimeCursor, GatheredPageMeta, gatherPage, isForwarded } from '../../cluster/peers/gather.ts';
import { gatherHolders, gatherPersonPage, gatherPersonsById } from '../../cluster/peers/gather-persons.ts';
import type { Cluster } from '../../cluster/index.ts';
import type { Gateway } from '../../gateway.ts';
import { eventView } from '../../services/events.ts';
import { isoNow, newId } from '../../services/ids.ts';
import { type PersonOp, type PersonView, presenceOf } from '../../services/persons.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { commaList, decodeCursor, page } from '../pagination.ts';
import { principalOf } from '../principal.ts';
import { PageQuery } from '../schemas.ts';
import { V2Event } from './events.ts';

const Nullable = (s: ReturnType<typeof t.String>) => t.Union([s, t.Null()]);
const V2Identity = t.Object(
  {
    id: t.String(),
    personId: t.String(),
    platform: t.String({ description: 'whatsapp | discord | slack | api' }),
    platformUserId: t.String({ description: 'WhatsApp JID, Discord user id, Slack user id' }),
    aliases: t.Array(t.String(), { description: 'Other ids of the same user (e.g. the WhatsApp LID)' }),
    displayName: Nullable(t.String()),
    phone: Nullable(t.String()),
    messageCount: t.Integer(),
    firstSeenAt: t.String(),
    lastSeenAt: t.String(),
    unlinkedReason: Nullable(t.String()),
  },
  { description: 'Platform identity' },
);
const V2Person = t.Object(
  {
    id: t.String(),
    displayName: Nullable(t.String()),
    identities: t.Array(V2Identity),
    createdAt: t.String(),
    updatedAt: t.String(),
  },
  { description: 'Person' },
);
const ChannelPresence = t.Object({
  identities: t.Integer(),
  messages: t.Integer(),
  firstSeenAt: t.String(),
  lastSeenAt: t.String(),
  platformUserIds: t.Array(t.String()),
});
const V2Presence = t.Object(
  {
    person: V2Person,
    identities: t.Array(V2Identity),
    summary: t.Object({
      totalIdentities: t.Integer(),
      activeChannels: t.Array(t.String()),
      totalMessages: t.Integer({ description: 'Messages received from the person' }),
      lastSeenAt: Nullable(t.String()),
      firstSeenAt: Nullable(t.String()),
    }),
    byChannel: t.Record(t.String(), ChannelPresence),
  },
  { description: 'Presence' },
);
// One id: cluster mode asks peers with the comma-list `?id=` filter, so a comma would fetch other persons.
const IdParams = t.Object({ id: t.String({ maxLength: 100, pattern: '^[^,]+$', description: 'Person id' }) });
const PartialMeta = t.Optional(
  t.Object({
    partial: t.Boolean({ description: 'Cluster mode: a node did not answer in time; its rows are missing' }),
  }),
);

export function personsV2(gw: Gateway, prefix = '/api/v2/persons') {
  const persons = gw.persons;
  const scopeOf = (request: Request) => principalOf(request).instanceIds;
  /** This node's rows of some persons, as the caller may see them. */
  const localById = (ids: string[], scope: string[] | null) =>
    persons.search({ ids, limit: ids.length, instanceIds: scope }).map((p) => persons.scoped(p, scope));

  /** Cluster mode: the shared link/unlink log (owned by the Cluster; null in embedded mode). */
  const personLog = () => gw.cluster?.personLog ?? null;
  /** Before a read: the link/unlink decisions of every node applied here. */
  const synced = async () => {
    await personLog()?.catchUp();
  };

  /** Not on the nodes that answered: 404, or 503 when a silent node may hold it. */
  const missing = (what: string, partial: boolean, details: unknown = null) =>
    partial
      ? new ApiError(
          'UNAVAILABLE',
          `${what} not found on the nodes that answered; a node did not answer and may hold it, retry later`,
          details,
          { 'retry-after': '2' },
        )
      : new ApiError('NOT_FOUND', `${what} not found`, details);

  /** The person as the caller may see it (cluster mode: from every node). */
  const find = async (id: string, request: Request): Promise<{ person: PersonView; partial: boolean }> => {
    await synced();
    const local = localById([id], scopeOf(request));
    const found = gw.cluster
      ? await gatherPersonsById(gw.cluster, request, [id], local)
      : { items: local, partial: false };
    const person = found.items.find((p) => p.id === id);
    if (!person) throw missing('Person', found.partial);
    return { person, partial: found.partial };
  };
  const withPartial = <T extends object>(body: T, partial: boolean) =>
    partial ? { ...body, meta: { partial: true } } : body;

  /** Cluster mode, link and unlink: the persons holding the identities, whole, from every node. */
  const holdersOf = async (cluster: Cluster, identityIds: string[], request: Request) => {
    await synced();
    const local = persons.search({ identityIds, limit: 100, instanceIds: null });
    const found = await gatherHolders(cluster, request, identityIds, local, (ids) => localById(ids, null));
    const holder = (identityId: string, field: string): PersonView => {
      const p = found.holderOf(identityId);
      if (!p) throw missing(`Identity '${identityId}'`, found.partial, { field });
      return p;
    };
    return { holder, partial: found.partial };
  };
  /** Appends a link or unlink to the cluster's person log and applies it here. */
  const decide = async (op: PersonOp) => {
    try {
      await personLog()!.append(op);
    } catch (err) {
      gw.log.warn({ err: String(err) }, 'persons: appending to the cluster person log failed');
      throw new ApiError('UNAVAILABLE', 'The cluster person log (Redis) did not answer; retry later', null, {
        'retry-after': '2',
      });
    }
    await synced();
  };

  return new Elysia({ name: `persons-v2:${prefix}`, prefix })
    .get(
      '',
      async ({ query, request }) => {
        const limit = query.limit ?? 50;
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const scope = scopeOf(request);
        const search = query.search?.trim() || undefined;
        const identityIds = commaList(query.identityId);
        await synced();
        const rows = persons
          .search({
            search,
            ids: commaList(query.id),
            identityIds,
            afterId: after?.id,
            limit: limit + 1,
            instanceIds: scope,
          })
          .map((p) => persons.scoped(p, scope));
        const cluster = gw.cluster;
        if (!cluster || isForwarded(request)) return page(rows, limit, (p) => ({ id: p.id }));
        return gatherPersonPage(cluster, request, limit, rows, {
          partialRows: Boolean(search || identityIds),
          localById: (ids) => localById(ids, scope),
        });
      },
      {
        query: t.Object({
          ...PageQuery,
          search: t.Optional(t.String({ maxLength: 200, description: 'Part of a name, phone or platform id' })),
          id: t.Optional(t.String({ maxLength: 4000, description: 'Comma list of person ids' })),
          identityId: t.Optional(
            t.String({ maxLength: 4000, description: 'Comma list of identity ids: the persons holding them' }),
          ),
        }),
        detail: {
          tags: ['persons'],
          summary: 'Search persons',
          description:
            'Persons whose name, phone or platform id contains the search text (or of the given ids), ordered by id, cursor-paginated. Cluster mode: gathered from every node (one entry per person, with the identities of all nodes); meta.partial is true when a node did not answer in time.',
        },
        response: {
          200: t.Object({ items: t.Array(V2Person), meta: GatheredPageMeta }, { description: 'A page of persons' }),
          ...errorResponses,
        },
      },
    )
    .get(
      '/:id',
      async ({ params, request }) => {
        const { person, partial } = await find(params.id, request);
        return withPartial({ data: person }, partial);
      },
      {
        params: IdParams,
        detail: {
          tags: ['persons'],
          summary: 'Get person',
          description:
            'One person with its identities (cluster mode: from every node; meta.partial when a node did not answer).',
        },
        response: {
          200: t.Object({ data: V2Person, meta: PartialMeta }, { description: 'The person' }),
          503: errorResponses[500],
          ...errorResponses,
        },
      },
    )
    .get(
      '/:id/presence',
      async ({ params, request }) => {
        const { person, partial } = await find(params.id, request);
        return withPartial({ data: presenceOf(person) }, partial);
      },
      {
        params: IdParams,
        detail: {
          tags: ['persons'],
          summary: 'Person presence',
          description: 'Identities, active channels, message counts and first/last seen, overall and by channel.',
        },
        response: {
          200: t.Object({ data: V2Presence, meta: PartialMeta }, { description: 'Presence' }),
          503: errorResponses[500],
          ...errorResponses,
        },
      },
    )
    .get(
      '/:id/timeline',
      async ({ params, query, request }) => {
        for (const [k, v] of [
          ['since', query.since],
          ['until', query.until],
        ] as const) {
          if (v !== undefined && Number.isNaN(Date.parse(v)))
            throw new ApiError('VALIDATION_ERROR', `${k} must be an ISO 8601 timestamp`, [
              { field: k, problem: 'must be an ISO 8601 timestamp' },
            ]);
        }
        const limit = query.limit ?? 50;
        const filter = {
          personId: [params.id],
          channel: commaList(query.channels),
          since: query.since,
          until: query.until,
          visibleInstances: scopeOf(request),
        };
        const cluster = gw.cluster;
        if (cluster) {
          // Events are per node: gathered and paged by (createdAt, id) like the events list. A peer
          // asked for its part answers even without rows of the person (its events filter still
          // confines an instance-bound key); the node asked first checks that the person exists.
          await synced();
          const events = async () => {
            const local = gw.events
              .list({ ...filter, before: decodeTimeCursor(query.cursor), byTime: true, limit: limit + 1 })
              .map(eventView);
            return gatherPage(cluster, request, limit, local, (v) => ({ at: v.createdAt, id: v.id }));
          };
          if (isForwarded(request)) return events();
          const [found, res] = await Promise.all([find(params.id, request), events()]);
          return found.partial ? { items: res.items, meta: { ...res.meta, partial: true } } : res;
        }
        await find(params.id, request);
        const after = decodeCursor<{ seq: number }>(query.cursor, (v) => Number.isInteger(v.seq));
        const res = page(gw.events.list({ ...filter, beforeSeq: after?.seq, limit: limit + 1 }), limit, (r) => ({
          seq: r.seq,
        }));
        return { items: res.items.map(eventView), meta: res.meta };
      },
      {
        params: IdParams,
        query: t.Object({
          ...PageQuery,
          channels: t.Optional(t.String({ maxLength: 200, description: 'Comma list of channel kinds' })),
          since: t.Optional(t.String({ maxLength: 40, description: 'ISO 8601' })),
          until: t.Optional(t.String({ maxLength: 40, description: 'ISO 8601' })),
        }),
        detail: {
          tags: ['persons'],
          summary: 'Person timeline',
          description:
            "The person's events across channels and identities, newest first, cursor-paginated. Cluster mode: gathered from every node, newest first by (createdAt, id); meta.partial when a node did not answer.",
        },
        response: {
          200: t.Object({ items: t.Array(V2Event), meta: GatheredPageMeta }, { description: 'A page of events' }),
          503: errorResponses[500],
          ...errorResponses,
        },
      },
    )
    .post(
      '/link',
      async ({ body, request }) => {
        const cluster = gw.cluster;
        if (!cluster) return { data: persons.link(body.identityA, body.identityB) };
        // Cluster: the persons are found on whichever nodes hold the identities; the merge is one
        // log entry that every node applies to its own rows.
        const { holder } = await holdersOf(cluster, [body.identityA, body.identityB], request);
        const [a, b] = [holder(body.identityA, 'identityA'), holder(body.identityB, 'identityB')];
        await decide({ op: 'link', keeper: a.id, loser: b.id, identities: [body.identityA, body.identityB] });
        return { data: (await find(persons.resolve(a.id), request)).person };
      },
      {
        body: t.Object({
          identityA: t.String({ minLength: 1, maxLength: 100, description: 'Identity id' }),
          identityB: t.String({ minLength: 1, maxLength: 100, description: 'Identity id' }),
        }),
        detail: {
          tags: ['persons'],
          summary: 'Link identities',
          description:
            "The two identities become one person (identityA's person is kept; the other's identities and events move to it). Cluster mode: applied by every node, also to identities it first sees later.",
        },
        response: {
          200: t.Object({ data: V2Person }, { description: 'The merged person' }),
          503: errorResponses[500],
          ...errorResponses,
        },
      },
    )
    .post(
      '/unlink',
      async ({ body, request }) => {
        const cluster = gw.cluster;
        if (!cluster) return { data: persons.unlink(body.identityId, body.reason) };
        const { holder, partial } = await holdersOf(cluster, [body.identityId], request);
        const from = holder(body.identityId, 'identityId');
        if (from.identities.length <= 1) {
          // Counted across nodes: a node that did not answer may hold the person's other identities.
          if (partial)
            throw new ApiError(
              'UNAVAILABLE',
              "A node did not answer and may hold the person's other identities; retry later",
              null,
              { 'retry-after': '2' },
            );
          throw new ApiError('CONFLICT', 'The identity is the only one of its person; nothing to unlink', {
            identityId: body.identityId,
          });
        }
        const personId = newId();
        await decide({ op: 'unlink', identity: body.identityId, person: personId, reason: body.reason, at: isoNow() });
        const { person, partial: silent } = await find(personId, request);
        const identity = person.identities.find((i) => i.id === body.identityId);
        if (!identity) throw missing(`Identity '${body.identityId}'`, silent);
        return { data: { person, identity } };
      },
      {
        body: t.Object({
          identityId: t.String({ minLength: 1, maxLength: 100 }),
          reason: t.String({ minLength: 1, maxLength: 500 }),
        }),
        detail: {
          tags: ['persons'],
          summary: 'Unlink identity',
          description:
            "Moves the identity (and its events) to a new person of its own. 409 when it is the person's only identity.",
        },
        response: {
          200: t.Object(
            { data: t.Object({ person: V2Person, identity: V2Identity }) },
            { description: 'The new person and the identity' },
          ),
          409: errorResponses[400],
          503: errorResponses[500],
          ...errorResponses,
        },
      },
    );
}
