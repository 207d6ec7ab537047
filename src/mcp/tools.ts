// The MCP tools: thin adapters over the services the REST routes use, with the REST routes'
// scopes and rate-limit classes. Each tool sees only the instances its key may see; anything
// else is NOT_FOUND, exactly as over REST. Results are small JSON objects an LLM can read.

import type { Database } from 'bun:sqlite';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import { ApiError } from '../api/errors.ts';
import { requireChannel } from '../channels/registry.ts';
import type { Instance } from '../core/instance.ts';
import type { ChatRef, ContentType, OutboundMessage } from '../core/message.ts';
import type { Pipeline } from '../engine/pipeline.ts';
import type { AccessService } from '../services/access.ts';
import type { AuditService } from '../services/audit.ts';
import type { EventService } from '../services/events.ts';
import type { InstanceService } from '../services/instances.ts';
import type { KeyService } from '../services/keys.ts';
import { canSeeInstance, type Principal } from '../services/keys.ts';
import type { MessageService } from '../services/messages.ts';
import { decodeCursor, decodeTimeCursor, encodeCursor } from '../services/pagination.ts';
import type { RateLimiter, RouteClass } from '../services/rate-limit.ts';
import { v2Trace } from '../services/trace-views.ts';
import type { TraceRecord } from '../services/traces.ts';

/** What the MCP endpoint uses (the gateway satisfies it as it is): the services its tools call, and
 * the keys, rate limits and audit log every request goes through. */
export interface McpDeps {
  db: Database;
  clock: Clock;
  log: Logger;
  instances: InstanceService;
  messages: MessageService;
  events: EventService;
  access: AccessService;
  pipeline: Pick<Pipeline, 'traces' | 'inbox'>;
  keys: KeyService;
  rateLimiter: RateLimiter;
  audit: AuditService;
}

export interface ToolContext {
  gw: McpDeps;
  principal: Principal;
}

export interface ToolDef<S extends TSchema = TSchema> {
  name: string;
  title: string;
  description: string;
  /** The scope of the matching REST route (src/api/scopes.ts). */
  scope: string;
  /** Which rate-limit budget a call takes from, as the matching REST route does. */
  rateClass: RouteClass;
  readOnly: boolean;
  input: S;
  run(ctx: ToolContext, args: Static<S>): Promise<Record<string, unknown>> | Record<string, unknown>;
}

const tool = <S extends TSchema>(def: ToolDef<S>): ToolDef => def as unknown as ToolDef;

const InstanceRef = Type.String({ minLength: 1, maxLength: 200, description: 'Instance id or name' });
const Limit = (max: number, dflt: number) =>
  Type.Optional(Type.Integer({ minimum: 1, maximum: max, default: dflt, description: `At most ${max}` }));
const Cursor = Type.Optional(
  Type.String({ maxLength: 512, description: 'nextCursor of the previous call, for the next page' }),
);
const IdempotencyKey = Type.Optional(
  Type.String({
    minLength: 1,
    maxLength: 200,
    description: 'Retrying with the same key returns the first result and sends nothing again. Use one per message.',
  }),
);
const To = Type.String({
  minLength: 1,
  maxLength: 200,
  description: 'WhatsApp: phone number (E.164) or JID; Discord/Slack: channel id (or channel/thread)',
});

/** Instance lookup honouring the key's instance restriction (others are NOT_FOUND, as over REST). */
function visibleInstance(ctx: ToolContext, idOrName: string): Instance {
  const inst = ctx.gw.instances.resolve(idOrName);
  if (!inst || !canSeeInstance(ctx.principal, inst.id))
    throw new ApiError('NOT_FOUND', `Instance '${idOrName}' not found`);
  return inst;
}

interface ConversationRow {
  id: string;
  instance_id: string;
  chat_json: string;
  kind: string;
  title: string | null;
  last_activity_at: string;
}

