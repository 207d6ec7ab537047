// WhatsApp through an Evolution API server. Webhook-only: inbound arrives on the HTTP route (see
// parse.ts); this adapter checks the connection once on start and sends replies through the client.
import type { Logger } from 'pino';
import type { Clock } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { Instance, InstanceStatus } from '../../core/instance.ts';
import type { ChatRef, InboundMedia, InboundMessage, OutboundMessage } from '../../core/message.ts';
import { RecentMap } from '../../core/recent-map.ts';
import { decodeBase64Bounded } from '../../net/bounded-read.ts';
import { chunkText } from '../../stream/chunker.ts';
import type {
  AdapterContext,
  ChannelAdapter,
  ChannelCapabilities,
  FetchedMedia,
  MediaFetchOptions,
  SentReceipt,
} from '../types.ts';
import {
  connectionState,
  type EvolutionCallOptions,
  type EvolutionQuoted,
  evolutionConfigOf,
  evolutionFlag,
  evolutionNumberFor,
  mediaBase64,
  sendMedia,
  sendPresence,
  sendReaction,
  sendText,
} from './client.ts';

export const EVOLUTION_MAX_TEXT = 4000;

export const EVOLUTION_CAPABILITIES: ChannelCapabilities = {
  maxText: EVOLUTION_MAX_TEXT,
  edit: false,
  typing: true,
  threads: false,
  reactions: true,
  media: ['image', 'video', 'audio', 'document'],
  pairing: 'qr',
};

export interface EvolutionAdapterOptions {
  /** Per-call timeout (default 15 s). */
  timeoutMs?: number;
  clock?: Clock;
  fetch?: typeof fetch;
  log?: Logger;
  /** How long Evolution shows "typing…" per sendPresence (Evolution holds the request that long). */
  typingMs?: number;
}

/** Maps Evolution's connection state to ours. */
export function statusOfEvolutionState(state: string): InstanceStatus {
  if (state === 'open') return 'connected';
  if (state === 'connecting') return 'connecting';
  if (state === 'close' || state === 'closed') return 'disconnected';
  return 'error';
}

// Chunks already delivered per idempotency key, so a retried send resumes after the last delivered
// chunk instead of repeating the first ones. Bounded: a retry comes soon after its failure.
const PROGRESS_LIMIT = 1000;

export class EvolutionAdapter implements ChannelAdapter {
  readonly kind = 'whatsapp-evolution' as const;
  readonly capabilities = EVOLUTION_CAPABILITIES;
  private instance: Instance;
  private log?: Logger;
  private readonly progress = new RecentMap<string, { sent: number; lastId: string }>(PROGRESS_LIMIT);

  constructor(
    instance: Instance,
    private readonly opts: EvolutionAdapterOptions = {},
  ) {
    this.instance = instance;
    this.log = opts.log;
  }

  /** Picks up edited settings without recreating the adapter. */
  updateInstance(instance: Instance): void {
    this.instance = instance;
  }

  private callOpts(extra: Partial<EvolutionCallOptions> = {}): EvolutionCallOptions {
    return { timeoutMs: this.opts.timeoutMs, clock: this.opts.clock, fetch: this.opts.fetch, ...extra };
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.instance = ctx.instance;
    this.log = this.opts.log ?? ctx.log;
    try {
      const cfg = evolutionConfigOf(this.instance);
      const state = await connectionState(cfg, this.callOpts());
      const status = statusOfEvolutionState(state);
      ctx.setStatus(status, status === 'error' ? { reason: `Evolution reports state "${state}"` } : undefined);
    } catch (err) {
      // Webhook-only: a failed check must not stop the instance; sends will retry on their own.
      ctx.setStatus('error', { reason: err instanceof Error ? err.message : String(err) });
    }
  }

  async stop(_reason: string): Promise<void> {}

  /** A received message's media through Evolution (the webhook came without `base64`). */
  async fetchMedia(item: InboundMedia, opts: MediaFetchOptions): Promise<FetchedMedia> {
    const key = item.ref as { id: string; remoteJid?: string; fromMe?: boolean };
    const got = await mediaBase64(evolutionConfigOf(this.instance), key, this.callOpts({ signal: opts.signal }));
    return { bytes: decodeBase64Bounded(got.base64, opts.maxBytes), mimeType: got.mimeType, filename: got.filename };
  }

