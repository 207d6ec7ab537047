// WhatsApp through Meta's Cloud API. Webhook-only inbound: the route hands the raw request to the
// running adapter, which checks Meta's signature over the raw bytes BEFORE parsing, then writes the
// messages to the inbox and the receipts to the outbox, and only then answers 200 (Meta redelivers
// anything not acked). Outbound goes through the Graph API client (the gateway's outbound fetch).
import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';
import { type Clock, realClock } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { Instance } from '../../core/instance.ts';
import type { ChatRef, InboundMedia, InboundMessage, OutboundMessage } from '../../core/message.ts';
import { constantTimeEqual } from '../../services/ids.ts';
import { isOverloaded } from '../ingest-retry.ts';
import type {
  AdapterContext,
  ChannelAdapter,
  ChannelCapabilities,
  FetchedMedia,
  MediaFetchOptions,
  SentReceipt,
  WebhookAnswer,
} from '../types.ts';
import {
  type CloudCallOptions,
  type CloudConfig,
  cloudConfigOf,
  downloadMedia,
  GraphError,
  META_ERRORS,
  markRead,
  phoneNumberInfo,
  sendMessage,
  uploadMedia,
} from './client.ts';
import { interactiveOf } from './interactive.ts';
import { parseCloudWebhook, waIdOfChat } from './parse.ts';

export const CLOUD_MAX_TEXT = 4096;

export const CLOUD_CAPABILITIES: ChannelCapabilities = {
  maxText: CLOUD_MAX_TEXT,
  edit: false,
  typing: true,
  threads: false,
  reactions: true,
  media: ['image', 'video', 'audio', 'document'],
  pairing: 'token',
  templates: true,
};

/** Meta's caption limit: a longer reply text does not ride along with media. */
const MAX_CAPTION = 1024;

const MIME_BY_TYPE: Record<string, string> = {
  image: 'image/jpeg',
  video: 'video/mp4',
  audio: 'audio/ogg',
  document: 'application/pdf',
};

/** True when `header` (X-Hub-Signature-256) is `sha256=` + the HMAC-SHA256 of the raw body with the app secret. */
export function validSignature(rawBody: string, header: string | null, appSecret: string): boolean {
  if (!header || !appSecret) return false;
  const expected = `sha256=${createHmac('sha256', appSecret).update(rawBody, 'utf8').digest('hex')}`;
  return constantTimeEqual(header.trim().toLowerCase(), expected);
}

/** The answer to Meta's GET subscription check (hub.mode=subscribe with our verify token). */
export function handshakeAnswer(verifyToken: unknown, query: Record<string, string | undefined>): string | null {
  const token = query['hub.verify_token'];
  const ok =
    query['hub.mode'] === 'subscribe' &&
    typeof verifyToken === 'string' &&
    verifyToken.length > 0 &&
    typeof token === 'string' &&
    constantTimeEqual(token, verifyToken);
  return ok ? (query['hub.challenge'] ?? '') : null;
}

const errorBody = (code: string, message: string) => ({ error: { code, message, details: null } });

export interface CloudAdapterOptions {
  fetch: typeof fetch;
  clock?: Clock;
  log?: Logger;
  /** WHATSAPP_CLOUD_API_URL: the Graph API base for instances that set none. */
  defaultApiUrl?: string | null;
  timeoutMs?: number;
}

export class WhatsAppCloudAdapter implements ChannelAdapter {
  readonly kind = 'whatsapp-cloud' as const;
  readonly capabilities = CLOUD_CAPABILITIES;
  private ctx: AdapterContext | null = null;

  constructor(
    private instance: Instance,
    private readonly opts: CloudAdapterOptions,
  ) {}

  private config(): CloudConfig {
    return cloudConfigOf(this.instance, this.opts.defaultApiUrl);
  }

  private callOpts(): CloudCallOptions {
    return { fetch: this.opts.fetch, clock: this.opts.clock ?? realClock, timeoutMs: this.opts.timeoutMs };
  }

  private get log(): Logger | undefined {
    return this.opts.log ?? this.ctx?.log;
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    this.instance = ctx.instance;
    try {
      await phoneNumberInfo(this.config(), this.callOpts());
      ctx.setStatus('connected');
    } catch (err) {
      // Webhook-only: the webhook keeps working; sends retry on their own.
      this.reportFailure(err);
      if (!(err instanceof GraphError && err.code === META_ERRORS.token))
        ctx.setStatus('error', { reason: (err as Error).message });
    }
  }

  async stop(_reason: string): Promise<void> {
    this.ctx = null;
  }

  /** A received message's media by its Meta media id (lookup, then the short-lived URL). */
  async fetchMedia(item: InboundMedia, opts: MediaFetchOptions): Promise<FetchedMedia> {
    const mediaId = (item.ref as { mediaId?: unknown } | undefined)?.mediaId;
    if (typeof mediaId !== 'string') throw new ChannelError('the message has no media id', false);
    return downloadMedia(this.config(), mediaId, { ...this.callOpts(), maxBytes: opts.maxBytes, signal: opts.signal });
  }

  /** A token Meta refused needs a person: the instance says so until it gets a new one. */
  private reportFailure(err: unknown): void {
    if (err instanceof GraphError && err.code === META_ERRORS.token)
      this.ctx?.setStatus('logged_out', { reason: err.message });
  }