function visibleConversation(ctx: ToolContext, id: string): ConversationRow {
  const r = ctx.gw.db.query<ConversationRow, [string]>('SELECT * FROM conversations WHERE id = ?').get(id);
  if (!r || !canSeeInstance(ctx.principal, r.instance_id)) throw new ApiError('NOT_FOUND', 'Conversation not found');
  return r;
}

/** Pause rows key a thread as `chatId#threadId` (see services/access.ts). */
const pauseKey = (chat: ChatRef) => (chat.threadId ? `${chat.chatId}#${chat.threadId}` : chat.chatId);

function conversationView(ctx: ToolContext, r: ConversationRow) {
  const chat = JSON.parse(r.chat_json) as ChatRef;
  const pause = ctx.gw.access.pauseOf(r.instance_id, pauseKey(chat));
  return {
    id: r.id,
    instanceId: r.instance_id,
    chatId: chat.chatId,
    ...(chat.threadId ? { threadId: chat.threadId } : {}),
    kind: r.kind,
    title: r.title,
    lastActivityAt: r.last_activity_at,
    pending: ctx.gw.pipeline.inbox.conversationBacklog(r.id),
    paused: pause ? { reason: pause.reason, until: pause.until } : null,
  };
}

/** A trace as the lines of a transcript: the incoming message (or API send), then the agent's reply. */
function transcriptLines(r: TraceRecord) {
  const lines: Array<Record<string, unknown>> = [];
  const base = { traceId: r.id, status: r.status };
  const content = r.content_type === 'text' ? {} : { contentType: r.content_type };
  if (r.kind === 'send') {
    lines.push({
      ...base,
      at: r.received_at,
      role: 'operator',
      from: r.sender_name ?? r.sender_id,
      text: r.text,
      ...content,
    });
  } else {
    lines.push({
      ...base,
      at: r.received_at,
      role: 'user',
      from: r.sender_name ?? r.sender_phone ?? r.sender_id,
      text: r.text,
      ...content,
    });
    if (r.response_text) lines.push({ traceId: r.id, at: r.completed_at, role: 'agent', text: r.response_text });
  }
  if (r.error) lines[lines.length - 1].error = r.error;
  return lines;
}

async function send(
  ctx: ToolContext,
  inst: Instance,
  to: string,
  out: OutboundMessage,
  contentType: ContentType,
  idempotencyKey: string | undefined,
) {
  const r = await ctx.gw.messages.send(inst, {
    to,
    out,
    contentType,
    idempotencyKey: idempotencyKey ?? null,
    senderId: `api-key:${ctx.principal.keyId}`,
    senderName: ctx.principal.name,
  });
  if (r.status === 'failed')
    throw new ApiError('CHANNEL_ERROR', `Channel error: ${r.error}`, {
      messageId: r.messageId,
      reason: r.error,
      instanceId: inst.id,
    });
  return {
    messageId: r.messageId,
    externalMessageId: r.externalMessageId,
    status: r.status,
    ...(r.duplicate ? { duplicate: true } : {}),
  };
}

const clip = (s: string | null, n: number) => (s && s.length > n ? `${s.slice(0, n - 1)}…` : s);

