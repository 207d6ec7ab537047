// v2 persons: search, one person, presence across channels, timeline, link and unlink identities.
// The handlers read this node; what differs in cluster mode (reads gathered from every node and
// merged by person id, link and unlink through the shared person log) is in
// src/cluster/peers/gather-persons.ts, the timeline's events gathered like the events list.
import { Elysia, t } from 'elysia';
import type { Logger } from 'pino';
import { gatheredPersons, type PersonsCluster } from '../../cluster/peers/gather-persons.ts';
import { clusterReads, type GatheringCluster } from '../../cluster/peers/gathered.ts';
import { type EventService, eventView } from '../../services/events.ts';
import { decodeCursor, decodeTimeCursor, GatheredPageMeta, page } from '../../services/pagination.ts';
import { type PersonService, presenceOf } from '../../services/persons.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { commaList } from '../pagination.ts';
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

/** What the persons routes use: persons and their events, the log, the cluster (gathered reads, the person log). */
export interface PersonsV2Deps {
  persons: PersonService;
  events: EventService;
  log: Logger;
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: (GatheringCluster & PersonsCluster) | null;
}

export function personsV2(gw: PersonsV2Deps, prefix = '/api/v2/persons') {
  const persons = gw.persons;
  const across = gatheredPersons(() => gw.cluster, persons, gw.log);
  const reads = clusterReads(() => gw.cluster);
  const scopeOf = (request: Request) => principalOf(request).instanceIds;
  /** The person as the caller may see it (cluster mode: from every node). */
  const find = (id: string, request: Request) => across.find(request, id, scopeOf(request));
  const withPartial = <T extends object>(body: T, partial: boolean) =>
    partial ? { ...body, meta: { partial: true } } : body;

  return new Elysia({ name: `persons-v2:${prefix}`, prefix })
    .get(
      '',
      async ({ query, request }) => {
        const limit = query.limit ?? 50;
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const scope = scopeOf(request);
        const search = query.search?.trim() || undefined;
        const identityIds = commaList(query.identityId);
        await across.synced();
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
        return across.list(request, limit, rows, { partialRows: Boolean(search || identityIds), scope });
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
        // Events are per node: gathered and paged like the events list. A peer asked for its part
        // answers even without rows of the person (its events filter still confines an
        // instance-bound key); the node asked first checks that the person exists.
        const before = decodeTimeCursor(query.cursor);
        return reads.list(
          request,
          limit,
          async () => {
            await across.synced();
            const rows = gw.events.list({ ...filter, before, limit: limit + 1 });
            const res = page(rows, limit, (r) => ({ at: r.created_at, id: r.id }));
            return { items: res.items.map(eventView), meta: res.meta };
          },
          { key: (v) => ({ at: v.createdAt, id: v.id }), entry: () => find(params.id, request) },
        );
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
        return { data: await across.link(request, body.identityA, body.identityB, scopeOf(request)) };
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
        return { data: await across.unlink(request, body.identityId, body.reason, scopeOf(request)) };
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
