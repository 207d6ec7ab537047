// v2 events: list with filters and full-text search, one event, a person's cross-channel
// timeline, and the search endpoint whose `agent` format returns a transcript for an LLM.
import { Elysia, t } from 'elysia';
import { clusterReads, type GatheringCluster } from '../../cluster/peers/gathered.ts';
import { asContext, summarize } from '../../services/event-digest.ts';
import { type EventFilter, type EventService, type EventView, eventView } from '../../services/events.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { decodeTimeCursor, GatheredPageMeta, page, type TimeKey } from '../../services/pagination.ts';
import type { PersonService } from '../../services/persons.ts';
import { ApiError, errorResponses, invalid } from '../errors.ts';
import { commaList } from '../pagination.ts';
import { principalOf } from '../principal.ts';
import { PageQuery } from '../schemas.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const Nullable = (s: ReturnType<typeof t.String>) => t.Union([s, t.Null()]);
export const V2Event = t.Object(
  {
    id: t.String(),
    type: t.String({
      description:
        'message.received | message.sent | message.failed | instance.connected | instance.disconnected | instance.qr | instance.logged_out | instance.error',
    }),
    channel: Nullable(t.String({ description: 'Channel kind' })),
    instanceId: Nullable(t.String()),
    personId: Nullable(t.String()),
    conversationId: Nullable(t.String()),
    traceId: Nullable(t.String({ description: 'The message (trace) id, for message events' })),
    contentType: Nullable(t.String()),
    text: Nullable(t.String()),
    payload: t.Any({ description: 'Event details (chat, sender, platform ids, status reason...)' }),
    createdAt: t.String(),
  },
  { description: 'Event' },
);

const isoField = (name: string) => t.Optional(t.String({ maxLength: 40, description: `${name} (ISO 8601)` }));
const FilterQuery = {
  channel: t.Optional(
    t.String({ maxLength: 200, description: 'Comma list of channel kinds ("whatsapp" matches both WhatsApp kinds)' }),
  ),
  instanceId: t.Optional(t.String({ maxLength: 500, description: 'Comma list of instance ids or names' })),
  personId: t.Optional(t.String({ maxLength: 500, description: 'Comma list of person ids' })),
  eventType: t.Optional(
    t.String({ maxLength: 300, description: 'Comma list of event types; "instance.*" matches a family' }),
  ),
  contentType: t.Optional(
    t.String({ maxLength: 200, description: 'Comma list: text, image, audio, video, document, ...' }),
  ),
  since: isoField('Events at or after'),
  until: isoField('Events at or before'),
  search: t.Optional(t.String({ maxLength: 500, description: 'Full-text search on the text (all words must match)' })),
};

const StrOrList = t.Union([t.String({ maxLength: 500 }), t.Array(t.String({ maxLength: 200 }), { maxItems: 50 })]);
const SearchBody = t.Object({
  query: t.Optional(t.String({ maxLength: 500, description: 'Words to find in event text' })),
  filters: t.Optional(
    t.Object(
      {
        channel: t.Optional(StrOrList),
        instanceId: t.Optional(StrOrList),
        personId: t.Optional(StrOrList),
        eventType: t.Optional(StrOrList),
        contentType: t.Optional(StrOrList),
        conversationId: t.Optional(t.String({ maxLength: 100 })),
        since: t.Optional(t.String({ maxLength: 40 })),
        until: t.Optional(t.String({ maxLength: 40 })),
      },
      { additionalProperties: false },
    ),
  ),
  format: t.Optional(t.Union([t.Literal('full'), t.Literal('summary'), t.Literal('agent')], { default: 'full' })),
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: t.Optional(t.String({ maxLength: 512, description: 'Opaque cursor from meta.cursor of the previous page' })),
});

function checkDate(field: string, v: string | undefined): string | undefined {
  if (v !== undefined && Number.isNaN(Date.parse(v)))
    throw invalid(`${field} must be an ISO 8601 timestamp`, [{ field, problem: 'must be an ISO 8601 timestamp' }]);
  return v;
}

const listOf = (v: string | string[] | undefined) => (Array.isArray(v) ? (v.length ? v : undefined) : commaList(v));

