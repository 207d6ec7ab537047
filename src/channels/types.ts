// What a channel is to the rest of the gateway: the adapter interface every channel implements
// (driven by its instance actor, actors/instance.ts; inbound messages go to ctx.ingest, the durable
// inbox, never to an actor) and the ChannelDefinition each channel folder exports (registry.ts).
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { Config } from '../config.ts';
import type { ChannelConfig, Instance, InstanceStatus } from '../core/instance.ts';
import type {
  ChannelKind,
  ChatRef,
  DeliveryStatus,
  InboundMedia,
  InboundMessage,
  IngestResult,
  OutboundMessage,
} from '../core/message.ts';
import type { ChannelPublicRoutes } from './public.ts';
import type { SocketFactory } from './whatsapp/socket.ts';

export interface ChannelCapabilities {
  maxText: number;
  maxLines?: number;
  edit: boolean;
  typing: boolean;
  threads: boolean;
  reactions: boolean;
  media: Array<'image' | 'video' | 'audio' | 'document' | 'sticker'>;
  pairing: 'qr' | 'qr+code' | 'token' | 'none';
  /** Sends pre-approved templates (POST /api/v2/messages/template). */
  templates?: boolean;
}

export interface SentReceipt {
  platformMessageId: string;
}

export interface AdapterContext {
  instance: Instance;
  log: Logger;
  /** Durable inbox write; resolves after the commit. Throws Overloaded (src/core/errors.ts) when the global bound is hit. */
  ingest(msg: InboundMessage): Promise<IngestResult>;
  /**
   * Records a delivery receipt (sent/delivered/read/failed) on the outbox row of the message it is
   * about and on that message's trace; resolves after the write. Absent where nothing records them.
   */
  deliveryStatus?(status: DeliveryStatus): Promise<void>;
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
    opts: {
      idempotencyKey: string;
      inbound?: InboundMessage;
      /** The reply's last part: nothing more of it is sent (cluster mode acknowledges its hand-off entry at once). */
      lastPart?: boolean;
    },
  ): Promise<SentReceipt>;
  /** Edit a previously sent message (capabilities.edit). */
  edit?(to: ChatRef, platformMessageId: string, text: string): Promise<void>;
  /** Typing / "thinking" indicator while the agent works. */
  typing?(to: ChatRef, on: boolean, inbound?: InboundMessage): Promise<void>;
  /**
   * Fetches the bytes of an inbound media item that has a `ref` (src/media calls it before the
   * agent call). Through the outbound policy, never more than `maxBytes` (throw MediaTooLarge from
   * src/net/bounded-read.ts), aborted by `signal`. A ChannelError says whether a retry may help.
   */
  fetchMedia?(item: InboundMedia, opts: MediaFetchOptions): Promise<FetchedMedia>;
}

export interface MediaFetchOptions {
  maxBytes: number;
  signal: AbortSignal;
}

export interface FetchedMedia {
  bytes: Uint8Array;
  /** What the platform says the type is (a hint: the store sniffs the bytes). */
  mimeType?: string;
  filename?: string;
}

// ---- the channel definition ----

/** How a channel field's value is checked (services/instances.ts) and described (API schemas). */
export type FieldType = 'string' | 'secret' | 'bool' | 'int' | 'number' | 'http' | 'ws' | 'strings' | 'intOrString';

/** One field of an instance's channel config. Stored under its v1 name. */
export interface ChannelField {
  /** v1 (snake_case) name, e.g. discord_bot_token; also the stored key. */
  v1: string;
  /** v2 (camelCase) name in channelConfig, e.g. discordBotToken. */
  v2: string;
  type: FieldType;
  /** A secret: never shown in full (the views mask it, the logs redact it). */
  secret: boolean;
  /** Must be set for the instance to be valid. */
  required?: boolean;
  /** An endpoint: these secrets go to it, so they are dropped when it changes (unless given again). */
  receives?: string[];
  /** Environment variable used when the instance leaves the field unset. */
  env?: string;
  /**
   * Environment variable whose value a v1 create that leaves the field unset takes (stored with
   * the instance), as the v1 guide's .env does; set, it also makes a v1 create without a channel
   * this channel rather than the fallback.
   */
  v1Default?: string;
  /** Offered in the console's instance form, with this label. */
  form?: { label: string; hint?: string };
}

