// v2 instances: camelCase, {data} / {items, meta} envelopes, cursor pagination, filters.
import { Elysia, t } from 'elysia';
import type { Gateway } from '../../gateway.ts';
import { canSeeInstance } from '../../services/keys.ts';
import type { Instance } from '../../services/instance-types.ts';
import { principalOf } from '../../server.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { baseUrl, V2CreateBody, V2Instance, V2UpdateBody, v2Input, v2View } from '../instance-views.ts';
import { commaList, decodeCursor, page } from '../pagination.ts';
import { PageMeta, PageQuery, SuccessSchema } from '../schemas.ts';

const IdParams = t.Object({ id: t.String({ maxLength: 200, description: 'Instance id (or name)' }) });

/** Instance lookup honouring the key's instance restriction (others are NOT_FOUND). */
export function visibleInstance(gw: Gateway, request: Request, idOrName: string): Instance {
  const inst = gw.instances.resolve(idOrName);
  if (!inst || !canSeeInstance(principalOf(request), inst.id)) throw new ApiError('NOT_FOUND', `Instance '${idOrName}' not found`);
  return inst;
}

export function instancesV2(gw: Gateway) {
  const view = (i: Instance, request: Request) => v2View(i, baseUrl(gw.config.publicUrl, request));
  return new Elysia({ name: 'instances-v2', prefix: '/api/v2/instances' })
    .get(
      '',
      ({ query, request }) => {
        const p = principalOf(request);
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const limit = query.limit ?? 50;
        const filter = { channel: commaList(query.channel), status: commaList(query.status), ids: p.instanceIds };
        const rows = gw.instances.list({ ...filter, afterId: after?.id, limit: limit + 1 });
        const res = page(rows, limit, (i) => ({ id: i.id }));
        return { items: res.items.map((i) => view(i, request)), meta: { ...res.meta, total: gw.instances.count(filter) } };
      },
      {
        query: t.Object({ ...PageQuery, channel: t.Optional(t.String({ maxLength: 200, description: 'Comma list of channels' })), status: t.Optional(t.String({ maxLength: 200, description: 'Comma list of statuses' })) }),
        detail: { tags: ['instances'], summary: 'List instances', description: 'Cursor-paginated; filter by channel and status (comma lists).' },
        response: { 200: t.Object({ items: t.Array(V2Instance), meta: PageMeta }, { description: 'A page of instances' }), ...errorResponses },
      },
    )
    .post(
      '',
      ({ body, request, set }) => {
        if (principalOf(request).instanceIds !== null) throw new ApiError('FORBIDDEN', 'Keys restricted to instances cannot create instances');
        const inst = gw.instances.create(v2Input(body as Record<string, unknown>));
        set.status = 201;
        return { data: view(inst, request) };
      },
      {
        body: V2CreateBody,
        detail: { tags: ['instances'], summary: 'Create instance', description: 'Creates an instance; secrets are returned masked.' },
        response: { 201: t.Object({ data: V2Instance }, { description: 'Created' }), 409: errorResponses[400], ...errorResponses },
      },
    )
    .get('/:id', ({ params, request }) => ({ data: view(visibleInstance(gw, request, params.id), request) }), {
      params: IdParams,
      detail: { tags: ['instances'], summary: 'Get instance', description: 'One instance.' },
      response: { 200: t.Object({ data: V2Instance }, { description: 'The instance' }), ...errorResponses },
    })
    .patch(
      '/:id',
      ({ params, body, request }) => {
        const inst = visibleInstance(gw, request, params.id);
        return { data: view(gw.instances.update(inst.id, v2Input(body as Record<string, unknown>)), request) };
      },
      {
        params: IdParams,
        body: V2UpdateBody,
        detail: { tags: ['instances'], summary: 'Update instance', description: 'Changes only the fields given; null clears a channel field.' },
        response: { 200: t.Object({ data: V2Instance }, { description: 'Updated' }), 409: errorResponses[400], ...errorResponses },
      },
    )
    .delete(
      '/:id',
      ({ params, request }) => {
        gw.instances.delete(visibleInstance(gw, request, params.id).id);
        return { success: true };
      },
      { params: IdParams, detail: { tags: ['instances'], summary: 'Delete instance', description: 'Stops the channel and deletes the instance.' }, response: { 200: SuccessSchema, ...errorResponses } },
    )
    .post(
      '/:id/rotate-webhook-secret',
      ({ params, request }) => ({ data: view(gw.instances.rotateWebhookSecret(visibleInstance(gw, request, params.id).id), request) }),
      {
        params: IdParams,
        detail: { tags: ['instances'], summary: 'Rotate webhook secret', description: 'Issues a new webhook token; the old webhook_url stops working.' },
        response: { 200: t.Object({ data: V2Instance }, { description: 'Instance with the new webhookUrl' }), ...errorResponses },
      },
    );
}
