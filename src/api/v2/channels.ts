// v2 channels: the channel kinds this gateway speaks, with library version and capabilities.
import { Elysia, t } from 'elysia';
import { CHANNEL_INFO } from '../../channels/registry.ts';
import { CHANNEL_KINDS, type ChannelKind } from '../../channels/types.ts';
import type { Gateway } from '../../gateway.ts';
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
const V2Channel = t.Object(
  {
    id: t.String({ description: 'Channel kind (the instance "channel" field)' }),
    name: t.String(),
    library: t.String(),
    version: t.String({ description: 'Version of the client library or API spoken' }),
    capabilities: Capabilities,
    instances: t.Integer({ description: 'Instances of this kind visible to the caller' }),
  },
  { description: 'Channel' },
);

function versionOf(kind: ChannelKind, library: string): string {
  const m = /\d+\.\d+[\w.-]*/.exec(library);
  if (m) return m[0];
  return kind === 'whatsapp-evolution' ? 'Evolution API v2' : 'built-in';
}

export function channelsV2(gw: Gateway) {
  const view = (kind: ChannelKind, request: Request) => {
    const info = CHANNEL_INFO[kind];
    return {
      id: kind,
      name: info.name,
      library: info.library,
      version: versionOf(kind, info.library),
      capabilities: info.capabilities,
      instances: gw.instances.count({ channel: [kind], ids: principalOf(request).instanceIds }),
    };
  };
  return new Elysia({ name: 'channels-v2', prefix: '/api/v2/channels' })
    .get('', ({ request }) => ({ items: CHANNEL_KINDS.map((k) => view(k, request)) }), {
      detail: {
        tags: ['channels'],
        summary: 'List channels',
        description:
          'Every channel kind with its library version and capabilities (text limit, media kinds, reactions, edit, typing, threads, pairing).',
      },
      response: { 200: t.Object({ items: t.Array(V2Channel) }, { description: 'Channels' }), ...errorResponses },
    })
    .get(
      '/:id',
      ({ params, request }) => {
        if (!(CHANNEL_KINDS as string[]).includes(params.id))
          throw new ApiError('NOT_FOUND', `Channel '${params.id}' not found`, { known: CHANNEL_KINDS });
        return { data: view(params.id as ChannelKind, request) };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 50 }) }),
        detail: { tags: ['channels'], summary: 'Get channel', description: 'One channel kind.' },
        response: { 200: t.Object({ data: V2Channel }, { description: 'The channel' }), ...errorResponses },
      },
    );
}