/** Events are newest first by (createdAt, id), the cursor that position (src/services/pagination.ts). */
const eventKey = (v: EventView): TimeKey => ({ at: v.createdAt, id: v.id });

/** What the events routes use: instance lookup, events and persons, the cluster to gather from. */
export interface EventsV2Deps extends InstanceLookup {
  events: EventService;
  persons: PersonService;
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: GatheringCluster | null;
}

export function eventsV2(gw: EventsV2Deps, prefix = '/api/v2/events') {
  const events = gw.events;
  const reads = clusterReads(() => gw.cluster);

  /** One page of events older than the cursor, from this node's rows. */
  const localPage = (filter: EventFilter, cursor: string | undefined, limit: number) => {
    const rows = events.list({ ...filter, before: decodeTimeCursor(cursor), limit: limit + 1 });
    const res = page(rows, limit, (r) => ({ at: r.created_at, id: r.id }));
    return { items: res.items.map(eventView), meta: res.meta };
  };

  /** The caller's filter: instance names resolved, instance-bound keys confined to their instances. */
  const filterFor = (
    request: Request,
    f: {
      channel?: string[];
      instanceId?: string[];
      personId?: string[];
      eventType?: string[];
      contentType?: string[];
      conversationId?: string;
      since?: string;
      until?: string;
      search?: string;
    },
  ): EventFilter => ({
    ...f,
    since: checkDate('since', f.since),
    until: checkDate('until', f.until),
    instanceId: f.instanceId?.map((i) => visibleInstance(gw, request, i).id),
    visibleInstances: principalOf(request).instanceIds,
  });

  /** A person's name as the caller may see it (a key bound to instances: the name given there). */
  const personName = (id: string, scope: string[] | null) => {
    const p = gw.persons.get(id);
    return p ? gw.persons.scoped(p, scope).displayName : null;
  };

  return new Elysia({ name: `events-v2:${prefix}`, prefix })
    .get(
      '',
      async ({ query, request }) => {
        const limit = query.limit ?? 50;
        const filter = filterFor(request, {
          channel: commaList(query.channel),
          instanceId: commaList(query.instanceId),
          personId: commaList(query.personId),
          eventType: commaList(query.eventType),
          contentType: commaList(query.contentType),
          since: query.since,
          until: query.until,
          search: query.search,
        });
        return reads.list(request, limit, () => localPage(filter, query.cursor, limit), { key: eventKey });
      },
      {
        query: t.Object({ ...PageQuery, ...FilterQuery }),
        detail: {
          tags: ['events'],
          summary: 'List events',
          description:
            "Newest first. The cursor is the position of the last item, so pages never repeat or skip events while new ones arrive. Keys bound to instances see only those instances' events. Cluster mode: gathered from every node, newest first by (createdAt, id); meta.partial is true when a node did not answer in time.",
        },
        response: {
          200: t.Object({ items: t.Array(V2Event), meta: GatheredPageMeta }, { description: 'A page of events' }),
          ...errorResponses,
        },
      },
    )
    .get(
      '/:id',
      ({ params, request }) => {
        const r = events.get(params.id);
        if (
          !r ||
          (r.instance_id && !canSeeInstance(principalOf(request), r.instance_id)) ||
          (!r.instance_id && principalOf(request).instanceIds !== null)
        ) {
          throw new ApiError('NOT_FOUND', 'Event not found');
        }
        return { data: eventView(r) };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: { tags: ['events'], summary: 'Get event', description: 'One event.' },
        response: { 200: t.Object({ data: V2Event }, { description: 'The event' }), ...errorResponses },
      },
    )
    .get(
      '/timeline/:personId',
      async ({ params, query, request }) => {
        const scope = principalOf(request).instanceIds;
        const known = Boolean(gw.persons.get(params.personId)) && gw.persons.visibleTo(params.personId, scope);
        const limit = query.limit ?? 50;
        const filter = filterFor(request, {
          personId: [params.personId],
          channel: commaList(query.channels),
          since: query.since,
          until: query.until,
        });
        // A person's events are on the nodes that handled them: a node that does not know the person
        // answers 404, the others their page and the channels they saw.
        return reads.list(
          request,
          limit,
          () => {
            if (!known) throw new ApiError('NOT_FOUND', 'Person not found');
            return {
              personId: params.personId,
              channels: events.channelsOf(params.personId, scope),
              ...localPage(filter, query.cursor, limit),
            };
          },
          {
            key: eventKey,
            of: 'Person',
            extra: {
              valid: (b) => Array.isArray((b as { channels?: unknown }).channels),
              merge: (own, peers) => ({
                personId: params.personId,
                channels: [...new Set([own, ...peers].flatMap((p) => p?.channels ?? []))].sort(),
              }),
            },
          },
        );
      },
      {
        params: t.Object({ personId: t.String({ maxLength: 100 }) }),
        query: t.Object({
          ...PageQuery,
          channels: t.Optional(t.String({ maxLength: 200, description: 'Comma list of channel kinds' })),
          since: isoField('Events at or after'),
          until: isoField('Events at or before'),
        }),
        detail: {
          tags: ['events'],
          summary: 'Person timeline',
          description:
            "A person's messages across every channel and identity, newest first, cursor-paginated. Cluster mode: gathered from every node, newest first by (createdAt, id); meta.partial when a node did not answer.",
        },
        response: {
          200: t.Object(
            { personId: t.String(), channels: t.Array(t.String()), items: t.Array(V2Event), meta: GatheredPageMeta },
            { description: 'The timeline' },
          ),
          503: errorResponses[500],
          ...errorResponses,
        },
      },
    )
    .post(
      '/search',
      async ({ body, request }) => {
        const f = body.filters ?? {};
        const filter = filterFor(request, {
          channel: listOf(f.channel),
          instanceId: listOf(f.instanceId),
          personId: listOf(f.personId),
          eventType: listOf(f.eventType),
          contentType: listOf(f.contentType),
          conversationId: f.conversationId,
          since: f.since,
          until: f.until,
          search: body.query?.trim() ? body.query : undefined,
        });
        const limit = body.limit ?? 50;
        const format = body.format ?? 'full';
        // Newest first by (createdAt, id) like the list, not by FTS rank: each node computes rank
        // from its own corpus, so ranks of two nodes do not compare. Peers answer format=full pages.
        const { items, total, meta } = await reads.list(
          request,
          limit,
          () => ({ total: events.count(filter), ...localPage(filter, body.cursor, limit) }),
          {
            key: eventKey,
            peerBody: { ...body, format: 'full' },
            extra: {
              valid: (b) => typeof (b as { total?: unknown }).total === 'number',
              // An event two nodes hold (a shard's previous owner) counts twice.
              merge: (own, peers) => ({ total: [own, ...peers].reduce((n, p) => n + (p?.total ?? 0), 0) }),
            },
          },
        );
        if (format === 'full') return { items, total, meta };
        const compact = items.map((e) => ({
          id: e.id,
          type: e.type,
          channel: e.channel,
          personId: e.personId,
          createdAt: e.createdAt,
          text: e.text && e.text.length > 200 ? `${e.text.slice(0, 199)}…` : e.text,
        }));
        if (format === 'summary') return { items: compact, total, meta, summary: summarize(items) };
        return {
          items: compact,
          total,
          meta,
          summary: summarize(items),
          asContext: asContext(items, (id) => personName(id, principalOf(request).instanceIds)),
        };
      },
      {
        body: SearchBody,
        detail: {
          tags: ['events'],
          summary: 'Search events',
          description:
            "Full-text query plus filters (strings are comma lists, or arrays), newest first; pass meta.cursor as `cursor` for the next page. format=full returns events; summary returns compact items and a one-line summary; agent adds asContext, a transcript (oldest first, one line per event) to hand to an LLM. Cluster mode: gathered from every node, newest first by (createdAt, id) (FTS rank is per node, so not used to order); total is the sum of the nodes' counts; meta.partial is true when a node did not answer in time.",
        },
        response: {
          200: t.Object(
            {
              items: t.Array(t.Any()),
              total: t.Integer({ description: 'Events matching (items holds at most limit, newest)' }),
              meta: GatheredPageMeta,
              summary: t.Optional(t.String()),
              asContext: t.Optional(t.String()),
            },
            { description: 'Matching events' },
          ),
          ...errorResponses,
        },
      },
    );
}
