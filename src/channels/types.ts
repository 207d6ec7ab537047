// The small interface every channel implements. An adapter is driven by its instance actor
// (actors/instance.ts); inbound messages go to ctx.ingest (the durable inbox), never to an actor.
import type { Logger } from 'pino';
import type { Instance, InstanceStatus } from '../services/instance-types.ts';

export type ChannelKind = 'whatsapp-evolution' | 'whatsapp-baileys' | 'discord' | 'slack' | 'api';
export const CHANNEL_KINDS: ChannelKind[] = ['whatsapp-evolution', 'whatsapp-baileys', 'discord', 'slack', 'api'];

export interface ChannelCapabilities {
  maxText: number;
  maxLines?: number;
  edit: boolean;
  typing: boolean;
  threads: boolean;
  reactions: boolean;
  media: Array<'image' | 'video' | 'audio' | 'document' | 'sticker'>;
  pairing: 'qr' | 'qr+code' | 'token' | 'none';
}

export type ContentType =
  | 'text'
  | 'image'
  | 'video'
  | 'audio'
  | 'document'
  | 'sticker'
  | 'location'
  | 'contact'
  | 'poll'
  | 'reaction'
  | 'other';

/** Where a reply goes. `chatId` is the platform's chat/channel id; `threadId` a thread inside it. */
export interface ChatRef {
  chatId: string;
  threadId?: string;
  kind: 'direct' | 'group';
}

export interface InboundMessage {
  instanceId: string;
  /** Unique per instance (WhatsApp key.id, Discord message id, Slack event_id / ts). */
  providerMessageId: string;
  chat: ChatRef;
  sender: {
    id: string; // platform user id (WhatsApp JID, Discord user id, Slack user id)
    name?: string;
    phone?: string; // E.164 digits with +, when known
    altId?: string; // e.g. LID <-> phone JID alias reported by the platform
  };
  text: string;
  contentType: ContentType;
  /** Platform timestamp in ms. */
  timestamp: number;
  /** The platform message to reply to/quote (defaults to providerMessageId's own message). */
  replyToMessageId?: string;
  /** True when the bot was mentioned or replied to (group gating). */
  mentioned?: boolean;
  /** Sent by the account owner (e.g. WhatsApp fromMe from the phone); used for human takeover. */
  fromOwner?: boolean;
  /** Channel-specific extras the adapter needs again at send time (e.g. Evolution `quoted`). */
  extra?: Record<string, unknown>;
}

export interface OutboundMessage {
  text: string;
  /** Platform id of the message to reply to / quote. */
  replyTo?: string;
  media?: {
    url?: string;
    base64?: string;
    mediaType: 'image' | 'video' | 'audio' | 'document';
    caption?: string;
    filename?: string;
    voiceNote?: boolean;
  };
  reaction?: { messageId: string; emoji: string };
}

export interface SentReceipt {
  platformMessageId: string;
}

export interface IngestResult {
  status: 'accepted' | 'duplicate';
  traceId: string;
}

export interface AdapterContext {
  instance: Instance;
  log: Logger;
  /** Durable inbox write; resolves after the commit. Throws OverloadedError when the global bound is hit. */
  ingest(msg: InboundMessage): Promise<IngestResult>;
  /** Report connection status (and QR / pairing details) to the instance actor. */
  setStatus(
    status: InstanceStatus,
    detail?: { reason?: string; qr?: string | null; pairingCode?: string | null },
  ): void;
}

export interface ChannelAdapter {
  readonly kind: ChannelKind;
  readonly capabilities: ChannelCapabilities;
  /** Connect (sockets) or nothing (webhook-only). Must not throw for remote failures: report via setStatus. */
  start(ctx: AdapterContext): Promise<void>;
  stop(reason: string): Promise<void>;
  send(
    to: ChatRef,
    out: OutboundMessage,
    opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt>;
  /** Edit a previously sent message (capabilities.edit). */
  edit?(to: ChatRef, platformMessageId: string, text: string): Promise<void>;
  /** Typing / "thinking" indicator while the agent works. */
  typing?(to: ChatRef, on: boolean, inbound?: InboundMessage): Promise<void>;
}

/** A channel call failed. `retryable` false for permanent errors (4xx other than 429). */
export class ChannelError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ChannelError';
  }
}
