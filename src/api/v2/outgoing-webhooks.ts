// v2 outgoing webhooks (issue 21): subscriptions, their secrets (shown on create and rotation
// only), test events, and the delivery log with redelivery. Served at /api/v2/webhooks and
// /api/v1/webhooks. Keys restricted to instances see and create only subscriptions limited to
// their instances. (The inbound channel webhooks are src/api/webhooks.ts.)
import { Elysia, t } from 'elysia';
import { decodeCursor, PageMeta, page } from '../../services/pagination.ts';
import type { WebhookService } from '../../webhooks/index.ts';
import { deliveryView } from '../../webhooks/outbox.ts';
import type { SubscriptionRow } from '../../webhooks/subscriptions.ts';
import { subscriptionView, visibleTo } from '../../webhooks/subscriptions.ts';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/types.ts';
import { ApiError, errorResponses, notFound } from '../errors.ts';
import { principalOf } from '../principal.ts';
import { PageQuery, SuccessSchema } from '../schemas.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const EventType = t.Union(
  WEBHOOK_EVENT_TYPES.map((e) => t.Literal(e)),
  { description: 'Event type' },
);
const fields = {
  url: t.String({ minLength: 1, maxLength: 2048, description: 'Where events are POSTed (http or https)' }),
  events: t.Array(EventType, { maxItems: WEBHOOK_EVENT_TYPES.length, description: 'Event types; empty = all' }),
  instanceIds: t.Union([t.Array(t.String({ maxLength: 200 }), { maxItems: 500 }), t.Null()], {
    description: 'Only events of these instances (ids or names); null = every instance',
  }),
  description: t.Union([t.String({ maxLength: 500 }), t.Null()], { description: 'A note for people' }),
};

const Subscription = t.Object(
  {
    id: t.String(),
    url: t.String(),
    description: t.Union([t.String(), t.Null()]),
    events: t.Array(t.String()),
    instanceIds: t.Union([t.Array(t.String()), t.Null()]),
    active: t.Boolean(),
    disabledReason: t.Union([t.String(), t.Null()], {
      description: 'Why the gateway disabled it (410 Gone, failing for the whole retry period)',
    }),
    disabledAt: t.Union([t.String(), t.Null()]),
    secret: t.String({ description: 'whsec_… signing secret: in full only on create and rotation, masked otherwise' }),
    previousSecretExpiresAt: t.Union([t.String(), t.Null()], {
      description: 'Until then deliveries carry a second signature with the previous secret',
    }),
    createdAt: t.String(),
    updatedAt: t.String(),
  },
  { description: 'A webhook subscription' },
);

const Delivery = t.Object(
  {
    id: t.String(),
    subscriptionId: t.String(),
    webhookId: t.String({ description: 'The webhook-id header: the same on every retry and redelivery' }),
    eventType: t.String(),
    status: t.Union([t.Literal('pending'), t.Literal('delivered'), t.Literal('failed')]),
    attempts: t.Integer(),
    lastStatusCode: t.Union([t.Integer(), t.Null()]),
    lastError: t.Union([t.String(), t.Null()]),
    lastAttemptAt: t.Union([t.String(), t.Null()]),
    nextAttemptAt: t.Union([t.String(), t.Null()]),
    deliveredAt: t.Union([t.String(), t.Null()]),
    createdAt: t.String(),
    payload: t.Record(t.String(), t.Unknown(), { description: 'The body sent: {type, timestamp, data}' }),
  },
  { description: 'One event on its way to one subscription' },
);

const IdParams = t.Object({ id: t.String({ maxLength: 200, description: 'Subscription id' }) });

/** What the outgoing-webhook routes use: instance lookup and the webhook service. */
export interface WebhooksV2Deps extends InstanceLookup {
  webhooks: WebhookService;
}

