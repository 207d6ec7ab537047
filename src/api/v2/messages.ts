// v2 send API: text, media, reaction, and message lookup. Sends go through the target
// conversation's actor and outbox (ordered with agent replies); see services/messages.ts.
import { Elysia, t } from 'elysia';
import { requireChannel } from '../../channels/registry.ts';
import type { Instance } from '../../core/instance.ts';
import type { ContentType, OutboundMessage } from '../../core/message.ts';
import { canSeeInstance } from '../../services/keys.ts';
import type { MessageService, SendResult } from '../../services/messages.ts';
import { ApiError, ErrorSchema, errorResponses } from '../errors.ts';
import { principalOf } from '../principal.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const Nullable = (s: ReturnType<typeof t.String>) => t.Union([s, t.Null()]);
export const MessageResult = t.Object(
  {
    messageId: t.String({ description: 'Our message id (also its trace id)' }),
    externalMessageId: Nullable(t.String({ description: "The platform's message id" })),
    status: t.String({
      description: 'sent, or pending when delivery is still queued behind earlier messages of the conversation',
    }),
  },
  { description: 'Send result' },
);
const V2Message = t.Object(
  {
    id: t.String(),
    instanceId: t.String(),
    conversationId: t.String(),
    direction: t.String({ description: 'inbound | outbound' }),
    chat: t.Any(),
    from: t.Object({ id: t.String(), name: Nullable(t.String()), phone: Nullable(t.String()) }),
    text: t.String(),
    contentType: t.String(),
    status: t.String(),
    externalMessageId: Nullable(t.String()),
    sentParts: t.Array(t.Object({ part: t.Integer(), externalMessageId: t.String(), text: t.String() })),
    responseText: Nullable(t.String()),
    error: Nullable(t.String()),
    createdAt: t.String(),
    completedAt: Nullable(t.String()),
  },
  { description: 'Message' },
);

const sendErrors = { ...errorResponses, 502: ErrorSchema, 503: ErrorSchema };
const idempotencyDoc =
  "With an Idempotency-Key header, a retried request returns the first request's result and sends nothing again.";

/** Runs one send for the caller and maps its outcome to HTTP: sent → 200, still queued → 202, channel failure → 502. */
export async function sendFor(
  gw: { messages: Pick<MessageService, 'send'> },
  request: Request,
  set: { status?: number | string },
  inst: Instance,
  to: string,
  out: OutboundMessage,
  contentType: ContentType,
): Promise<SendResult> {
  const p = principalOf(request);
  const r = await gw.messages.send(inst, {
    to,
    out,
    contentType,
    idempotencyKey: request.headers.get('idempotency-key'),
    senderId: `api-key:${p.keyId}`,
    senderName: p.name,
  });
  if (r.status === 'failed')
    throw new ApiError('CHANNEL_ERROR', `Channel error: ${r.error}`, {
      messageId: r.messageId,
      reason: r.error,
      instanceId: inst.id,
    });
  if (r.status === 'pending') set.status = 202;
  return r;
}

const result = (r: SendResult) => ({
  messageId: r.messageId,
  externalMessageId: r.externalMessageId,
  status: r.status,
});

/** What the v2 send API uses: instance lookup and the send service. */
export interface MessagesV2Deps extends InstanceLookup {
  messages: MessageService;
}

