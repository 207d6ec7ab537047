// The small interface every channel implements. An adapter is driven by its instance actor
// (actors/instance.ts); inbound messages go to ctx.ingest (the durable inbox), never to an actor.
import type { Logger } from 'pino';
import type { Instance, InstanceStatus } from '../core/instance.ts';
import type { ChannelKind, ChatRef, InboundMessage, IngestResult, OutboundMessage } from '../core/message.ts';

// The domain types and ChannelError live in src/core; re-exported for the adapters.
export { ChannelError } from '../core/errors.ts';
export {
  CHANNEL_KINDS,
  type ChannelKind,
  type ChatRef,
  type ContentType,
  type InboundMessage,
  type IngestResult,
  type OutboundMessage,
} from '../core/message.ts';

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

export interface SentReceipt {
  platformMessageId: string;
}

export interface AdapterContext {
  instance: Instance;
  log: Logger;
  /** Durable inbox write; resolves after the commit. Throws Overloaded (src/core/errors.ts) when the global bound is hit. */
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
