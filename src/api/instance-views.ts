// v1 (flat snake_case, the setup guide's shape) and v2 (camelCase, nested) views of an instance
// and the matching input mappers. Secrets are always masked.
import { t } from 'elysia';
import { SECRET_FIELDS } from '../channels/registry.ts';
import type { Instance } from '../core/instance.ts';
import type { ChannelKind } from '../core/message.ts';
import { maskUrl } from '../net/outbound.ts';
import { maskSecret } from '../services/ids.ts';
import type { InstanceInput } from '../services/instance-input.ts';
import {
  DEFAULT_MEDIA,
  DEFAULT_MESSAGING,
  effectiveMessaging,
  MEDIA_MAX_BYTES,
  MESSAGING_LIMITS,
  MESSAGING_MODES,
  type MediaOptions,
  type MessagingOptions,
} from '../services/instance-options.ts';
import { webhookUrl } from '../services/instances.ts';
import { hasScope } from '../services/keys.ts';
import { ApiError } from './errors.ts';
import { principalOf } from './principal.ts';
import { ALL_CHANNEL_FIELDS, ChannelEnum, camelToSnake, fieldSchema, snakeToCamel } from './schemas.ts';

function maskedConfig(inst: Instance): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(inst.config)) {
    const kind = ALL_CHANNEL_FIELDS[k];
    // A URL may carry a password or a token (http://u:pass@host/?key=…): shown masked like secrets.
    out[k] = SECRET_FIELDS.has(k)
      ? maskSecret(v)
      : (kind === 'http' || kind === 'ws') && typeof v === 'string'
        ? maskUrl(v)
        : v;
  }
  return out;
}

/** The webhook token lets anyone post messages as the platform: only writers of instances see it. */
export function reveal(request: Request): boolean {
  return hasScope(principalOf(request), 'instances:write');
}

/** The default flag is shared by all tenants: only keys that see every instance may move it. */
export function checkDefaultFlag(request: Request, input: InstanceInput): InstanceInput {
  if (input.isDefault === true && principalOf(request).instanceIds !== null) {
    throw new ApiError('FORBIDDEN', 'Keys restricted to instances cannot make an instance the default');
  }
  return input;
}

export function baseUrl(publicUrl: string | null, request: Request): string {
  return publicUrl ?? new URL(request.url).origin;
}

// ---- v1 ----

const AGENT_TYPE_LITERALS = () =>
  (['auto', 'json', 'agui', 'openai', 'leo', 'echo', 'script'] as const).map((v) => t.Literal(v));

const V1_AGENT_FIELDS = {
  agent_api_url: t.String({ maxLength: 2048, description: 'Agent endpoint (http/https)' }),
  agent_api_key: t.String({ maxLength: 4096, description: 'Agent API key (secret; returned masked)' }),
  default_agent: t.String({ maxLength: 200, description: 'Agent name; "leo" selects the built-in Leo client' }),
  agent_timeout: t.Integer({ minimum: 1, maximum: 600, description: 'Agent timeout in seconds (1–600)' }),
  agent_type: t.Union(AGENT_TYPE_LITERALS(), {
    description: 'Agent protocol (default auto); echo and script are built in and need no URL',
  }),
  agent_model: t.String({ maxLength: 200, description: 'Model name for OpenAI-compatible agents' }),
  reply_mode: t.Union([t.Literal('final'), t.Literal('blocks'), t.Literal('edit')], {
    description: 'How replies are delivered',
  }),
  error_reply: t.Union([t.String({ maxLength: 4000 }), t.Null()], {
    description: 'Sent when a message is dead-lettered; null for none',
  }),
  access_mode: t.Union([t.Literal('disabled'), t.Literal('blocklist'), t.Literal('allowlist')], {
    description: 'Access rule mode',
  }),
};

const v1Props = {
  name: t.String({ maxLength: 63, description: 'Slug: lowercase letters, digits, dashes' }),
  channel: ChannelEnum,
  is_active: t.Boolean(),
  is_default: t.Boolean(),
  ...V1_AGENT_FIELDS,
  ...Object.fromEntries(Object.entries(ALL_CHANNEL_FIELDS).map(([k, kind]) => [k, fieldSchema(kind, k)])),
};