export const TOOLS: ToolDef[] = [
  tool({
    name: 'list_instances',
    title: 'List instances',
    description:
      'The channel instances (WhatsApp, Discord, Slack, …) this key can use, with their connection status. Use an instance id or name in the other tools.',
    scope: 'instances:read',
    rateClass: 'general',
    readOnly: true,
    input: Type.Object({
      channel: Type.Optional(Type.String({ maxLength: 200, description: 'Comma list of channel kinds' })),
      status: Type.Optional(Type.String({ maxLength: 200, description: 'Comma list: connected, disconnected, …' })),
      limit: Limit(100, 50),
      cursor: Cursor,
    }),
    run({ gw, principal }, a) {
      const after = decodeCursor<{ id: string }>(a.cursor, (v) => typeof v.id === 'string');
      const limit = a.limit ?? 50;
      const list = (v?: string) =>
        v
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      const rows = gw.instances.list({
        channel: list(a.channel),
        status: list(a.status),
        ids: principal.instanceIds,
        afterId: after?.id,
        limit: limit + 1,
      });
      const more = rows.length > limit;
      const items = rows.slice(0, limit);
      return {
        instances: items.map((i) => ({
          id: i.id,
          name: i.name,
          channel: i.channel,
          status: i.status,
          statusReason: i.statusReason,
          active: i.isActive,
        })),
        nextCursor: more ? encodeCursor({ id: items[items.length - 1].id }) : null,
      };
    },
  }),
  tool({
    name: 'send_message',
    title: 'Send a text message',
    description:
      "Sends text to a chat or person on an instance, in order with the conversation's agent replies (through its outbox). Waits for the channel's answer: status sent, or pending if still queued.",
    scope: 'messages:send',
    rateClass: 'messages.send',
    readOnly: false,
    input: Type.Object({
      instance: InstanceRef,
      to: To,
      text: Type.String({ minLength: 1, maxLength: 100_000 }),
      replyTo: Type.Optional(Type.String({ maxLength: 200, description: 'Platform id of a message to reply to' })),
      idempotencyKey: IdempotencyKey,
    }),
    run(ctx, a) {
      const inst = visibleInstance(ctx, a.instance);
      return send(
        ctx,
        inst,
        a.to,
        { text: a.text, ...(a.replyTo ? { replyTo: a.replyTo } : {}) },
        'text',
        a.idempotencyKey,
      );
    },
  }),
  tool({
    name: 'send_media',
    title: 'Send media',
    description: 'Sends an image, audio, video or document by URL (with an optional caption) to a chat or person.',
    scope: 'messages:send',
    rateClass: 'messages.send',
    readOnly: false,
    input: Type.Object({
      instance: InstanceRef,
      to: To,
      mediaType: Type.Union([
        Type.Literal('image'),
        Type.Literal('audio'),
        Type.Literal('video'),
        Type.Literal('document'),
      ]),
      url: Type.String({ maxLength: 4096, pattern: '^https?://', description: 'http(s) URL of the file' }),
      caption: Type.Optional(Type.String({ maxLength: 4096 })),
      filename: Type.Optional(Type.String({ maxLength: 255 })),
      idempotencyKey: IdempotencyKey,
    }),
    run(ctx, a) {
      const inst = visibleInstance(ctx, a.instance);
      const supported = requireChannel(inst.channel).capabilities.media as string[];
      if (!supported.includes(a.mediaType))
        throw new ApiError('VALIDATION_ERROR', `Channel ${inst.channel} cannot send ${a.mediaType}`, [
          { field: 'mediaType', problem: `supported: ${supported.join(', ') || 'none'}` },
        ]);
      const out: OutboundMessage = {
        text: '',
        media: {
          mediaType: a.mediaType,
          url: a.url,
          ...(a.caption !== undefined ? { caption: a.caption } : {}),
          ...(a.filename ? { filename: a.filename } : {}),
        },
      };
      return send(ctx, inst, a.to, out, a.mediaType, a.idempotencyKey);
    },
  }),
  tool({
    name: 'send_reaction',
    title: 'React to a message',
    description: 'Reacts with an emoji to a message (its platform id, e.g. externalMessageId) in a chat.',
    scope: 'messages:send',
    rateClass: 'messages.send',
    readOnly: false,
    input: Type.Object({
      instance: InstanceRef,
      to: Type.String({ minLength: 1, maxLength: 200, description: 'The chat of the message' }),
      messageId: Type.String({ minLength: 1, maxLength: 200, description: 'Platform id of the message' }),
      emoji: Type.String({ maxLength: 32, description: 'The emoji; empty removes the reaction where allowed' }),
      idempotencyKey: IdempotencyKey,
    }),
    run(ctx, a) {
      const inst = visibleInstance(ctx, a.instance);
      if (!requireChannel(inst.channel).capabilities.reactions)
        throw new ApiError('VALIDATION_ERROR', `Channel ${inst.channel} has no reactions`, [
          { field: 'instance', problem: 'channel without reactions' },
        ]);
      const out = { text: a.emoji, reaction: { messageId: a.messageId, emoji: a.emoji } };
      return send(ctx, inst, a.to, out, 'reaction', a.idempotencyKey);
    },
  }),
  tool({
    name: 'list_conversations',
    title: 'List conversations',
    description:
      'Conversations (one per chat and instance), most recently active first, with whether the bot is paused.',
    scope: 'messages:read',
    rateClass: 'general',
    readOnly: true,
    input: Type.Object({ instance: Type.Optional(InstanceRef), limit: Limit(100, 20), cursor: Cursor }),
    run(ctx, a) {
      const after = decodeCursor<{ at: string; id: string }>(
        a.cursor,
        (v) => typeof v.at === 'string' && typeof v.id === 'string',
      );
      const limit = a.limit ?? 20;
      const w: string[] = [];
      const params: Array<string | number> = [];
      if (a.instance) {
        w.push('instance_id = ?');
        params.push(visibleInstance(ctx, a.instance).id);
      }
      const allowed = ctx.principal.instanceIds;
      if (allowed) {
        w.push(allowed.length ? `instance_id IN (${allowed.map(() => '?').join(',')})` : '0');
        params.push(...allowed);
      }
      if (after) {
        w.push('(last_activity_at < ? OR (last_activity_at = ? AND id < ?))');
        params.push(after.at, after.at, after.id);
      }
      const rows = ctx.gw.db
        .query<ConversationRow, Array<string | number>>(
          `SELECT * FROM conversations ${w.length ? `WHERE ${w.join(' AND ')}` : ''} ORDER BY last_activity_at DESC, id DESC LIMIT ?`,
        )
        .all(...params, limit + 1);
      const items = rows.slice(0, limit);
      const last = items[items.length - 1];
      return {
        conversations: items.map((r) => conversationView(ctx, r)),
        nextCursor: rows.length > limit ? encodeCursor({ at: last.last_activity_at, id: last.id }) : null,
      };
    },
  }),
  tool({
    name: 'read_conversation',
    title: 'Read a conversation',
    description:
      'The recent messages of a conversation, oldest first: what users wrote, what the agent answered, what was sent through the API. nextCursor pages to older messages.',
    scope: 'messages:read',
    rateClass: 'general',
    readOnly: true,
    input: Type.Object({
      conversationId: Type.String({ minLength: 1, maxLength: 100 }),
      limit: Limit(100, 20),
      cursor: Cursor,
    }),
    run(ctx, a) {
      const conv = visibleConversation(ctx, a.conversationId);
      const before = decodeTimeCursor(a.cursor);
      const limit = a.limit ?? 20;
      const rows = ctx.gw.pipeline.traces.list({
        conversationId: conv.id,
        instanceIds: ctx.principal.instanceIds,
        before,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        conversation: conversationView(ctx, conv),
        messages: page.reverse().flatMap(transcriptLines),
        nextCursor: rows.length > limit ? encodeCursor({ at: page[0].received_at, id: page[0].id }) : null,
      };
    },
  }),
  tool({
    name: 'search_events',
    title: 'Search events',
    description:
      'Messages in and out and instance status changes, newest first, across channels. query is full-text (all words must match).',
    scope: 'events:read',
    rateClass: 'events.list',
    readOnly: true,
    input: Type.Object({
      query: Type.Optional(Type.String({ maxLength: 500, description: 'Words to find in the text' })),
      instance: Type.Optional(InstanceRef),
      conversationId: Type.Optional(Type.String({ maxLength: 100 })),
      eventType: Type.Optional(
        Type.String({ maxLength: 300, description: 'Comma list: message.received, message.sent, instance.*, …' }),
      ),
      since: Type.Optional(Type.String({ maxLength: 40, description: 'Events at or after (ISO 8601)' })),
      until: Type.Optional(Type.String({ maxLength: 40, description: 'Events at or before (ISO 8601)' })),
      limit: Limit(100, 20),
      cursor: Cursor,
    }),
    run(ctx, a) {
      const before = decodeTimeCursor(a.cursor);
      const limit = a.limit ?? 20;
      for (const field of ['since', 'until'] as const)
        if (a[field] !== undefined && Number.isNaN(Date.parse(a[field])))
          throw new ApiError('VALIDATION_ERROR', `${field} must be an ISO 8601 timestamp`, [
            { field, problem: 'must be an ISO 8601 timestamp' },
          ]);
      const rows = ctx.gw.events.list({
        search: a.query?.trim() ? a.query : undefined,
        instanceId: a.instance ? [visibleInstance(ctx, a.instance).id] : undefined,
        conversationId: a.conversationId,
        eventType: a.eventType
          ?.split(',')
          .map((s) => s.trim())
          .filter(Boolean),
        since: a.since,
        until: a.until,
        visibleInstances: ctx.principal.instanceIds,
        before,
        limit: limit + 1,
      });
      const items = rows.slice(0, limit);
      return {
        events: items.map((e) => ({
          id: e.id,
          type: e.type,
          at: e.created_at,
          channel: e.channel,
          instanceId: e.instance_id,
          conversationId: e.conversation_id,
          traceId: e.trace_id,
          text: clip(e.text, 500),
        })),
        nextCursor:
          rows.length > limit
            ? encodeCursor({ at: items[items.length - 1].created_at, id: items[items.length - 1].id })
            : null,
      };
    },
  }),
  tool({
    name: 'get_trace',
    title: 'Get a message trace',
    description:
      'Everything that happened to one message (its trace id is the message id): each step (access, agent, send…) with status, timing and errors.',
    scope: 'events:read',
    rateClass: 'events.list',
    readOnly: true,
    input: Type.Object({ traceId: Type.String({ minLength: 1, maxLength: 100 }) }),
    run(ctx, a) {
      const r = ctx.gw.pipeline.traces.get(a.traceId);
      if (!r || !canSeeInstance(ctx.principal, r.instance_id)) throw new ApiError('NOT_FOUND', 'Trace not found');
      return v2Trace(r);
    },
  }),
  tool({
    name: 'pause_conversation',
    title: 'Pause the bot in a conversation',
    description:
      'Human takeover: the agent stops answering this conversation (messages are still recorded) until resumed, or for the given minutes.',
    scope: 'access:*',
    rateClass: 'general',
    readOnly: false,
    input: Type.Object({
      conversationId: Type.String({ minLength: 1, maxLength: 100 }),
      minutes: Type.Optional(
        Type.Integer({ minimum: 1, maximum: 43_200, description: 'Resume by itself after this long (default: never)' }),
      ),
    }),
    run(ctx, a) {
      const conv = visibleConversation(ctx, a.conversationId);
      const until = a.minutes ? new Date(ctx.gw.clock.now() + a.minutes * 60_000).toISOString() : null;
      ctx.gw.access.pause(conv.instance_id, pauseKey(JSON.parse(conv.chat_json)), 'human_takeover', until);
      return { conversationId: conv.id, paused: true, until };
    },
  }),
  tool({
    name: 'resume_conversation',
    title: 'Resume the bot in a conversation',
    description: 'Ends a pause (human takeover or stop keyword): the next message reaches the agent again.',
    scope: 'access:*',
    rateClass: 'general',
    readOnly: false,
    input: Type.Object({ conversationId: Type.String({ minLength: 1, maxLength: 100 }) }),
    run(ctx, a) {
      const conv = visibleConversation(ctx, a.conversationId);
      const key = pauseKey(JSON.parse(conv.chat_json));
      const was = ctx.gw.access.pauseOf(conv.instance_id, key) !== null;
      ctx.gw.access.resume(conv.instance_id, key);
      return { conversationId: conv.id, paused: false, wasPaused: was };
    },
  }),
];
