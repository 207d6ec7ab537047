// v2 channels: the channel kinds this gateway speaks, with library version, capabilities and
// instance fields (the console builds its instance form from these).
import { Elysia, t } from 'elysia';
import { CHANNEL_KINDS, CHANNELS, channelOf } from '../../channels/registry.ts';
import type { ChannelDefinition } from '../../channels/types.ts';
import type { InstanceService } from '../../services/instances.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { principalOf } from '../principal.ts';

const Capabilities = t.Object(
  {
    maxText: t.Integer({ description: 'Longest text message' }),
    maxLines: t.Optional(t.Integer()),
    edit: t.Boolean(),
    typing: t.Boolean(),
    threads: t.Boolean(),
    reactions: t.Boolean(),
    media: t.Array(t.String(), { description: 'Media kinds that can be sent' }),
    pairing: t.String({ description: 'qr | qr+code | token | none' }),
  },
  { description: 'What the channel can do' },
);
const V2ChannelField = t.Object(
  {
    name: t.String({ description: 'channelConfig name (camelCase)' }),
    v1Name: t.String({ description: 'v1 (snake_case) name' }),
    type: t.String({ description: 'string | secret | bool | int | number | http | ws | strings | intOrString' }),
    secret: t.Boolean({ description: 'Returned masked' }),
    required: t.Boolean(),
    env: t.Optional(t.String({ description: 'Environment variable used when the field is unset' })),
    form: t.Optional(t.Object({ label: t.String(), hint: t.Optional(t.String()) }, { description: 'Console form' })),
  },
  { description: 'Instance field of this channel' },
);
const V2Channel = t.Object(
  {
    id: t.String({ description: 'Channel kind (the instance "channel" field)' }),
    name: t.String(),
    library: t.String(),
    version: t.String({ description: 'Version of the client library or API spoken' }),
    capabilities: Capabilities,
    fields: t.Array(V2ChannelField, { description: 'Instance fields (channelConfig)' }),
    instances: t.Integer({ description: 'Instances of this kind visible to the caller' }),
    widget: t.Optional(t.String({ description: 'Path of the embeddable chat script, for channels that have one' })),
  },
  { description: 'Channel' },
);

/** What the channels routes use: the instances (counted per kind). */
export interface ChannelsV2Deps {
  instances: InstanceService;
}

export function channelsV2(gw: ChannelsV2Deps, prefix = '/api/v2/channels') {
  const view = (def: ChannelDefinition, request: Request) => ({
    id: def.kind,
    name: def.name,
    library: def.library,
    version: def.version,
    capabilities: def.capabilities,
    fields: def.fields.map((f) => ({
      name: f.v2,
      v1Name: f.v1,
      type: f.type,
      secret: f.secret,
      required: f.required === true,
      ...(f.env ? { env: f.env } : {}),
      ...(f.form ? { form: f.form } : {}),
    })),
    instances: gw.instances.count({ channel: [def.kind], ids: principalOf(request).instanceIds }),
    ...(def.publicRoutes?.widget ? { widget: def.publicRoutes.widget } : {}),
  });
  return new Elysia({ name: `channels-v2:${prefix}`, prefix })
    .get('', ({ request }) => ({ items: CHANNELS.map((d) => view(d, request)) }), {
      detail: {
        tags: ['channels'],
        summary: 'List channels',
        description:
          'Every channel kind with its library version, capabilities (text limit, media kinds, reactions, edit, typing, threads, pairing) and instance fields.',
      },
      response: { 200: t.Object({ items: t.Array(V2Channel) }, { description: 'Channels' }), ...errorResponses },
    })
    .get(
      '/:id',
      ({ params, request }) => {
        const def = channelOf(params.id);
        if (!def) throw new ApiError('NOT_FOUND', `Channel '${params.id}' not found`, { known: CHANNEL_KINDS });
        return { data: view(def, request) };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 50 }) }),
        detail: { tags: ['channels'], summary: 'Get channel', description: 'One channel kind.' },
        response: { 200: t.Object({ data: V2Channel }, { description: 'The channel' }), ...errorResponses },
      },
    );
}