  async send(
    to: ChatRef,
    out: OutboundMessage,
    _opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt> {
    if (to.kind === 'group') throw new ChannelError('the Cloud API does not send to groups', false);
    const recipient = waIdOfChat(to.chatId);
    if (!recipient) throw new ChannelError(`not a phone number: ${to.chatId}`, false);
    try {
      const message = await this.messageFor(out);
      const context = out.replyTo && !out.reaction ? { context: { message_id: out.replyTo } } : {};
      const id = await sendMessage(this.config(), { to: recipient, ...context, ...message }, this.callOpts());
      return { platformMessageId: id };
    } catch (err) {
      this.reportFailure(err);
      throw err;
    }
  }

  /** The Cloud API message object (type + its body) for what is being sent. */
  private async messageFor(out: OutboundMessage): Promise<Record<string, unknown>> {
    if (out.template) {
      const t = out.template;
      return {
        type: 'template',
        template: {
          name: t.name,
          language: { code: t.language },
          ...(t.components?.length ? { components: t.components } : {}),
        },
      };
    }
    if (out.reaction) {
      return { type: 'reaction', reaction: { message_id: out.reaction.messageId, emoji: out.reaction.emoji } };
    }
    const text = out.text ?? '';
    if (out.media) {
      const m = out.media;
      const caption = m.caption ?? (text && text.length <= MAX_CAPTION ? text : undefined);
      let source: Record<string, string>;
      if (m.url) source = { link: m.url };
      else if (m.base64) {
        // Bytes from the caller: uploaded first, then sent by the media id Meta gives back.
        const mimeType = m.mimeType ?? MIME_BY_TYPE[m.mediaType] ?? 'application/octet-stream';
        const id = await uploadMedia(
          this.config(),
          { bytes: Buffer.from(m.base64, 'base64'), mimeType, filename: m.filename ?? m.mediaType },
          this.callOpts(),
        );
        source = { id };
      } else throw new ChannelError('media without url or base64', false);
      return {
        type: m.mediaType,
        [m.mediaType]: {
          ...source,
          // Audio takes no caption; a document also shows its file name.
          ...(caption && m.mediaType !== 'audio' ? { caption } : {}),
          ...(m.mediaType === 'document' && m.filename ? { filename: m.filename } : {}),
        },
      };
    }
    if (!text.trim()) throw new ChannelError('nothing to send: empty reply', false);
    const interactive = interactiveOf(text);
    if (interactive) return { type: 'interactive', interactive };
    const preview = this.instance.config.preview_url === true;
    return { type: 'text', text: { body: text, preview_url: preview } };
  }

  /**
   * Marks the user's message read and shows "typing…" (Meta clears it when we answer, or after
   * 25 s). Best effort: never throws. There is no "stop typing" call.
   */
  async typing(_to: ChatRef, on: boolean, inbound?: InboundMessage): Promise<void> {
    const id = inbound?.providerMessageId;
    if (!on || !id?.startsWith('wamid.')) return;
    try {
      await markRead(this.config(), id, true, this.callOpts());
    } catch (err) {
      this.reportFailure(err);
      this.log?.debug({ err: (err as Error).message }, 'cloud api: mark as read failed');
    }
  }

  /** POST /webhook/whatsapp-cloud/:instance, raw: signature first, then parse, store, and only then ack. */
  async handleWebhook(rawBody: string, headers: Headers): Promise<WebhookAnswer> {
    const secret = typeof this.instance.config.app_secret === 'string' ? this.instance.config.app_secret : '';
    if (!validSignature(rawBody, headers.get('x-hub-signature-256'), secret))
      return { status: 401, body: errorBody('UNAUTHORIZED', 'invalid Cloud API request signature') };
    let body: unknown;
    try {
      body = JSON.parse(rawBody);
    } catch {
      return { status: 400, body: errorBody('VALIDATION_ERROR', 'body is not JSON') };
    }
    const ctx = this.ctx;
    if (!ctx)
      return {
        status: 503,
        body: errorBody('UNAVAILABLE', 'WhatsApp Cloud API instance is not running'),
        headers: { 'retry-after': '5' },
      };
    const phoneNumberId =
      typeof this.instance.config.phone_number_id === 'string' ? this.instance.config.phone_number_id : undefined;
    const { messages, statuses, ignored } = parseCloudWebhook(body, this.instance.id, { phoneNumberId });
    try {
      // Queued in order in the same group commit; answered once every write is durable.
      const results = await Promise.all(messages.map((m) => ctx.ingest(m)));
      for (const s of statuses) await ctx.deliveryStatus?.(s);
      const accepted = results.filter((r) => r.status === 'accepted').length;
      const duplicates = results.length - accepted;
      const parts = [
        messages.length ? `${accepted} of ${messages.length} messages accepted` : null,
        duplicates ? `${duplicates} already received` : null,
        statuses.length ? `${statuses.length} statuses` : null,
        ignored.length ? `ignored: ${ignored.slice(0, 10).join('; ')}` : null,
      ].filter(Boolean);
      return {
        status: 200,
        body: {
          status: messages.length === 0 ? 'ignored' : accepted === 0 ? 'duplicate' : 'received',
          trace_id: results[0]?.traceId ?? null,
          message: parts.join(', ') || 'nothing to process',
        },
      };
    } catch (err) {
      // Not acked: Meta redelivers the whole notification (the messages stored so far dedupe by wamid).
      if (isOverloaded(err))
        return {
          status: 503,
          body: errorBody('UNAVAILABLE', 'Gateway overloaded; retry later'),
          headers: { 'retry-after': '5' },
        };
      this.log?.error({ err: (err as Error).message }, 'cloud api: webhook not stored');
      return { status: 500, body: errorBody('INTERNAL_ERROR', 'webhook not stored; retry later') };
    }
  }
}