export const V1CreateBody = t.Object(
  { ...Object.fromEntries(Object.entries(v1Props).map(([k, s]) => [k, k === 'name' ? s : t.Optional(s)])) },
  {
    additionalProperties: false,
    description: 'Instance as in the v1 setup guide (channel inferred from the fields when not given)',
  },
);
export const V1UpdateBody = t.Partial(t.Object(v1Props, { additionalProperties: false }), {
  additionalProperties: false,
  description: 'Fields to change',
});

export const V1Instance = t.Object(
  {
    id: t.Integer(),
    name: t.String(),
    channel: t.String(),
    status: t.String(),
    webhook_url: t.Union([t.String(), t.Null()]),
    agent_api_url: t.Union([t.String(), t.Null()]),
    agent_api_key: t.Union([t.String(), t.Null()]),
    default_agent: t.Union([t.String(), t.Null()]),
    agent_timeout: t.Integer(),
    is_active: t.Boolean(),
    is_default: t.Boolean(),
    created_at: t.String(),
    updated_at: t.String(),
  },
  { additionalProperties: true, description: 'Instance (v1 shape; channel fields flat, secrets masked)' },
);

export function v1Input(body: Record<string, unknown>): InstanceInput {
  const input: InstanceInput = { config: {}, agent: {}, settings: {} };
  for (const [k, v] of Object.entries(body)) {
    switch (k) {
      case 'name':
        input.name = v as string;
        break;
      case 'channel':
        input.channel = v as ChannelKind;
        break;
      case 'is_active':
        input.isActive = v as boolean;
        break;
      case 'is_default':
        input.isDefault = v as boolean;
        break;
      case 'agent_api_url':
        input.agent!.url = v as string;
        break;
      case 'agent_api_key':
        input.agent!.apiKey = v as string;
        break;
      case 'default_agent':
        input.agent!.defaultAgent = v as string;
        break;
      case 'agent_timeout':
        input.agent!.timeoutSeconds = v as number;
        break;
      case 'agent_type':
        input.agent!.type = v as never;
        break;
      case 'agent_model':
        input.agent!.model = v as string;
        break;
      case 'reply_mode':
        input.settings!.replyMode = v as never;
        break;
      case 'error_reply':
        input.settings!.errorReply = v as string | null;
        break;
      case 'access_mode':
        input.settings!.accessMode = v as never;
        break;
      default:
        input.config![k] = v;
    }
  }
  return input;
}

export function v1View(inst: Instance, base: string, revealWebhookToken = true) {
  return {
    id: inst.seq,
    name: inst.name,
    channel: inst.channel,
    ...maskedConfig(inst),
    agent_api_url: maskUrl(inst.agent.url),
    agent_api_key: maskSecret(inst.agent.apiKey),
    default_agent: inst.agent.defaultAgent,
    agent_timeout: inst.agent.timeoutSeconds,
    agent_type: inst.agent.type,
    reply_mode: inst.settings.replyMode,
    is_active: inst.isActive,
    is_default: inst.isDefault,
    status: inst.status,
    webhook_url: webhookUrl(inst, base, revealWebhookToken),
    created_at: inst.createdAt,
    updated_at: inst.updatedAt,
  };
}

// ---- v2 ----

const channelConfigProps = Object.fromEntries(
  Object.entries(ALL_CHANNEL_FIELDS).map(([k, kind]) => [
    snakeToCamel(k),
    t.Optional(t.Union([fieldSchema(kind, k), t.Null()])),
  ]),
);

