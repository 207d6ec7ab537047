// Discord through discord.js: one Client per instance (gateway for inbound, REST for outbound).
// Inbound MESSAGE_CREATE / `/ask` interactions become InboundMessages handed to ctx.ingest;
// replies go out over REST with a nonce derived from the idempotency key and enforce_nonce, so
// a resend after a crash returns the message Discord already created instead of posting twice.
// Kept whole: one adapter, one discord.js client's lifecycle; its parts share the client.
import { createHash } from 'node:crypto';
import {
  ApplicationCommandOptionType,
  type Attachment,
  Client,
  type ClientOptions,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  HTTPError,
  type Interaction,
  type Message,
  MessageType,
  Partials,
  RateLimitError,
  Routes,
} from 'discord.js';
import type { Logger } from 'pino';
import { type Clock, realClock, type Timer } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { ChatRef, ContentType, InboundMessage, OutboundMessage } from '../../core/message.ts';
import { chunkText } from '../../stream/chunker.ts';
import { OrderedIngest } from '../ingest-retry.ts';
import type { AdapterContext, ChannelAdapter, SentReceipt } from '../types.ts';
import { DISCORD_CAPABILITIES, DISCORD_MAX_CHARS, DISCORD_MAX_LINES } from './capabilities.ts';
import { type DiscordSettings, readDiscordSettings } from './config.ts';

/** Discord shows "is typing" for ~10 s; refresh a little earlier. */
const TYPING_REFRESH_MS = 8_000;
const RATE_WINDOW_MS = 60_000;

export const ASK_COMMAND = {
  name: 'ask',
  description: 'Ask the agent',
  type: 1,
  options: [{ type: ApplicationCommandOptionType.String, name: 'message', description: 'What to ask', required: true }],
};

/** What an inbound message from `/ask` carries in `extra.interaction`. */
export interface DiscordInteractionRef {
  id: string;
  token: string;
  applicationId: string;
}

export interface DiscordAdapterOptions {
  clock?: Clock;
  /** Env fallback for the REST base (config.discordApiUrl) when the instance has none. */
  defaultApiUrl?: string | null;
  /** discord.js waits this long for GUILD_CREATEs after READY (tests use a short value). */
  waitGuildTimeout?: number;
  /** Extra discord.js client options (tests: rest timeouts/retries). */
  clientOptions?: Partial<ClientOptions>;
}

/** Deterministic Discord nonce (≤ 25 chars) for chunk `index` of the reply with this key. */
export function nonceFor(idempotencyKey: string, index: number): string {
  return createHash('sha256').update(`${idempotencyKey}#${index}`).digest('hex').slice(0, 25);
}

export class DiscordAdapter implements ChannelAdapter {
  readonly kind = 'discord' as const;
  readonly capabilities = DISCORD_CAPABILITIES;

  private client: Client | null = null;
  private ctx: AdapterContext | null = null;
  private settings: DiscordSettings | null = null;
  private log: Logger | null = null;
  private readonly clock: Clock;
  private readonly ingestQueue: OrderedIngest;
  private readonly typingTimers = new Map<string, Timer>();
  /** Per conversation: recent replies (monotonic ms + idempotency key) for the loop guard. */
  private readonly recentReplies = new Map<string, Array<{ at: number; key: string }>>();
  /** Messages we posted through an interaction webhook: editing them needs the token. */
  private readonly interactionMessages = new Map<string, DiscordInteractionRef>();

  constructor(private readonly opts: DiscordAdapterOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.ingestQueue = new OrderedIngest({ clock: this.clock, log: () => this.log });
  }

