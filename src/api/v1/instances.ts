// v1 instances: the setup guide's routes and shapes, verbatim.
import { Elysia, t } from 'elysia';
import { withV1Defaults } from '../../channels/registry.ts';
import type { Config } from '../../config.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { type LifecycleDeps, lifecycleOf } from '../../services/lifecycle.ts';
import { ApiError, errorResponses } from '../errors.ts';
import {
  baseUrl,
  checkDefaultFlag,
  reveal,
  V1CreateBody,
  V1Instance,
  V1UpdateBody,
  v1Input,
  v1View,
} from '../instance-views.ts';
import { principalOf } from '../principal.ts';
import { SuccessSchema } from '../schemas.ts';

const NameParams = t.Object({ name: t.String({ maxLength: 200, description: 'Instance name' }) });

const V1Qr = t.Object(
  {
    qr_code: t.String({ description: 'data:image/png;base64,... — scan with WhatsApp (Linked devices)' }),
    instance_name: t.String(),
    valid_until: t.String({ description: 'ISO time after which WhatsApp rejects this QR' }),
    instance_id: t.Integer(),
  },
  { description: 'Pairing QR code (the v1 guide shape)' },
);

const V1Status = t.Object(
  {
    instance_name: t.String(),
    instance_id: t.Integer(),
    channel: t.String(),
    status: t.String({ description: 'connecting, connected, disconnected, logged_out or error' }),
    reason: t.Union([t.String(), t.Null()], { description: 'Why, when not connected' }),
    connected: t.Boolean(),
  },
  { additionalProperties: true, description: 'Connection status' },
);

/** What the v1 instance routes use: the instances and their lifecycle, the public URL, the v1 defaults. */
export interface InstancesV1Deps extends LifecycleDeps {
  config: Pick<Config, 'publicUrl' | 'v1Defaults'>;
}

export function instancesV1(gw: InstancesV1Deps) {
  const visible = (request: Request, name: string) => {
    const inst = gw.instances.getByName(name);
    if (!inst || !canSeeInstance(principalOf(request), inst.id))
      throw new ApiError('NOT_FOUND', `Instance '${name}' not found`);
    return inst;
  };
  return new Elysia({ name: 'instances-v1', prefix: '/api/v1/instances' })
    .get(
      '',
      ({ request }) => {
        const p = principalOf(request);
        return gw.instances
          .list({ ids: p.instanceIds })
          .map((i) => v1View(i, baseUrl(gw.config.publicUrl, request), reveal(request)));
      },
      {
        detail: {
          tags: ['instances'],
          summary: 'List instances (v1)',
          description: 'All instances visible to the key, as a bare array.',
        },
        response: { 200: t.Array(V1Instance, { description: 'Instances' }), ...errorResponses },
      },
    )
    .post(
      '',
      ({ body, request, set }) => {
        const p = principalOf(request);
        if (p.instanceIds !== null)
          throw new ApiError('FORBIDDEN', 'Keys restricted to instances cannot create instances');
        const input = v1Input(body as Record<string, unknown>);
        // The guide's .env (EVOLUTION_API_URL / EVOLUTION_API_KEY) fills what the body leaves out.
        input.config ??= {};
        input.channel = withV1Defaults(input.config, input.channel, gw.config.v1Defaults);
        const inst = gw.instances.create(input);
        // auto_qr: provision the Evolution side in the background; the create never waits for it.
        void lifecycleOf(gw).afterCreate(inst, baseUrl(gw.config.publicUrl, request));
        set.status = 201;
        return v1View(inst, baseUrl(gw.config.publicUrl, request), reveal(request));
      },
      {
        body: V1CreateBody,
        detail: {
          tags: ['instances'],
          summary: 'Create instance (v1)',
          description:
            'Body as in the v1 setup guide; the channel is inferred from the fields when not given. Answers 201 with masked secrets and the webhook_url.',
        },
        response: { 201: V1Instance, 409: errorResponses[400], ...errorResponses },
      },
    )
    .get(
      '/:name',
      ({ params, request }) =>
        v1View(visible(request, params.name), baseUrl(gw.config.publicUrl, request), reveal(request)),
      {
        params: NameParams,
        detail: { tags: ['instances'], summary: 'Get instance (v1)', description: 'One instance by name.' },
        response: { 200: V1Instance, ...errorResponses },
      },
    )
    .put(
      '/:name',
      ({ params, body, request }) => {
        const inst = visible(request, params.name);
        return v1View(
          gw.instances.update(inst.id, checkDefaultFlag(request, v1Input(body as Record<string, unknown>))),
          baseUrl(gw.config.publicUrl, request),
          reveal(request),
        );
      },
      {
        params: NameParams,
        body: V1UpdateBody,
        detail: { tags: ['instances'], summary: 'Update instance (v1)', description: 'Changes only the fields given.' },
        response: { 200: V1Instance, 409: errorResponses[400], ...errorResponses },
      },
    )
    .get(
      '/:name/qr',
      async ({ params, request }) => {
        const inst = visible(request, params.name);
        const qr = await lifecycleOf(gw).qr(inst);
        return { qr_code: qr.qr, instance_name: inst.name, valid_until: qr.expiresAt, instance_id: inst.seq };
      },
      {
        params: NameParams,
        detail: {
          tags: ['instances'],
          summary: 'Pairing QR code (v1)',
          description:
            'WhatsApp instances only. Evolution: asks Evolution (GET /instance/connect). Baileys: the QR the socket shows now. 404 when no QR is available yet, 409 when already connected, 400 for channels that pair by token, 502 CHANNEL_ERROR when Evolution is unreachable.',
        },
        response: { 200: V1Qr, 409: errorResponses[400], 502: errorResponses[500], ...errorResponses },
      },
    )
    .get(
      '/:name/status',
      async ({ params, request }) => {
        const inst = visible(request, params.name);
        const s = await lifecycleOf(gw).status(inst);
        return {
          instance_name: inst.name,
          instance_id: inst.seq,
          channel: inst.channel,
          status: s.status,
          reason: s.reason,
          connected: s.status === 'connected',
          ...(s.evolutionState !== undefined ? { evolution_state: s.evolutionState } : {}),
          ...(s.qrRounds !== undefined ? { qr_rounds: s.qrRounds, last_disconnect: s.lastDisconnect ?? null } : {}),
        };
      },
      {
        params: NameParams,
        detail: {
          tags: ['instances'],
          summary: 'Connection status (v1)',
          description:
            'Live status: Evolution instances ask Evolution (GET /instance/connectionState); others report the running connection.',
        },
        response: { 200: V1Status, ...errorResponses },
      },
    )
    .delete(
      '/:name',
      ({ params, request }) => {
        const inst = visible(request, params.name);
        gw.instances.delete(inst.id);
        return { success: true };
      },
      {
        params: NameParams,
        detail: {
          tags: ['instances'],
          summary: 'Delete instance (v1)',
          description: 'Stops the channel and deletes the instance.',
        },
        response: { 200: SuccessSchema, ...errorResponses },
      },
    );
}