export const V2Agent = t.Object(
  {
    url: t.Optional(t.Union([t.String({ maxLength: 2048 }), t.Null()], { description: 'Agent endpoint (http/https)' })),
    apiKey: t.Optional(t.Union([t.String({ maxLength: 4096 }), t.Null()], { description: 'Secret; returned masked' })),
    type: t.Optional(
      t.Union(AGENT_TYPE_LITERALS(), {
        description: 'Agent protocol (default auto); echo and script are built in and need no URL',
      }),
    ),
    timeoutSeconds: t.Optional(t.Integer({ minimum: 1, maximum: 600 })),
    idleTimeoutSeconds: t.Optional(t.Integer({ minimum: 1, maximum: 600 })),
    defaultAgent: t.Optional(t.Union([t.String({ maxLength: 200 }), t.Null()])),
    model: t.Optional(t.Union([t.String({ maxLength: 200 }), t.Null()])),
    headers: t.Optional(t.Record(t.String({ maxLength: 64 }), t.String({ maxLength: 4096 }))),
    script: t.Optional(
      t.Union([
        t.Object(
          {
            rules: t.Array(
              t.Object(
                {
                  pattern: t.String({ maxLength: 500, description: 'Regular expression, case-insensitive' }),
                  reply: t.String({ maxLength: 4000, description: 'Reply; $& and $1…$9 insert the match' }),
                },
                { additionalProperties: false },
              ),
              { maxItems: 100, description: 'Tried in order; the first match answers' },
            ),
            fallback: t.Optional(t.Union([t.String({ maxLength: 4000 }), t.Null()])),
          },
          { additionalProperties: false, description: 'Rules of the built-in script agent' },
        ),
        t.Null(),
      ]),
    ),
  },
  { additionalProperties: false, description: 'Agent endpoint and protocol' },
);

export const V2Settings = t.Object(
  {
    replyMode: t.Optional(t.Union([t.Literal('final'), t.Literal('blocks'), t.Literal('edit')])),
    errorReply: t.Optional(t.Union([t.String({ maxLength: 4000 }), t.Null()])),
    accessMode: t.Optional(t.Union([t.Literal('disabled'), t.Literal('blocklist'), t.Literal('allowlist')])),
    maxTextLength: t.Optional(t.Union([t.Integer({ minimum: 100, maximum: 100000 }), t.Null()])),
  },
  { additionalProperties: true, description: 'Delivery and access settings' },
);

const range = (r: readonly [number, number], description: string) =>
  t.Integer({ minimum: r[0], maximum: r[1], description });

/** The design's `messaging`: how bursts become turns (an instance without its own runs the settings' default). */
export const V2Messaging = t.Object(
  {
    mode: t.Optional(
      t.Union(
        MESSAGING_MODES.map((m) => t.Literal(m)),
        { description: 'sequential (one turn per message), collect (a burst is one turn), interrupt' },
      ),
    ),
    debounceMs: t.Optional(range(MESSAGING_LIMITS.debounceMs, 'Quiet time before a turn starts')),
    maxWaitMs: t.Optional(range(MESSAGING_LIMITS.maxWaitMs, 'A turn starts after this long anyway (0 = no cap)')),
    maxBatch: t.Optional(range(MESSAGING_LIMITS.maxBatch, 'Most messages in one turn')),
  },
  { additionalProperties: false, description: 'Conversation mode' },
);

/** The design's `media`: transcription of voice notes and inlining of media for the agent. */
export const V2Media = t.Object(
  {
    transcription: t.Optional(
      t.Union([
        t.Null(),
        t.Object(
          {
            url: t.Optional(t.String({ maxLength: 2000, description: 'OpenAI-compatible API base, e.g. …/v1' })),
            apiKey: t.Optional(t.Union([t.String({ maxLength: 500 }), t.Null()])),
            model: t.Optional(t.String({ maxLength: 200 })),
            language: t.Optional(t.Union([t.String({ maxLength: 20 }), t.Null()])),
          },
          { additionalProperties: false },
        ),
      ]),
    ),
    inline: t.Optional(t.Boolean({ description: 'Media bytes inlined as base64 for the agent' })),
    maxBytes: t.Optional(range(MEDIA_MAX_BYTES, 'Largest media item accepted')),
  },
  { additionalProperties: false, description: 'Media handling' },
);

const v2Props = {
  name: t.String({ maxLength: 63, description: 'Slug: lowercase letters, digits, dashes' }),
  channel: ChannelEnum,
  channelConfig: t.Object(channelConfigProps, {
    additionalProperties: false,
    description: 'Channel fields (camelCase of the v1 names)',
  }),
  agent: V2Agent,
  settings: V2Settings,
  messaging: V2Messaging,
  media: V2Media,
  isActive: t.Boolean(),
  isDefault: t.Boolean(),
};