  async start(ctx: AdapterContext): Promise<void> {
    if (this.client) await this.stop('restart');
    const settings = readDiscordSettings(ctx.instance.config, this.opts.defaultApiUrl);
    this.ctx = ctx;
    this.settings = settings;
    this.log = ctx.log.child({ channel: 'discord', instance: ctx.instance.id });
    if (!settings.botToken) {
      ctx.setStatus('error', { reason: 'discord_bot_token is not set' });
      return;
    }

    const client = new Client({
      intents: [
        GatewayIntentBits.Guilds,
        GatewayIntentBits.GuildMessages,
        GatewayIntentBits.DirectMessages,
        GatewayIntentBits.MessageContent,
      ],
      // DM channels are not in the cache until a message arrives in them.
      partials: [Partials.Channel],
      waitGuildTimeout: this.opts.waitGuildTimeout ?? 15_000,
      ...this.opts.clientOptions,
      rest: { ...this.opts.clientOptions?.rest, api: settings.apiUrl },
    });
    this.client = client;
    this.attachEvents(client, ctx);

    ctx.setStatus('connecting');
    client.login(settings.botToken).catch((err: unknown) => {
      if (this.client !== client) return;
      const reason =
        (err as { code?: string }).code === 'TokenInvalid' ? 'invalid bot token' : `login failed: ${errorText(err)}`;
      this.log?.warn({ err: errorText(err) }, 'discord login failed');
      ctx.setStatus('error', { reason });
    });
  }

  async stop(reason: string): Promise<void> {
    for (const t of this.typingTimers.values()) t.cancel();
    this.typingTimers.clear();
    const client = this.client;
    this.client = null;
    if (!client) return;
    this.log?.info({ reason }, 'discord client stopping');
    client.removeAllListeners();
    await client.destroy();
  }

  // ---- inbound ---------------------------------------------------------------------------

  private attachEvents(client: Client, ctx: AdapterContext): void {
    const live = () => this.client === client;
    client.once(Events.ClientReady, (c) => {
      if (!live()) return;
      this.log?.info({ user: c.user.tag }, 'discord connected');
      ctx.setStatus('connected');
      void this.registerSlashCommands(c);
    });
    // After the first READY: a resumed session, or a fresh session when resuming failed.
    client.on(Events.ShardResume, () => live() && ctx.setStatus('connected'));
    client.on(Events.ShardReady, () => live() && client.isReady() && ctx.setStatus('connected'));
    client.on(Events.ShardReconnecting, () => live() && ctx.setStatus('connecting', { reason: 'reconnecting' }));
    client.on(Events.ShardDisconnect, (ev) => {
      if (!live()) return;
      // Unrecoverable close: discord.js will not reconnect by itself.
      const reason = ev.code === 4004 ? 'invalid bot token' : `gateway closed (${ev.code})`;
      ctx.setStatus(ev.code === 4004 ? 'error' : 'disconnected', { reason });
    });
    client.on(Events.ShardError, (err) => {
      if (!live()) return;
      this.log?.warn({ err: errorText(err) }, 'discord gateway error');
      ctx.setStatus('error', { reason: `gateway error: ${errorText(err)}` });
    });
    client.on(Events.Invalidated, () => live() && ctx.setStatus('disconnected', { reason: 'session invalidated' }));
    client.on(Events.Error, (err) => this.log?.warn({ err: errorText(err) }, 'discord client error'));

    client.on(Events.MessageCreate, (m) => {
      if (!live()) return;
      const msg = this.toInbound(m);
      if (!msg) return;
      // Called synchronously from the event so ingests start in gateway order.
      this.ingestQueue
        .push(ctx, msg)
        .catch((err) =>
          this.log?.error(
            { err: errorText(err), id: msg.providerMessageId },
            'discord message could not be stored after retries',
          ),
        );
    });
    client.on(Events.InteractionCreate, (i) => {
      if (live()) void this.onInteraction(i, ctx);
    });
  }