export function webhooksV2(gw: WebhooksV2Deps, prefix = '/api/v2/webhooks') {
  const subscriptionFor = (request: Request, id: string): SubscriptionRow => {
    const s = gw.webhooks.subscriptions.get(id);
    if (!s || !visibleTo(s, principalOf(request).instanceIds)) throw notFound('Webhook subscription');
    return s;
  };
  /** Ids or names → visible instance ids; a key restricted to instances must name some of its own. */
  const targetInstances = (request: Request, v: string[] | null | undefined): string[] | null | undefined => {
    const key = principalOf(request).instanceIds;
    if (v === undefined) return key === null ? undefined : key;
    if (v === null || v.length === 0) {
      if (key !== null)
        throw new ApiError('FORBIDDEN', 'Keys restricted to instances can only subscribe to events of their instances');
      return null;
    }
    return [...new Set(v.map((i) => visibleInstance(gw, request, i).id))];
  };

  return new Elysia({ name: `webhooks-v2:${prefix}`, prefix })
    .get(
      '',
      ({ query, request }) => {
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const limit = query.limit ?? 50;
        const rows = gw.webhooks.subscriptions.list({
          keyInstances: principalOf(request).instanceIds,
          afterId: after?.id,
          limit: limit + 1,
        });
        const res = page(rows, limit, (r) => ({ id: r.id }));
        return { items: res.items.map((r) => subscriptionView(r)), meta: res.meta };
      },
      {
        query: t.Object({ ...PageQuery }),
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'List webhook subscriptions',
          description: 'Outgoing webhook subscriptions, oldest first; secrets are masked.',
        },
        response: {
          200: t.Object({ items: t.Array(Subscription), meta: PageMeta }, { description: 'A page of subscriptions' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '',
      ({ body, request, set }) => {
        const row = gw.webhooks.create({
          url: body.url,
          events: body.events,
          instanceIds: targetInstances(request, body.instanceIds),
          description: body.description ?? null,
        });
        set.status = 201;
        return { data: subscriptionView(row, true) };
      },
      {
        body: t.Object(
          {
            url: fields.url,
            events: t.Optional(fields.events),
            instanceIds: t.Optional(fields.instanceIds),
            description: t.Optional(fields.description),
          },
          { additionalProperties: false, description: 'New subscription' },
        ),
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'Create webhook subscription',
          description:
            'Events are POSTed as {type, timestamp, data} with Standard Webhooks signatures (webhook-id, webhook-timestamp, webhook-signature). The whsec_ secret is returned only here and by rotate-secret.',
        },
        response: {
          201: t.Object({ data: Subscription }, { description: 'Created (with its secret)' }),
          ...errorResponses,
        },
      },
    )
    .get('/:id', ({ params, request }) => ({ data: subscriptionView(subscriptionFor(request, params.id)) }), {
      params: IdParams,
      detail: {
        tags: ['outgoing webhooks'],
        summary: 'Get webhook subscription',
        description: 'One subscription (secret masked).',
      },
      response: { 200: t.Object({ data: Subscription }, { description: 'The subscription' }), ...errorResponses },
    })
    .patch(
      '/:id',
      ({ params, body, request }) => {
        const cur = subscriptionFor(request, params.id);
        const row = gw.webhooks.subscriptions.update(cur.id, {
          url: body.url,
          events: body.events,
          instanceIds: body.instanceIds === undefined ? undefined : targetInstances(request, body.instanceIds),
          description: body.description,
          active: body.active,
        });
        if (body.active) gw.webhooks.worker.kick(); // deliveries held while it was off go out now
        return { data: subscriptionView(row) };
      },
      {
        params: IdParams,
        body: t.Object(
          {
            url: t.Optional(fields.url),
            events: t.Optional(fields.events),
            instanceIds: t.Optional(fields.instanceIds),
            description: t.Optional(fields.description),
            active: t.Optional(
              t.Boolean({ description: 'false: no new events are queued, queued ones wait; true: they go out again' }),
            ),
          },
          { additionalProperties: false, minProperties: 1, description: 'Fields to change' },
        ),
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'Update webhook subscription',
          description: 'Changes only the fields given. active: true turns on a subscription the gateway disabled.',
        },
        response: { 200: t.Object({ data: Subscription }, { description: 'Updated' }), ...errorResponses },
      },
    )
    .delete(
      '/:id',
      ({ params, request }) => {
        gw.webhooks.subscriptions.delete(subscriptionFor(request, params.id).id);
        return { success: true };
      },
      {
        params: IdParams,
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'Delete webhook subscription',
          description: 'Deletes the subscription and its delivery log; pending deliveries are dropped.',
        },
        response: { 200: SuccessSchema, ...errorResponses },
      },
    )
    .post(
      '/:id/rotate-secret',
      ({ params, request }) => ({
        data: subscriptionView(gw.webhooks.rotateSecret(subscriptionFor(request, params.id).id), true),
      }),
      {
        params: IdParams,
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'Rotate webhook secret',
          description:
            'A new whsec_ secret (returned here only). During the grace period (WEBHOOK_SECRET_GRACE_SECONDS) each delivery carries two signatures, one per secret.',
        },
        response: { 200: t.Object({ data: Subscription }, { description: 'With the new secret' }), ...errorResponses },
      },
    )
    .post(
      '/:id/test',
      ({ params, request, set }) => {
        const row = gw.webhooks.sendTest(subscriptionFor(request, params.id));
        set.status = 202;
        return { data: deliveryView(row) };
      },
      {
        params: IdParams,
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'Send a test event',
          description: 'Queues a webhook.test event for this subscription; follow it in the delivery log.',
        },
        response: { 202: t.Object({ data: Delivery }, { description: 'Queued' }), ...errorResponses },
      },
    )
    .get(
      '/:id/deliveries',
      ({ params, query, request }) => {
        const sub = subscriptionFor(request, params.id);
        const after = decodeCursor<{ s: number }>(query.cursor, (v) => typeof v.s === 'number');
        const limit = query.limit ?? 50;
        const rows = gw.webhooks.outbox.list(sub.id, { beforeSeq: after?.s, status: query.status, limit: limit + 1 });
        const res = page(rows, limit, (r) => ({ s: r.seq }));
        return { items: res.items.map(deliveryView), meta: res.meta };
      },
      {
        params: IdParams,
        query: t.Object({
          ...PageQuery,
          status: t.Optional(
            t.Union([t.Literal('pending'), t.Literal('delivered'), t.Literal('failed')], {
              description: 'pending, delivered or failed',
            }),
          ),
        }),
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'List deliveries',
          description:
            'Newest first: status, attempts, last status code and error, and when the next attempt is due. Finished deliveries are pruned after WEBHOOK_RETENTION_DAYS.',
        },
        response: {
          200: t.Object({ items: t.Array(Delivery), meta: PageMeta }, { description: 'A page of deliveries' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '/:id/deliveries/:deliveryId/redeliver',
      ({ params, request, set }) => {
        const sub = subscriptionFor(request, params.id);
        const d = gw.webhooks.outbox.get(params.deliveryId);
        if (!d || d.subscription_id !== sub.id) throw notFound('Delivery');
        if (sub.active !== 1)
          throw new ApiError('CONFLICT', 'The subscription is disabled; enable it (PATCH active: true) first');
        set.status = 202;
        return { data: deliveryView(gw.webhooks.redeliver(d.id)!) };
      },
      {
        params: t.Object({
          id: t.String({ maxLength: 200, description: 'Subscription id' }),
          deliveryId: t.String({ maxLength: 200, description: 'Delivery id' }),
        }),
        detail: {
          tags: ['outgoing webhooks'],
          summary: 'Redeliver',
          description:
            'Sends the same event again: same webhook-id and body, a fresh retry period. It keeps its place in its conversation’s order.',
        },
        response: {
          202: t.Object({ data: Delivery }, { description: 'Queued again' }),
          409: errorResponses[400],
          ...errorResponses,
        },
      },
    );
}