  async send(
    to: ChatRef,
    out: OutboundMessage,
    opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt> {
    const cfg = evolutionConfigOf(this.instance);
    const number = evolutionNumberFor(to.chatId);
    const delayMs = Number(this.instance.config.evolution_send_delay_ms ?? 0);
    const delay = Number.isFinite(delayMs) && delayMs > 0 ? Math.round(delayMs) : undefined;

    if (out.reaction) {
      const remoteJid = (opts.inbound?.extra?.remoteJid as string | undefined) ?? to.chatId;
      const id = await sendReaction(
        cfg,
        { remoteJid, id: out.reaction.messageId, fromMe: false },
        out.reaction.emoji,
        this.callOpts(),
      );
      return { platformMessageId: id ?? '' };
    }

    const quoted = evolutionFlag(this.instance, 'evolution_quote_replies')
      ? this.quotedFor(to, out, opts.inbound)
      : undefined;
    const maxText = this.instance.settings.maxTextLength ?? EVOLUTION_MAX_TEXT;
    // Each step sends one WhatsApp message; only the first one quotes the inbound message.
    const parts: Array<(q?: EvolutionQuoted) => Promise<string | null>> = [];
    let text = out.text ?? '';

    if (out.media) {
      const m = out.media;
      const mediaSource = m.url ?? m.base64;
      if (!mediaSource) throw new ChannelError('media without url or base64', false);
      // A short reply rides along as the caption; a longer one follows as text.
      let captionText = m.caption;
      if (captionText === undefined && text.length <= 1000) {
        captionText = text;
        text = '';
      }
      parts.push((q) =>
        sendMedia(
          cfg,
          number,
          {
            mediatype: m.mediaType,
            media: mediaSource,
            caption: captionText || undefined,
            fileName: m.filename,
          },
          { quoted: q, delay },
          this.callOpts(),
        ),
      );
    }
    for (const chunk of chunkText(text, { maxChars: maxText })) {
      parts.push((q) => sendText(cfg, number, chunk, { quoted: q, delay }, this.callOpts()));
    }
    if (parts.length === 0) throw new ChannelError('nothing to send: empty reply', false);

    const done = this.progress.get(opts.idempotencyKey) ?? { sent: 0, lastId: '' };
    for (let i = done.sent; i < parts.length; i++) {
      const id = await parts[i](i === 0 ? quoted : undefined);
      done.sent = i + 1;
      done.lastId = id ?? done.lastId;
      this.progress.set(opts.idempotencyKey, done);
    }
    this.progress.delete(opts.idempotencyKey);
    return { platformMessageId: done.lastId };
  }

  private quotedFor(to: ChatRef, out: OutboundMessage, inbound?: InboundMessage): EvolutionQuoted | undefined {
    const id = out.replyTo ?? inbound?.providerMessageId;
    if (!id) return undefined;
    const remoteJid = (inbound?.extra?.remoteJid as string | undefined) ?? to.chatId;
    const participant = inbound?.extra?.participant as string | undefined;
    return {
      key: { id, remoteJid, fromMe: false, ...(participant ? { participant } : {}) },
      message: { conversation: inbound && inbound.providerMessageId === id ? inbound.text : '' },
    };
  }

  /** Best effort: never throws; does not wait for Evolution, which holds the request for the presence delay. */
  async typing(to: ChatRef, on: boolean): Promise<void> {
    let cfg;
    try {
      cfg = evolutionConfigOf(this.instance);
    } catch {
      return;
    }
    const delay = on ? (this.opts.typingMs ?? 8000) : 0;
    sendPresence(
      cfg,
      evolutionNumberFor(to.chatId),
      on ? 'composing' : 'paused',
      delay,
      this.callOpts({ timeoutMs: delay + 5000 }),
    ).catch((err) =>
      this.log?.debug({ err: err instanceof Error ? err.message : String(err) }, 'evolution sendPresence failed'),
    );
  }
}