  /** Maps a gateway message to an InboundMessage, or null when it is not for us. */
  toInbound(m: Message): InboundMessage | null {
    const me = this.client?.user;
    const settings = this.settings;
    if (!me || !settings || !this.ctx) return null;
    if (m.author.bot || m.author.id === me.id || m.webhookId || m.system) return null;
    if (m.type !== MessageType.Default && m.type !== MessageType.Reply) return null;

    const inGuild = m.guildId !== null;
    const isThread = m.channel?.isThread?.() ?? false;
    const parentId = isThread && 'parentId' in m.channel ? (m.channel.parentId as string | null) : null;
    const mentioned = m.mentions.users.has(me.id);
    const repliedToBot = m.mentions.repliedUser?.id === me.id;
    if (inGuild) {
      const listen = settings.listenChannelIds;
      if (listen.length > 0 && !listen.includes(m.channelId) && !(parentId && listen.includes(parentId))) return null;
      if (settings.requireMention && !mentioned && !repliedToBot) return null;
    }

    const text = m.content
      .replace(new RegExp(`<@!?${me.id}>`, 'g'), ' ')
      .replace(/[ \t]{2,}/g, ' ')
      .trim();
    const attachments = [...m.attachments.values()];
    const contentType = contentTypeOf(attachments, m.stickers.size > 0);
    const extra: Record<string, unknown> = {};
    if (inGuild) extra.guildId = m.guildId;
    if (parentId) extra.parentChannelId = parentId;
    if (attachments.length > 0) {
      extra.attachments = attachments.map((a) => ({
        url: a.url,
        contentType: a.contentType,
        name: a.name,
        size: a.size,
      }));
    }
    if (m.reference?.messageId) extra.referencedMessageId = m.reference.messageId;

    return {
      instanceId: this.ctx.instance.id,
      providerMessageId: m.id,
      chat: { chatId: m.channelId, kind: inGuild ? 'group' : 'direct' },
      sender: { id: m.author.id, name: m.member?.displayName ?? m.author.globalName ?? m.author.username },
      text: text !== '' ? text : contentType === 'text' ? '' : `[${contentType}]`,
      contentType,
      timestamp: m.createdTimestamp,
      replyToMessageId: m.id,
      mentioned: mentioned || repliedToBot,
      extra: Object.keys(extra).length > 0 ? extra : undefined,
      // Attachment URLs are signed CDN links: the gateway fetches them as they are.
      ...(attachments.length > 0
        ? {
            media: attachments.slice(0, 10).map((a) => ({
              type: mediaKindOf(a.contentType),
              url: a.url,
              ...(a.contentType ? { mimeType: a.contentType } : {}),
              filename: a.name,
              sizeBytes: a.size,
              ...(a.description ? { caption: a.description } : {}),
            })),
          }
        : {}),
    };
  }

  private async registerSlashCommands(client: Client<true>): Promise<void> {
    const s = this.settings;
    if (!s?.slashCommandsEnabled) return;
    const appId = s.clientId ?? client.application?.id ?? client.user.id;
    if (!s.guildId) {
      this.log?.warn('discord_slash_commands_enabled without discord_guild_id: /ask not registered');
      return;
    }
    try {
      await client.rest.put(Routes.applicationGuildCommands(appId, s.guildId), { body: [ASK_COMMAND] });
      this.log?.info({ guild: s.guildId }, 'registered /ask');
    } catch (err) {
      this.log?.warn({ err: errorText(err) }, 'registering /ask failed');
    }
  }

  private async onInteraction(i: Interaction, ctx: AdapterContext): Promise<void> {
    if (!i.isChatInputCommand() || i.commandName !== ASK_COMMAND.name) return;
    const s = this.settings!;
    const listen = s.listenChannelIds;
    const channelId = i.channelId;
    const parentId = i.channel?.isThread() ? i.channel.parentId : null;
    try {
      if (i.inGuild() && listen.length > 0 && !listen.includes(channelId) && !(parentId && listen.includes(parentId))) {
        await i.reply({ content: 'I am not listening in this channel.', flags: 64 /* ephemeral */ });
        return;
      }
      // Interactions must be acknowledged within 3 s; the agent answers later through the webhook.
      await i.deferReply();
    } catch (err) {
      this.log?.warn({ err: errorText(err) }, 'discord interaction acknowledge failed');
      return;
    }
    const interaction: DiscordInteractionRef = { id: i.id, token: i.token, applicationId: i.applicationId };
    const extra: Record<string, unknown> = { interaction };
    if (i.guildId) extra.guildId = i.guildId;
    if (parentId) extra.parentChannelId = parentId;
    const msg: InboundMessage = {
      instanceId: ctx.instance.id,
      providerMessageId: i.id,
      chat: { chatId: channelId, kind: i.inGuild() ? 'group' : 'direct' },
      sender: { id: i.user.id, name: i.user.globalName ?? i.user.username },
      text: i.options.getString('message', true),
      contentType: 'text',
      timestamp: i.createdTimestamp,
      mentioned: true,
      extra,
    };
    this.ingestQueue
      .push(ctx, msg)
      .catch((err) =>
        this.log?.error(
          { err: errorText(err), id: msg.providerMessageId },
          'discord /ask could not be stored after retries',
        ),
      );
  }

  // ---- outbound --------------------------------------------------------------------------