export const V2CreateBody = t.Object(
  {
    ...v2Props,
    channelConfig: t.Optional(v2Props.channelConfig),
    agent: t.Optional(v2Props.agent),
    settings: t.Optional(v2Props.settings),
    messaging: t.Optional(v2Props.messaging),
    media: t.Optional(v2Props.media),
    isActive: t.Optional(v2Props.isActive),
    isDefault: t.Optional(v2Props.isDefault),
  },
  { additionalProperties: false, description: 'New instance' },
);
export const V2UpdateBody = t.Partial(t.Object(v2Props), {
  additionalProperties: false,
  description: 'Fields to change',
});

export const V2Instance = t.Object(
  {
    id: t.String(),
    name: t.String(),
    channel: t.String(),
    channelConfig: t.Record(t.String(), t.Any()),
    agent: t.Record(t.String(), t.Any()),
    settings: t.Record(t.String(), t.Any()),
    messaging: t.Record(t.String(), t.Any()),
    media: t.Record(t.String(), t.Any()),
    isActive: t.Boolean(),
    isDefault: t.Boolean(),
    status: t.String(),
    statusReason: t.Union([t.String(), t.Null()]),
    webhookUrl: t.Union([t.String(), t.Null()]),
    createdAt: t.String(),
    updatedAt: t.String(),
  },
  { description: 'Instance (secrets masked)' },
);

export function v2Input(body: Record<string, unknown>): InstanceInput {
  const input: InstanceInput = {};
  if (body.name !== undefined) input.name = body.name as string;
  if (body.channel !== undefined) input.channel = body.channel as ChannelKind;
  if (body.isActive !== undefined) input.isActive = body.isActive as boolean;
  if (body.isDefault !== undefined) input.isDefault = body.isDefault as boolean;
  if (body.agent) input.agent = body.agent as InstanceInput['agent'];
  if (body.settings) input.settings = body.settings as InstanceInput['settings'];
  if (body.messaging !== undefined) input.messaging = body.messaging;
  if (body.media !== undefined) input.media = body.media;
  if (body.channelConfig) {
    input.config = Object.fromEntries(
      Object.entries(body.channelConfig as Record<string, unknown>).map(([k, v]) => [camelToSnake(k), v]),
    );
  }
  return input;
}

/**
 * `messaging` as the instance runs it (its own, else the global default) and `media` as stored
 * (defaults filled), the transcription key masked.
 */
function optionsView(inst: Instance, messagingDefault: MessagingOptions) {
  const media = { ...DEFAULT_MEDIA, ...(inst.settings.media as object | undefined) } as MediaOptions;
  return {
    messaging: effectiveMessaging(inst.settings.messaging, () => messagingDefault),
    media: media.transcription
      ? { ...media, transcription: { ...media.transcription, apiKey: maskSecret(media.transcription.apiKey) } }
      : media,
  };
}

export function v2View(
  inst: Instance,
  base: string,
  revealWebhookToken = true,
  messagingDefault: MessagingOptions = DEFAULT_MESSAGING,
) {
  return {
    id: inst.id,
    name: inst.name,
    channel: inst.channel,
    channelConfig: Object.fromEntries(Object.entries(maskedConfig(inst)).map(([k, v]) => [snakeToCamel(k), v])),
    agent: {
      ...inst.agent,
      url: maskUrl(inst.agent.url),
      apiKey: maskSecret(inst.agent.apiKey),
      headers: Object.fromEntries(Object.entries(inst.agent.headers).map(([k, v]) => [k, maskSecret(v)])),
    },
    settings: Object.fromEntries(Object.entries(inst.settings).filter(([k]) => k !== 'messaging' && k !== 'media')),
    ...optionsView(inst, messagingDefault),
    isActive: inst.isActive,
    isDefault: inst.isDefault,
    status: inst.status,
    statusReason: inst.statusReason,
    webhookUrl: webhookUrl(inst, base, revealWebhookToken),
    createdAt: inst.createdAt,
    updatedAt: inst.updatedAt,
  };
}