export interface FieldProblem {
  field: string;
  problem: string;
}

/** What a webhook route answers for a handled request (status, body, extra headers). */
export interface WebhookAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

/** Documentation of a webhook route (OpenAPI). */
interface WebhookDocs {
  summary: string;
  description: string;
  /** What the body is. */
  body: string;
}

/**
 * Inbound webhooks at POST /webhook/<path>/:instance. Two ways:
 * - 'parse': the gateway authenticates (the instance's webhook token, or `authenticates`), parses
 *   the JSON body into messages and ingests them; an unknown instance is answered 401 (names stay
 *   secret).
 * - 'adapter': the raw body goes to the running adapter, which verifies it (e.g. a signature over
 *   the raw bytes) and ingests; in a cluster the request is forwarded to the node running it.
 */
export type ChannelWebhook =
  | {
      path: string;
      mode: 'parse';
      docs: WebhookDocs;
      /** A second credential inside the body, accepted instead of the webhook token. */
      authenticates?(inst: Instance, body: unknown): boolean;
      /** Throws a core Validation error for a malformed body (answered 400). */
      parse(body: unknown, instanceId: string): { messages: InboundMessage[]; ignored: string[] };
    }
  | {
      path: string;
      mode: 'adapter';
      docs: WebhookDocs;
      /** The running adapter's request handler; null when `adapter` is not this channel's. */
      handler(adapter: ChannelAdapter | null): ((rawBody: string, headers: Headers) => Promise<WebhookAnswer>) | null;
      /**
       * A subscription handshake at GET on the same path (e.g. Meta's hub.challenge), answered
       * from the instance's stored config, without the adapter: the challenge to echo as plain
       * text, or null to refuse (the route answers 403 in the error envelope).
       */
      handshake?(inst: Instance, query: Record<string, string | undefined>): string | null;
    };

/** A chat address from the send API's `to`, or why it is not one. */
export type ChatAddress = ChatRef | { problem: string; expected?: string };

/** Status of an instance as the lifecycle endpoints report it (services/lifecycle.ts). */
export interface LifecycleStatus {
  status: InstanceStatus;
  reason: string | null;
  channel: ChannelKind;
  /** An instance actor is running the channel on this node. */
  running: boolean;
  hasQr: boolean;
  /** WhatsApp (Baileys): the last socket close. */
  lastDisconnect?: { statusCode: number | null; reason: string; at: string } | null;
  qrRounds?: number;
  nextReconnectAt?: string | null;
  /** Evolution's own state word (open / connecting / close). */
  evolutionState?: string;
}

export interface QrResult {
  /** PNG data URL. */
  qr: string;
  expiresAt: string;
}

/** The error codes a lifecycle hook may answer with (the API's codes). */
export type LifecycleErrorCode = 'NOT_FOUND' | 'CONFLICT' | 'VALIDATION_ERROR' | 'CHANNEL_ERROR' | 'INTERNAL_ERROR';

/**
 * What a lifecycle hook gets from services/lifecycle.ts. Errors are made by `fail`/`failure` so
 * that channels stay free of the HTTP layer; they reach the caller as API errors.
 */
export interface LifecycleContext {
  instance: Instance;
  /** The adapter running the instance on this node, if any. */
  adapter: ChannelAdapter | null;
  fetch: typeof fetch;
  clock: Clock;
  log: Logger;
  /** The instance's webhook URL (with its token), for channels that register it remotely. */
  webhookUrl: string | null;
  setStatus(status: InstanceStatus, reason: string | null): void;
  /** The lifecycle status as GET .../status reports it now. */
  status(): Promise<LifecycleStatus>;
  fail(
    code: LifecycleErrorCode,
    message: string,
    details?: unknown,
    retryAfterSeconds?: number,
  ): Error & { code: string };
  /** A failed channel call: 502 CHANNEL_ERROR "<action> failed: …", except the caller's own mistakes (400, 409). */
  failure(err: unknown, action: string): Error & { code: string };
  /** The instance has no running adapter here (inactive or not started yet). */
  notRunning(): Error;
}