  async send(
    to: ChatRef,
    out: OutboundMessage,
    opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt> {
    const client = this.requireClient();
    const channelId = to.threadId ?? to.chatId;
    this.takeReplySlot(channelId, opts.idempotencyKey);

    if (out.reaction) {
      return this.call(async () => {
        await client.rest.put(
          Routes.channelMessageOwnReaction(channelId, out.reaction!.messageId, encodeURIComponent(out.reaction!.emoji)),
        );
        return { platformMessageId: out.reaction!.messageId };
      });
    }

    let text = out.text;
    const files: Array<{ name: string; data: Buffer }> = [];
    if (out.media) {
      const caption = out.media.caption ?? '';
      if (out.media.base64) {
        files.push({
          name: out.media.filename ?? defaultFilename(out.media.mediaType),
          data: Buffer.from(out.media.base64, 'base64'),
        });
        text = [text, caption].filter(Boolean).join('\n');
      } else if (out.media.url) {
        // Discord unfurls links to media; no need to re-upload.
        text = [text, caption, out.media.url].filter(Boolean).join('\n');
      }
    }
    if (text.trim() === '' && files.length === 0) throw new ChannelError('empty message', false);

    // The pipeline pre-chunks; this keeps direct callers within Discord's limits too.
    const pieces =
      text.trim() === '' ? [''] : chunkText(text, { maxChars: DISCORD_MAX_CHARS, maxLines: DISCORD_MAX_LINES });
    const interaction = interactionOf(opts.inbound);
    let firstId: string | null = null;
    for (let index = 0; index < pieces.length; index++) {
      const content = pieces[index];
      const pieceFiles = index === 0 ? files : [];
      const id = interaction
        ? await this.sendInteractionPiece(interaction, index, content, pieceFiles)
        : await this.sendChannelPiece(
            channelId,
            content,
            pieceFiles,
            nonceFor(opts.idempotencyKey, index),
            index === 0 ? out.replyTo : undefined,
          );
      firstId ??= id;
    }
    return { platformMessageId: firstId! };
  }

  private sendChannelPiece(
    channelId: string,
    content: string,
    files: Array<{ name: string; data: Buffer }>,
    nonce: string,
    replyTo?: string,
  ): Promise<string> {
    const client = this.requireClient();
    const body: Record<string, unknown> = {
      content,
      nonce,
      enforce_nonce: true,
      // Agent text must not ping @everyone/@here or roles; replying still notifies the asker.
      allowed_mentions: { parse: ['users'], replied_user: true },
    };
    if (replyTo) body.message_reference = { message_id: replyTo, fail_if_not_exists: false };
    return this.call(async () => {
      const res = (await client.rest.post(Routes.channelMessages(channelId), {
        body,
        files: files.length ? files : undefined,
      })) as { id: string };
      return res.id;
    });
  }

  /** First piece replaces the deferred "thinking…" response (idempotent); the rest are follow-ups. */
  private sendInteractionPiece(
    ref: DiscordInteractionRef,
    index: number,
    content: string,
    files: Array<{ name: string; data: Buffer }>,
  ): Promise<string> {
    const client = this.requireClient();
    const body = { content, allowed_mentions: { parse: ['users'] } };
    const f = files.length ? files : undefined;
    return this.call(async () => {
      const res = (
        index === 0
          ? await client.rest.patch(Routes.webhookMessage(ref.applicationId, ref.token, '@original'), {
              body,
              files: f,
              auth: false,
            })
          : await client.rest.post(Routes.webhook(ref.applicationId, ref.token), { body, files: f, auth: false })
      ) as { id: string };
      this.interactionMessages.set(res.id, ref);
      return res.id;
    });
  }

  async edit(to: ChatRef, platformMessageId: string, text: string): Promise<void> {
    const client = this.requireClient();
    if (text.length > DISCORD_MAX_CHARS)
      throw new ChannelError(`edit longer than ${DISCORD_MAX_CHARS} characters`, false);
    const ref = this.interactionMessages.get(platformMessageId);
    await this.call(() =>
      ref
        ? client.rest.patch(Routes.webhookMessage(ref.applicationId, ref.token, platformMessageId), {
            body: { content: text },
            auth: false,
          })
        : client.rest.patch(Routes.channelMessage(to.threadId ?? to.chatId, platformMessageId), {
            body: { content: text },
          }),
    );
  }

  /** Best effort: a failed typing indicator never fails the reply. */
  async typing(to: ChatRef, on: boolean, inbound?: InboundMessage): Promise<void> {
    const channelId = to.threadId ?? to.chatId;
    const existing = this.typingTimers.get(channelId);
    if (!on) {
      existing?.cancel();
      this.typingTimers.delete(channelId);
      return;
    }
    // A deferred interaction already shows "thinking…".
    if (existing || interactionOf(inbound)) return;
    const pulse = () => {
      const client = this.client;
      if (!client) return;
      client.rest
        .post(Routes.channelTyping(channelId))
        .catch((err) => this.log?.debug({ err: errorText(err) }, 'discord typing failed'));
      this.typingTimers.set(channelId, this.clock.setTimeout(pulse, TYPING_REFRESH_MS));
    };
    pulse();
  }

  /** Bot-loop guard: at most N distinct replies per conversation per minute. */
  private takeReplySlot(conversation: string, partKey: string): void {
    // The pipeline keys each part of one reply `<reply key>:<part>`: a long reply is one reply.
    const key = partKey.replace(/:\d+$/, '');
    const now = this.clock.monotonic();
    const recent = (this.recentReplies.get(conversation) ?? []).filter((r) => now - r.at < RATE_WINDOW_MS);
    if (recent.some((r) => r.key === key)) return; // a retry or another part of the same reply is not a new reply
    const cap = this.settings?.maxRepliesPerMinute ?? 20;
    if (recent.length >= cap) {
      this.recentReplies.set(conversation, recent);
      // Retryable: the conversation calms down, the slot frees up, and the reply still goes out.
      throw new ChannelError(
        `reply rate cap reached (${cap} replies per minute in this conversation)`,
        true,
        RATE_WINDOW_MS - (now - recent[0]!.at),
      );
    }
    recent.push({ at: now, key });
    this.recentReplies.set(conversation, recent);
  }

  private requireClient(): Client {
    if (!this.client) throw new ChannelError('discord client is not started', true);
    return this.client;
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toChannelError(err);
    }
  }
}

