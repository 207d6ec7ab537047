// v2 instances: camelCase, {data} / {items, meta} envelopes, cursor pagination, filters.
import { Elysia, t } from 'elysia';
import type { Config } from '../../config.ts';
import type { Instance } from '../../core/instance.ts';
import type { InstanceService } from '../../services/instances.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { type LifecycleDeps, lifecycleOf } from '../../services/lifecycle.ts';
import { decodeCursor, PageMeta, page } from '../../services/pagination.ts';
import { messagingDefaults, type SettingsService } from '../../services/settings.ts';
import { ApiError, errorResponses } from '../errors.ts';
import {
  baseUrl,
  checkDefaultFlag,
  reveal,
  V2CreateBody,
  V2Instance,
  V2UpdateBody,
  v2Input,
  v2View,
} from '../instance-views.ts';
import { commaList } from '../pagination.ts';
import { principalOf } from '../principal.ts';
import { PageQuery, SuccessSchema } from '../schemas.ts';

const IdParams = t.Object({ id: t.String({ maxLength: 200, description: 'Instance id (or name)' }) });

const V2Status = t.Object(
  {
    status: t.String({ description: 'connecting, connected, disconnected, logged_out or error' }),
    reason: t.Union([t.String(), t.Null()], { description: 'Why, when not connected (e.g. the last disconnect)' }),
    channel: t.String(),
    running: t.Boolean({ description: 'The channel connection is owned by a running instance actor' }),
    hasQr: t.Boolean({ description: 'A pairing QR is available at .../qr' }),
    lastDisconnect: t.Optional(
      t.Union(
        [t.Object({ statusCode: t.Union([t.Integer(), t.Null()]), reason: t.String(), at: t.String() }), t.Null()],
        { description: 'WhatsApp (Baileys): the last socket close' },
      ),
    ),
    qrRounds: t.Optional(t.Integer({ description: 'WhatsApp (Baileys): QR codes shown since the last open' })),
    nextReconnectAt: t.Optional(
      t.Union([t.String(), t.Null()], { description: 'WhatsApp (Baileys): when the next reconnect is due' }),
    ),
    evolutionState: t.Optional(t.String({ description: "Evolution's own state (open, connecting, close)" })),
  },
  { description: 'Connection status' },
);
const StatusData = t.Object({ data: V2Status }, { description: 'Connection status' });
const LogoutData = t.Object(
  { success: t.Literal(true), data: V2Status },
  { description: 'Logged out; the connection status after it' },
);
const lifecycleErrors = { 409: errorResponses[400], 502: errorResponses[500], ...errorResponses };

/** What `visibleInstance` needs: the instances, looked up by id or name. */
export interface InstanceLookup {
  instances: Pick<InstanceService, 'resolve'>;
}

/** Instance lookup honouring the key's instance restriction (others are NOT_FOUND). */
export function visibleInstance(gw: InstanceLookup, request: Request, idOrName: string): Instance {
  const inst = gw.instances.resolve(idOrName);
  if (!inst || !canSeeInstance(principalOf(request), inst.id))
    throw new ApiError('NOT_FOUND', `Instance '${idOrName}' not found`);
  return inst;
}

/** What the v2 instance routes use: the instances and their lifecycle, the public URL, the messaging defaults. */
export interface InstancesV2Deps extends LifecycleDeps {
  config: Pick<Config, 'publicUrl'>;
  settings: SettingsService;
}

