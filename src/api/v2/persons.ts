// v2 persons: search, one person, presence across channels, timeline, link and unlink identities.
import { Elysia, t } from 'elysia';
import type { Gateway } from '../../gateway.ts';
import { eventView } from '../../services/events.ts';
import { principalOf } from '../../server.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { commaList, decodeCursor, page } from '../pagination.ts';
import { PageMeta, PageQuery } from '../schemas.ts';
import { V2Event } from './events.ts';

const Nullable = (s: ReturnType<typeof t.String>) => t.Union([s, t.Null()]);
const V2Identity = t.Object(
  {
    id: t.String(), personId: t.String(), platform: t.String({ description: 'whatsapp | discord | slack | api' }),
    platformUserId: t.String({ description: 'WhatsApp JID, Discord user id, Slack user id' }),
    aliases: t.Array(t.String(), { description: 'Other ids of the same user (e.g. the WhatsApp LID)' }),
    displayName: Nullable(t.String()), phone: Nullable(t.String()), messageCount: t.Integer(), firstSeenAt: t.String(), lastSeenAt: t.String(),
    unlinkedReason: Nullable(t.String()),
  },
  { description: 'Platform identity' },
);
const V2Person = t.Object(
  { id: t.String(), displayName: Nullable(t.String()), identities: t.Array(V2Identity), createdAt: t.String(), updatedAt: t.String() },
  { description: 'Person' },
);
const ChannelPresence = t.Object({ identities: t.Integer(), messages: t.Integer(), firstSeenAt: t.String(), lastSeenAt: t.String(), platformUserIds: t.Array(t.String()) });
const V2Presence = t.Object(
  {
    person: V2Person,
    identities: t.Array(V2Identity),
    summary: t.Object({
      totalIdentities: t.Integer(), activeChannels: t.Array(t.String()), totalMessages: t.Integer({ description: 'Messages received from the person' }),
      lastSeenAt: Nullable(t.String()), firstSeenAt: Nullable(t.String()),
    }),
    byChannel: t.Record(t.String(), ChannelPresence),
  },
  { description: 'Presence' },
);
const IdParams = t.Object({ id: t.String({ maxLength: 100 }) });

export function personsV2(gw: Gateway) {
  const persons = gw.persons;
  const mustGet = (id: string, request: Request) => {
    const p = persons.get(id);
    const scope = principalOf(request).instanceIds;
    if (!p || !persons.visibleTo(id, scope)) throw new ApiError('NOT_FOUND', 'Person not found');
    return persons.scoped(p, scope);
  };

  return new Elysia({ name: 'persons-v2', prefix: '/api/v2/persons' })
    .get(
      '',
      ({ query, request }) => {
        const limit = query.limit ?? 50;
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const scope = principalOf(request).instanceIds;
        const rows = persons.search({ search: query.search?.trim() || undefined, afterId: after?.id, limit: limit + 1, instanceIds: scope }).map((p) => persons.scoped(p, scope));
        return page(rows, limit, (p) => ({ id: p.id }));
      },
      {
        query: t.Object({ ...PageQuery, search: t.Optional(t.String({ maxLength: 200, description: 'Part of a name, phone or platform id' })) }),
        detail: { tags: ['persons'], summary: 'Search persons', description: 'Persons whose name, phone or platform id contains the search text; oldest first, cursor-paginated.' },
        response: { 200: t.Object({ items: t.Array(V2Person), meta: PageMeta }, { description: 'A page of persons' }), ...errorResponses },
      },
    )
    .get('/:id', ({ params, request }) => ({ data: mustGet(params.id, request) }), {
      params: IdParams,
      detail: { tags: ['persons'], summary: 'Get person', description: 'One person with its identities.' },
      response: { 200: t.Object({ data: V2Person }, { description: 'The person' }), ...errorResponses },
    })
    .get(
      '/:id/presence',
      ({ params, request }) => {
        mustGet(params.id, request);
        const p = persons.presence(params.id, principalOf(request).instanceIds);
        if (!p) throw new ApiError('NOT_FOUND', 'Person not found');
        return { data: p };
      },
      {
        params: IdParams,
        detail: { tags: ['persons'], summary: 'Person presence', description: 'Identities, active channels, message counts and first/last seen, overall and by channel.' },
        response: { 200: t.Object({ data: V2Presence }, { description: 'Presence' }), ...errorResponses },
      },
    )
    .get(
      '/:id/timeline',
      ({ params, query, request }) => {
        mustGet(params.id, request);
        for (const [k, v] of [['since', query.since], ['until', query.until]] as const) {
          if (v !== undefined && Number.isNaN(Date.parse(v))) throw new ApiError('VALIDATION_ERROR', `${k} must be an ISO 8601 timestamp`, [{ field: k, problem: 'must be an ISO 8601 timestamp' }]);
        }
        const limit = query.limit ?? 50;
        const after = decodeCursor<{ seq: number }>(query.cursor, (v) => Number.isInteger(v.seq));
        const rows = gw.events.list({
          personId: [params.id], channel: commaList(query.channels), since: query.since, until: query.until,
          visibleInstances: principalOf(request).instanceIds, beforeSeq: after?.seq, limit: limit + 1,
        });
        const res = page(rows, limit, (r) => ({ seq: r.seq }));
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
        detail: { tags: ['persons'], summary: 'Person timeline', description: 'The person\'s events across channels and identities, newest first, cursor-paginated.' },
        response: { 200: t.Object({ items: t.Array(V2Event), meta: PageMeta }, { description: 'A page of events' }), ...errorResponses },
      },
    )
    .post('/link', ({ body }) => ({ data: persons.link(body.identityA, body.identityB) }), {
      body: t.Object({ identityA: t.String({ minLength: 1, maxLength: 100, description: 'Identity id' }), identityB: t.String({ minLength: 1, maxLength: 100, description: 'Identity id' }) }),
      detail: { tags: ['persons'], summary: 'Link identities', description: 'The two identities become one person (identityA\'s person is kept; the other\'s identities and events move to it).' },
      response: { 200: t.Object({ data: V2Person }, { description: 'The merged person' }), ...errorResponses },
    })
    .post('/unlink', ({ body }) => ({ data: persons.unlink(body.identityId, body.reason) }), {
      body: t.Object({ identityId: t.String({ minLength: 1, maxLength: 100 }), reason: t.String({ minLength: 1, maxLength: 500 }) }),
      detail: { tags: ['persons'], summary: 'Unlink identity', description: 'Moves the identity (and its events) to a new person of its own. 409 when it is the person\'s only identity.' },
      response: { 200: t.Object({ data: t.Object({ person: V2Person, identity: V2Identity }) }, { description: 'The new person and the identity' }), 409: errorResponses[400], ...errorResponses },
    });
}