/** QR / phone-number pairing, for channels that link an account that way. */
export interface ChannelPairing {
  qr?(ctx: LifecycleContext): Promise<QrResult>;
  /** Links by phone number: returns the code to type on the phone. */
  code?(ctx: LifecycleContext, phoneNumber: string): Promise<string>;
}

/** Hooks for the remote side of a connection; each is optional (the default restarts the actor). */
export interface ChannelRemote {
  /** Extra live status (asks the platform or the running adapter). */
  status?(ctx: LifecycleContext, base: LifecycleStatus): Promise<LifecycleStatus>;
  /** POST .../connect, before the actor is (re)started: e.g. provision the remote instance. */
  connect?(ctx: LifecycleContext): Promise<{ created?: boolean; qr?: string | null }>;
  /** In the background after a create; never throws. */
  afterCreate?(ctx: LifecycleContext): Promise<void>;
  /** POST .../restart. True when the channel restarted itself; false to restart the actor. */
  restart?(ctx: LifecycleContext): Promise<boolean>;
  logout?(ctx: LifecycleContext): Promise<LifecycleStatus>;
  /** URL that adds the bot to a server (GET .../discord/invite). */
  invite?(ctx: LifecycleContext): string;
}

export interface AdapterDeps {
  db: Database;
  config: Config;
  clock: Clock;
  log: Logger;
  fetch: typeof fetch;
  /** Test hook: a stand-in WhatsApp (Baileys) socket. */
  baileysSocketFactory?: SocketFactory;
}

export type AdapterFactory = (inst: Instance, deps: AdapterDeps) => ChannelAdapter;

/**
 * Everything the gateway knows about one channel. Each folder under src/channels/ has an index.ts
 * that exports one of these (e.g. `export const discordChannel: ChannelDefinition`), and
 * registry.ts lists them; nothing outside src/channels/ names a channel kind. Required: kind,
 * platform, name, library, version, capabilities, fields, createAdapter, chatFor, traceSteps; the
 * rest only when the channel has it (webhook, pairing, remote hooks, …).
 */
export interface ChannelDefinition {
  kind: ChannelKind;
  /** Users are the same people across kinds of one platform (e.g. both WhatsApp kinds). */
  platform: string;
  /** Display name and client library (GET /api/v2/channels). */
  name: string;
  library: string;
  version: string;
  /** What the channel can do by default (an adapter may narrow it per instance). */
  capabilities: ChannelCapabilities;
  /** The instance fields, in the order problems are reported. */
  fields: ChannelField[];
  /** v1 creates without `channel`: any of these fields picks this channel; 'otherwise' marks the fallback. */
  inferredFrom?: string[] | 'otherwise';
  /** Checks across fields, after each field's own check. */
  validate?(config: ChannelConfig): FieldProblem[];
  /** Fills values derived from the instance (e.g. a remote instance name defaulting to ours). */
  fillDefaults?(config: ChannelConfig, name: string): void;
  createAdapter: AdapterFactory;
  webhook?: ChannelWebhook;
  /** The send API's `to` as a chat. */
  chatFor(to: string): ChatAddress;
  /** Bare digits as a sender id are a phone number (access rules match them as phones). */
  phoneSenderIds?: boolean;
  /** `context.source` the agent is told (defaults to the kind). */
  agentSource?: string;
  /** No remote connection at all: nothing to connect, restart or pair. */
  local?: boolean;
  pairing?: ChannelPairing;
  remote?: ChannelRemote;
  /** Routes served without an API key (public.ts), mounted for every channel by src/api/public-routes.ts. */
  publicRoutes?: ChannelPublicRoutes;
  /** Trace step names. `sent`: the step recorded when a reply was delivered. */
  traceSteps: { sent: string };
}