export function instancesV2(gw: InstancesV2Deps) {
  const view = (i: Instance, request: Request) =>
    v2View(i, baseUrl(gw.config.publicUrl, request), reveal(request), messagingDefaults(gw.settings));
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
        return {
          items: res.items.map((i) => view(i, request)),
          meta: { ...res.meta, total: gw.instances.count(filter) },
        };
      },
      {
        query: t.Object({
          ...PageQuery,
          channel: t.Optional(t.String({ maxLength: 200, description: 'Comma list of channels' })),
          status: t.Optional(t.String({ maxLength: 200, description: 'Comma list of statuses' })),
        }),
        detail: {
          tags: ['instances'],
          summary: 'List instances',
          description: 'Cursor-paginated; filter by channel and status (comma lists).',
        },
        response: {
          200: t.Object({ items: t.Array(V2Instance), meta: PageMeta }, { description: 'A page of instances' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '',
      ({ body, request, set }) => {
        if (principalOf(request).instanceIds !== null)
          throw new ApiError('FORBIDDEN', 'Keys restricted to instances cannot create instances');
        const inst = gw.instances.create(v2Input(body as Record<string, unknown>));
        // auto_qr: provision the Evolution side in the background; the create never waits for it.
        void lifecycleOf(gw).afterCreate(inst, baseUrl(gw.config.publicUrl, request));
        set.status = 201;
        return { data: view(inst, request) };
      },
      {
        body: V2CreateBody,
        detail: {
          tags: ['instances'],
          summary: 'Create instance',
          description: 'Creates an instance; secrets are returned masked.',
        },
        response: {
          201: t.Object({ data: V2Instance }, { description: 'Created' }),
          409: errorResponses[400],
          ...errorResponses,
        },
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
        return {
          data: view(
            gw.instances.update(inst.id, checkDefaultFlag(request, v2Input(body as Record<string, unknown>))),
            request,
          ),
        };
      },
      {
        params: IdParams,
        body: V2UpdateBody,
        detail: {
          tags: ['instances'],
          summary: 'Update instance',
          description: 'Changes only the fields given; null clears a channel field.',
        },
        response: {
          200: t.Object({ data: V2Instance }, { description: 'Updated' }),
          409: errorResponses[400],
          ...errorResponses,
        },
      },
    )
    .delete(
      '/:id',
      ({ params, request }) => {
        gw.instances.delete(visibleInstance(gw, request, params.id).id);
        return { success: true };
      },
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Delete instance',
          description: 'Stops the channel and deletes the instance.',
        },
        response: { 200: SuccessSchema, ...errorResponses },
      },
    )
    .get(
      '/:id/status',
      async ({ params, request }) => ({ data: await lifecycleOf(gw).status(visibleInstance(gw, request, params.id)) }),
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Connection status',
          description:
            'Live status and reason. Evolution instances ask Evolution (GET /instance/connectionState); WhatsApp (Baileys) adds the last disconnect, QR rounds and the next reconnect time.',
        },
        response: { 200: StatusData, ...errorResponses },
      },
    )
    .get(
      '/:id/qr',
      async ({ params, request }) => ({ data: await lifecycleOf(gw).qr(visibleInstance(gw, request, params.id)) }),
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Pairing QR code',
          description:
            'WhatsApp only: the current QR as a PNG data URL and when it expires. 404 while none is available yet, 409 when already connected or stopped, 400 for token-based channels, 502 CHANNEL_ERROR when Evolution is unreachable.',
        },
        response: {
          200: t.Object(
            {
              data: t.Object({
                qr: t.String({ description: 'data:image/png;base64,...' }),
                expiresAt: t.String({ description: 'ISO time' }),
              }),
            },
            { description: 'The QR code' },
          ),
          ...lifecycleErrors,
        },
      },
    )
    .post(
      '/:id/pair',
      async ({ params, body, request }) => ({
        data: { code: await lifecycleOf(gw).pair(visibleInstance(gw, request, params.id), body.phoneNumber) },
      }),
      {
        params: IdParams,
        body: t.Object(
          {
            phoneNumber: t.String({
              minLength: 7,
              maxLength: 32,
              description: 'The phone to link, international format (e.g. +5511999990000)',
            }),
          },
          { additionalProperties: false },
        ),
        detail: {
          tags: ['instances'],
          summary: 'Pair by phone number',
          description:
            'WhatsApp (Baileys) only: returns the 8-character code to enter on the phone (Linked devices → Link with phone number). 409 when already linked.',
        },
        response: {
          200: t.Object({ data: t.Object({ code: t.String() }) }, { description: 'The pairing code' }),
          ...lifecycleErrors,
        },
      },
    )
    .post(
      '/:id/connect',
      async ({ params, request }) => {
        const inst = visibleInstance(gw, request, params.id);
        const r = await lifecycleOf(gw).connect(inst, baseUrl(gw.config.publicUrl, request));
        return { data: { ...r.status, ...(r.created !== undefined ? { created: r.created, qr: r.qr ?? null } : {}) } };
      },
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Connect',
          description:
            'Evolution: creates the instance in Evolution if missing and registers our webhook_url for MESSAGES_UPSERT (base64 = webhook_base64); 502 CHANNEL_ERROR with the reason when Evolution is unreachable. WhatsApp (Baileys), Discord, Slack: (re)starts the connection.',
        },
        response: {
          200: t.Object(
            {
              data: t.Composite([
                V2Status,
                t.Object({
                  created: t.Optional(t.Boolean({ description: 'Evolution: the instance was created now' })),
                  qr: t.Optional(
                    t.Union([t.String(), t.Null()], { description: 'Evolution: the QR handed out on creation' }),
                  ),
                }),
              ]),
            },
            { description: 'Status after connecting' },
          ),
          ...lifecycleErrors,
        },
      },
    )
    .post(
      '/:id/restart',
      async ({ params, request }) => ({ data: await lifecycleOf(gw).restart(visibleInstance(gw, request, params.id)) }),
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Restart the connection',
          description:
            'Evolution: proxied to POST /instance/restart. Others: drops and reopens the connection (Baileys: with a fresh QR budget).',
        },
        response: { 200: StatusData, ...lifecycleErrors },
      },
    )
    .post(
      '/:id/logout',
      // The design answers {success:true}; the status after the logout comes along as data.
      async ({ params, request }) => ({
        success: true as const,
        data: await lifecycleOf(gw).logout(visibleInstance(gw, request, params.id)),
      }),
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Log out (unlink WhatsApp)',
          description:
            'WhatsApp only. Baileys: unlinks the device and deletes the stored auth state (pair again to reconnect). Evolution: proxied to DELETE /instance/logout.',
        },
        response: { 200: LogoutData, ...lifecycleErrors },
      },
    )
    .get(
      '/:id/discord/invite',
      ({ params, request }) => ({
        data: { url: lifecycleOf(gw).discordInvite(visibleInstance(gw, request, params.id)) },
      }),
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Discord invite URL',
          description:
            'OAuth2 URL that adds the bot to a server, from discord_client_id and discord_permissions (scopes bot + applications.commands).',
        },
        response: {
          200: t.Object({ data: t.Object({ url: t.String() }) }, { description: 'Invite URL' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '/:id/rotate-webhook-secret',
      ({ params, request }) => ({
        data: view(gw.instances.rotateWebhookSecret(visibleInstance(gw, request, params.id).id), request),
      }),
      {
        params: IdParams,
        detail: {
          tags: ['instances'],
          summary: 'Rotate webhook secret',
          description: 'Issues a new webhook token; the old webhook_url stops working.',
        },
        response: {
          200: t.Object({ data: V2Instance }, { description: 'Instance with the new webhookUrl' }),
          ...errorResponses,
        },
      },
    );
}