export function messagesV2(gw: MessagesV2Deps, prefix = '/api/v2/messages') {
  return new Elysia({ name: `messages-v2:${prefix}`, prefix })
    .post(
      '',
      async ({ body, request, set }) => {
        const inst = visibleInstance(gw, request, body.instanceId);
        return {
          data: result(
            await sendFor(
              gw,
              request,
              set,
              inst,
              body.to,
              { text: body.text, ...(body.replyTo ? { replyTo: body.replyTo } : {}) },
              'text',
            ),
          ),
        };
      },
      {
        body: t.Object({
          instanceId: t.String({ minLength: 1, maxLength: 200, description: 'Instance id or name' }),
          to: t.String({
            minLength: 1,
            maxLength: 200,
            description: 'WhatsApp: phone number (E.164) or JID; Discord/Slack: channel id (or channel/thread)',
          }),
          text: t.String({ minLength: 1, maxLength: 100_000 }),
          replyTo: t.Optional(t.String({ maxLength: 200, description: 'Platform id of a message to reply to' })),
        }),
        detail: {
          tags: ['messages'],
          summary: 'Send text',
          description: `Sends in order with the conversation's agent replies, through the outbox. ${idempotencyDoc} A channel failure is 502 CHANNEL_ERROR with the channel's reason.`,
        },
        response: {
          200: t.Object({ data: MessageResult }, { description: 'Sent' }),
          202: t.Object({ data: MessageResult }, { description: 'Queued, not sent yet' }),
          ...sendErrors,
        },
      },
    )
    .post(
      '/media',
      async ({ body, request, set }) => {
        const inst = visibleInstance(gw, request, body.instanceId);
        if (!body.mediaUrl === !body.mediaBase64)
          throw new ApiError('VALIDATION_ERROR', 'Give exactly one of mediaUrl or mediaBase64', [
            { field: 'mediaUrl', problem: 'exactly one of mediaUrl or mediaBase64' },
          ]);
        const supported = requireChannel(inst.channel).capabilities.media as string[];
        if (!supported.includes(body.mediaType))
          throw new ApiError('VALIDATION_ERROR', `Channel ${inst.channel} cannot send ${body.mediaType}`, [
            { field: 'mediaType', problem: `supported: ${supported.join(', ') || 'none'}` },
          ]);
        const out: OutboundMessage = {
          text: '',
          media: {
            mediaType: body.mediaType,
            ...(body.mediaUrl ? { url: body.mediaUrl } : { base64: body.mediaBase64 }),
            ...(body.caption !== undefined ? { caption: body.caption } : {}),
            ...(body.filename ? { filename: body.filename } : {}),
            ...(body.voiceNote ? { voiceNote: true } : {}),
          },
        };
        return { data: result(await sendFor(gw, request, set, inst, body.to, out, body.mediaType)) };
      },
      {
        body: t.Object({
          instanceId: t.String({ minLength: 1, maxLength: 200 }),
          to: t.String({ minLength: 1, maxLength: 200 }),
          mediaType: t.Union([t.Literal('image'), t.Literal('audio'), t.Literal('video'), t.Literal('document')]),
          mediaUrl: t.Optional(t.String({ maxLength: 4096, pattern: '^https?://' })),
          mediaBase64: t.Optional(t.String({ maxLength: 20_000_000 })),
          filename: t.Optional(t.String({ maxLength: 255 })),
          caption: t.Optional(t.String({ maxLength: 4096 })),
          voiceNote: t.Optional(t.Boolean({ description: 'Audio as a voice note' })),
        }),
        detail: {
          tags: ['messages'],
          summary: 'Send media',
          description: `Image, audio, video or document by URL or base64, with optional caption. ${idempotencyDoc}`,
        },
        response: {
          200: t.Object({ data: MessageResult }, { description: 'Sent' }),
          202: t.Object({ data: MessageResult }, { description: 'Queued, not sent yet' }),
          ...sendErrors,
        },
      },
    )
    .post(
      '/reaction',
      async ({ body, request, set }) => {
        const inst = visibleInstance(gw, request, body.instanceId);
        if (!requireChannel(inst.channel).capabilities.reactions)
          throw new ApiError('VALIDATION_ERROR', `Channel ${inst.channel} has no reactions`, [
            { field: 'instanceId', problem: 'channel without reactions' },
          ]);
        const r = await sendFor(
          gw,
          request,
          set,
          inst,
          body.to,
          { text: body.emoji, reaction: { messageId: body.messageId, emoji: body.emoji } },
          'reaction',
        );
        return { success: true, data: result(r) };
      },
      {
        body: t.Object({
          instanceId: t.String({ minLength: 1, maxLength: 200 }),
          to: t.String({ minLength: 1, maxLength: 200, description: 'The chat of the message' }),
          messageId: t.String({ minLength: 1, maxLength: 200, description: 'Platform id of the message to react to' }),
          emoji: t.String({
            maxLength: 32,
            description: 'The emoji; empty removes the reaction where the channel allows it',
          }),
        }),
        detail: { tags: ['messages'], summary: 'Send reaction', description: `Reacts to a message. ${idempotencyDoc}` },
        response: {
          200: t.Object({ success: t.Boolean(), data: MessageResult }, { description: 'Reacted' }),
          202: t.Object({ success: t.Boolean(), data: MessageResult }, { description: 'Queued' }),
          ...sendErrors,
        },
      },
    )
    .post(
      '/template',
      async ({ body, request, set }) => {
        const inst = visibleInstance(gw, request, body.instanceId);
        if (!requireChannel(inst.channel).capabilities.templates)
          throw new ApiError('VALIDATION_ERROR', `Channel ${inst.channel} has no message templates`, [
            { field: 'instanceId', problem: 'channel without templates' },
          ]);
        const template = {
          name: body.name,
          language: body.language,
          ...(body.components ? { components: body.components } : {}),
        };
        const out: OutboundMessage = { text: `[template: ${body.name}]`, template };
        return { data: result(await sendFor(gw, request, set, inst, body.to, out, 'other')) };
      },
      {
        body: t.Object({
          instanceId: t.String({ minLength: 1, maxLength: 200, description: 'Instance id or name' }),
          to: t.String({ minLength: 1, maxLength: 200, description: 'Phone number (E.164)' }),
          name: t.String({ minLength: 1, maxLength: 512, description: 'Name of an approved template' }),
          language: t.String({
            minLength: 2,
            maxLength: 20,
            pattern: '^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$',
            description: 'Template language code, e.g. en_US',
          }),
          components: t.Optional(
            t.Array(t.Record(t.String(), t.Unknown()), {
              maxItems: 20,
              description:
                "The filled-in components (header, body, buttons with their parameters), in the platform's shape",
            }),
          ),
        }),
        detail: {
          tags: ['messages'],
          summary: 'Send template',
          description: `Sends a pre-approved message template (WhatsApp Cloud API): the only kind of message WhatsApp accepts outside the 24-hour window after the user last wrote. Other channels answer 400. ${idempotencyDoc}`,
        },
        response: {
          200: t.Object({ data: MessageResult }, { description: 'Sent' }),
          202: t.Object({ data: MessageResult }, { description: 'Queued, not sent yet' }),
          ...sendErrors,
        },
      },
    )
    .get(
      '/:id',
      ({ params, request }) => {
        const m = gw.messages.get(params.id);
        if (!m || !canSeeInstance(principalOf(request), m.instanceId))
          throw new ApiError('NOT_FOUND', 'Message not found');
        return { data: m };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: {
          tags: ['messages'],
          summary: 'Get message',
          description:
            'An inbound message or an API send by id, with its status and the platform ids of what was sent.',
        },
        response: { 200: t.Object({ data: V2Message }, { description: 'The message' }), ...errorResponses },
      },
    );
}