function interactionOf(inbound?: InboundMessage): DiscordInteractionRef | null {
  const ref = inbound?.extra?.interaction as DiscordInteractionRef | undefined;
  return ref && typeof ref.token === 'string' && typeof ref.applicationId === 'string' ? ref : null;
}

function contentTypeOf(attachments: Attachment[], hasSticker: boolean): ContentType {
  if (attachments.length === 0) return hasSticker ? 'sticker' : 'text';
  return mediaKindOf(attachments[0].contentType);
}

function mediaKindOf(contentType: string | null): 'image' | 'video' | 'audio' | 'document' {
  const type = contentType ?? '';
  if (type.startsWith('image/')) return 'image';
  if (type.startsWith('video/')) return 'video';
  if (type.startsWith('audio/')) return 'audio';
  return 'document';
}

function defaultFilename(kind: 'image' | 'video' | 'audio' | 'document'): string {
  return { image: 'image.png', video: 'video.mp4', audio: 'audio.ogg', document: 'file.bin' }[kind];
}

/** REST failures → ChannelError: 429/5xx/network are retryable, other 4xx are not. */
export function toChannelError(err: unknown): ChannelError {
  if (err instanceof ChannelError) return err;
  if (err instanceof RateLimitError)
    return new ChannelError(`discord rate limited: ${err.message}`, true, err.retryAfter, 429);
  if (err instanceof DiscordAPIError) {
    const raw = err.rawError as { retry_after?: number };
    const retryAfterMs = typeof raw?.retry_after === 'number' ? Math.ceil(raw.retry_after * 1000) : undefined;
    const retryable = err.status === 429 || err.status >= 500;
    return new ChannelError(
      `discord ${err.status} (code ${err.code}): ${err.message}`,
      retryable,
      retryAfterMs,
      err.status,
    );
  }
  if (err instanceof HTTPError) {
    return new ChannelError(
      `discord HTTP ${err.status}: ${err.message}`,
      err.status === 429 || err.status >= 500,
      undefined,
      err.status,
    );
  }
  return new ChannelError(`discord request failed: ${errorText(err)}`, true);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
