// Messages as the gateway sees them, whatever the channel: where they come from and go to (chat
// address), what arrives (inbound) and what is sent back (outbound).

/** A channel kind (an instance's "channel"). The valid kinds are the definitions in src/channels/registry.ts. */
export type ChannelKind = string;

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
  /** Recorded (trace, events) but not a turn: no access check, no agent call. Why, for the trace (e.g. an edit). */
  recordOnly?: string;
  /** Channel-specific extras the adapter needs again at send time (e.g. Evolution `quoted`). */
  extra?: Record<string, unknown>;
  /** Media the message carries; the gateway fetches the bytes before the agent call (src/media). */
  media?: InboundMedia[];
}

export type MediaKind = 'image' | 'video' | 'audio' | 'document' | 'sticker';

/**
 * One media item of an inbound message as the channel reported it. What the sender says (type,
 * mimeType, sizeBytes) is a hint only: the media store sniffs the bytes. The bytes come from the
 * first of: `staged` (bytes the webhook carried, written to the media store at ingest), `ref` (the
 * running adapter's fetchMedia), `url` (fetched as is, without credentials).
 */
export interface InboundMedia {
  type: MediaKind;
  mimeType?: string;
  filename?: string;
  caption?: string;
  /** Declared size: an item declared larger than the instance's limit is not downloaded. */
  sizeBytes?: number;
  voiceNote?: boolean;
  /**
   * Bytes the webhook carried (Evolution with webhook_base64). A parser sets it NON-enumerable
   * (never serialised into the inbox row); ingest stages it into the media store as `staged`.
   */
  base64?: string;
  /** SHA-256 of the bytes staged in the media store at ingest. */
  staged?: string;
  url?: string;
  /** The channel's own reference (ids, paths), for ChannelAdapter.fetchMedia. */
  ref?: Record<string, unknown>;
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
    /** Known type of the bytes (media of an agent reply: sniffed by the media store). */
    mimeType?: string;
  };
  reaction?: { messageId: string; emoji: string };
  /** A pre-approved message template (channels with capabilities.templates). */
  template?: OutboundTemplate;
}

/** A platform message template: its name, language code and the filled-in components. */
export interface OutboundTemplate {
  name: string;
  language: string;
  components?: unknown[];
}

/** What the platform later reported about a message we sent (delivery receipts). */
export interface DeliveryStatus {
  /** The platform's id of the sent message (an outbox row's platform_message_id). */
  platformMessageId: string;
  status: 'sent' | 'delivered' | 'read' | 'failed';
  /** Platform time in ms. */
  timestamp: number;
  /** For `failed`: the platform's error code and reason. */
  error?: { code: number | null; reason: string };
}

/** The durable inbox's answer to one inbound message. */
export interface IngestResult {
  status: 'accepted' | 'duplicate';
  traceId: string;
}
