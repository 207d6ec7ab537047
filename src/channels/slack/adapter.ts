// Slack through Bolt. One Bolt App per instance, created on start():
// - Events API (no slack_app_token): our Elysia route hands the raw request to
//   handleEventsRequest(); we check the signature, then feed Bolt through a receiver that has no
//   server of its own. Bolt acks Events API events before running listeners, so the HTTP answer
//   is not tied to Bolt's ack: the route awaits processEvent(), which resolves only after our
//   listener's ctx.ingest() (the durable inbox write) did.
// - Socket Mode (slack_app_token set): Bolt's SocketModeReceiver owns the WebSocket; we take over
//   its `slack_event` handler so the envelope is acked after the inbox write, not before.
// Outbound goes through the App's WebClient with its retries off (a lost response would otherwise
// double-post); only 429 is retried here, after Retry-After. Shared files are downloaded by
// fetchMedia (url_private_download with the bot token) through the outbound-policy fetch.
// Kept whole: one adapter, one Bolt app's lifecycle; its parts share the app and its receiver.
import { App, type Context, isValidSlackRequest, type Receiver, SocketModeReceiver } from '@slack/bolt';
import type { WebClient } from '@slack/web-api';
import { type Clock, realClock } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { Instance } from '../../core/instance.ts';
import type { ChatRef, InboundMedia, InboundMessage, IngestResult, OutboundMessage } from '../../core/message.ts';
import { RecentMap } from '../../core/recent-map.ts';
import { readBounded } from '../../net/bounded-read.ts';
import { chunkText } from '../../stream/chunker.ts';
import { configString } from '../config-values.ts';
import { downloadFile } from '../file-download.ts';
import { ingestWithRetry, isOverloaded } from '../ingest-retry.ts';
import type {
  AdapterContext,
  ChannelAdapter,
  ChannelCapabilities,
  FetchedMedia,
  MediaFetchOptions,
  SentReceipt,
} from '../types.ts';
import { boltLogger } from './bolt-logger.ts';
import { SLACK_CAPABILITIES, SLACK_DEFAULT_MAX_TEXT } from './capabilities.ts';
import { type SlackEventBody, toInboundMessage } from './inbound.ts';

export const SLACK_DEFAULT_API_URL = 'https://slack.com/api/';
/** Slack rejects signed requests older (or newer) than this. */
const SIGNATURE_WINDOW_SEC = 5 * 60;
const THINKING_REACTION = 'hourglass_flowing_sand';
const THINKING_STATUS = 'is thinking…';
/** Context key under which a request's ingest outcome travels through Bolt to our listener. */
const OUTCOME_KEY = 'switchboardIngestOutcome';
/** How many send() idempotency keys remember which chunks were already posted. */
const POSTED_CHUNKS_MEMORY = 500;

export interface SlackAdapterOptions {
  clock?: Clock;
  /** Used when the instance has no slack_api_url (env SLACK_API_URL). */
  defaultApiUrl?: string | null;
  /** How many 429 answers one Web API call waits out before failing (retryable). */
  maxRateLimitWaits?: number;
  /** The outbound-policy fetch (gw.fetch): file downloads go through it. Without it no file is fetched. */
  fetch?: typeof fetch;
}

/** What the `POST /webhook/slack/:instance` route answers. */
export interface SlackHttpAnswer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

interface IngestOutcome {
  results: IngestResult[];
  error?: unknown;
  /** Socket Mode: no HTTP 503 to hand back, so an overloaded inbox is retried briefly before giving up (unacked → Slack redelivers). */
  retryOverload?: boolean;
}

/** Errors from @slack/web-api carry a string `code` (checked by value, not instanceof). */
interface SlackApiError {
  code?: string;
  message?: string;
  retryAfter?: number;
  statusCode?: number;
  data?: { error?: string };
}

type TypingState =
  | { mode: 'status'; channel: string; threadTs: string }
  | { mode: 'reaction'; channel: string; timestamp: string };

/** A receiver with no server: the webhook route calls app.processEvent through the adapter. */
class RouteReceiver implements Receiver {
  init(_app: App): void {}
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
}

export class SlackAdapter implements ChannelAdapter {
  readonly kind = 'slack' as const;
  readonly capabilities: ChannelCapabilities;
  private readonly clock: Clock;
  private readonly maxRateLimitWaits: number;
  private app: App | null = null;
  private socketReceiver: SocketModeReceiver | null = null;
  private ctx: AdapterContext | null = null;
  private ready = false;
  private stopping = false;
  private setStatusUnavailable = false;
  private readonly typingByThread = new Map<string, TypingState>();
  private readonly postedChunks = new RecentMap<string, string[]>(POSTED_CHUNKS_MEMORY);

  constructor(
    private readonly instance: Instance,
    private readonly options: SlackAdapterOptions = {},
  ) {
    this.clock = options.clock ?? realClock;
    this.maxRateLimitWaits = options.maxRateLimitWaits ?? 3;
    const maxText =
      positiveInt(instance.settings?.maxTextLength) ??
      positiveInt(instance.config.slack_max_text) ??
      SLACK_DEFAULT_MAX_TEXT;
    this.capabilities = { ...SLACK_CAPABILITIES, maxText };
  }

  get socketMode(): boolean {
    return configString(this.instance.config.slack_app_token) !== null;
  }

  get apiUrl(): string {
    const url = configString(this.instance.config.slack_api_url) ?? this.options.defaultApiUrl ?? SLACK_DEFAULT_API_URL;
    return url.endsWith('/') ? url : `${url}/`;
  }

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    this.stopping = false;
    this.ready = false;
    const config = this.instance.config;
    const token = configString(config.slack_bot_token);
    const appToken = configString(config.slack_app_token);
    if (!token) return ctx.setStatus('error', { reason: 'slack_bot_token is not set' });
    if (!appToken && !configString(config.slack_signing_secret)) {
      return ctx.setStatus('error', { reason: 'slack_signing_secret is not set (needed for the Events API webhook)' });
    }

    const logger = boltLogger(ctx.log);
    // A fresh object per client: Bolt and the Socket Mode client both mutate what they are given.
    const clientOptions = () => ({
      slackApiUrl: this.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      logger,
    });
    let receiver: Receiver;
    if (appToken) {
      this.socketReceiver = new SocketModeReceiver({
        appToken,
        logger,
        autoReconnectEnabled: true,
        installerOptions: { clientOptions: clientOptions() },
      });
      receiver = this.socketReceiver;
    } else {
      receiver = new RouteReceiver();
    }
    const app = new App({
      token,
      receiver,
      socketMode: appToken !== null,
      // auth.test runs in init() below, where its failure becomes a status instead of a rejection.
      deferInitialization: true,
      logger,
      clientOptions: clientOptions(),
      convoStore: false,
    });
    // Rethrow so processEvent() rejects and the caller does not acknowledge the event.
    app.error(async (error) => {
      throw error;
    });
    const listener = ({ body, context }: { body: unknown; context: Context }) =>
      this.onEvent(body as SlackEventBody, context);
    app.event('app_mention', listener);
    app.event('message', listener);
    this.app = app;

    ctx.setStatus('connecting');
    try {
      await app.init(); // auth.test: checks the token and learns our bot user id
    } catch (error) {
      this.app = null;
      this.socketReceiver = null;
      return ctx.setStatus('error', { reason: `auth.test failed: ${describe(error)}` });
    }
    this.ready = true;

    if (!this.socketReceiver) return ctx.setStatus('connected');
    const client = this.socketReceiver.client;
    client.removeAllListeners('slack_event');
    client.on('slack_event', (args: SocketEventArgs) => void this.onSocketEvent(app, args));
    client.on('connected', () => this.report('connected'));
    client.on('reconnecting', () => this.report('connecting'));
    client.on('disconnected', () => this.report('disconnected'));
    // The connection is kept (and re-established) by the Socket Mode client; status follows its events.
    app.start().catch((error: unknown) => this.report('error', `Socket Mode: ${describe(error)}`));
  }

  /**
   * A shared file: GET its url_private_download with the bot token (needs the files:read scope).
   * The token goes only to Slack's own hosts or to the configured slack_api_url's origin.
   */
  async fetchMedia(item: InboundMedia, opts: MediaFetchOptions): Promise<FetchedMedia> {
    const token = configString(this.instance.config.slack_bot_token);
    const fetchFn = this.options.fetch;
    if (!token || !fetchFn) throw new ChannelError('Slack file download: no bot token or outbound fetch', false);
    const raw = (item.ref as { url?: unknown } | undefined)?.url;
    let url: URL;
    try {
      url = new URL(String(raw));
    } catch {
      throw new ChannelError('Slack file download: the file has no valid private URL', false);
    }
    if (!this.mayReceiveToken(url))
      throw new ChannelError(
        `Slack file download: ${url.host} is not a Slack host; the bot token is not sent there`,
        false,
      );
    const res = await downloadFile(
      fetchFn,
      url.toString(),
      { headers: { authorization: `Bearer ${token}` }, signal: opts.signal },
      'Slack file download',
      describe,
    );
    // A token Slack does not accept gets its sign-in page (HTML, 200), not an error status.
    const type = res.headers.get('content-type') ?? '';
    if (type.startsWith('text/html') && !item.mimeType?.startsWith('text/html')) {
      await res.body?.cancel().catch(() => {});
      throw new ChannelError(
        'Slack file download answered a sign-in page instead of the file (bot token not accepted, or no files:read scope)',
        false,
      );
    }
    return { bytes: await readBounded(res, opts.maxBytes), mimeType: item.mimeType, filename: item.filename };
  }

  private mayReceiveToken(url: URL): boolean {
    if (url.protocol === 'https:' && (url.hostname === 'slack.com' || url.hostname.endsWith('.slack.com'))) return true;
    return url.origin === new URL(this.apiUrl).origin;
  }

  async stop(_reason: string): Promise<void> {
    this.stopping = true;
    this.ready = false;
    const app = this.app;
    this.app = null;
    this.socketReceiver = null;
    if (app) {
      try {
        await app.stop();
      } catch (error) {
        this.ctx?.log.warn({ err: describe(error) }, 'slack: stop failed');
      }
    }
  }

  /**
   * The Events API webhook (`POST /webhook/slack/:instance`). `rawBody` must be the exact bytes
   * Slack sent (the signature covers them). Answers after the durable inbox write.
   */
  async handleEventsRequest(rawBody: string, headers: Headers): Promise<SlackHttpAnswer> {
    if (!this.verifySignature(rawBody, headers)) {
      return { status: 401, body: errorBody('UNAUTHORIZED', 'invalid Slack request signature or timestamp') };
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(rawBody) as Record<string, unknown>;
    } catch {
      return { status: 400, body: errorBody('VALIDATION_ERROR', 'body is not JSON') };
    }
    if (body.type === 'url_verification') return { status: 200, body: { challenge: body.challenge } };
    if (body.type !== 'event_callback')
      return { status: 200, body: { status: 'received', trace_id: null, message: 'ignored' } };

    const app = this.app;
    if (!app || !this.ready) {
      return {
        status: 503,
        body: errorBody('UNAVAILABLE', 'Slack instance is not running'),
        headers: { 'retry-after': '5' },
      };
    }
    const outcome: IngestOutcome = { results: [] };
    const retryNum = Number(headers.get('x-slack-retry-num') ?? '');
    try {
      await app.processEvent({
        body,
        retryNum: Number.isInteger(retryNum) ? retryNum : undefined,
        retryReason: headers.get('x-slack-retry-reason') ?? undefined,
        ack: async () => {}, // answered below, after ingest
        customProperties: { [OUTCOME_KEY]: outcome },
      });
    } catch (error) {
      // Not stored: a non-2xx makes Slack redeliver (up to 3 times).
      const cause = outcome.error ?? error;
      // The inbox's Overloaded error (code UNAVAILABLE).
      const overloaded = isOverloaded(cause);
      this.ctx?.log.warn({ err: describe(cause) }, 'slack: event not stored');
      return overloaded
        ? { status: 503, body: errorBody('UNAVAILABLE', 'inbox is full'), headers: { 'retry-after': '1' } }
        : { status: 500, body: errorBody('INTERNAL_ERROR', 'event could not be stored') };
    }
    const result = outcome.results[0];
    if (!result) return { status: 200, body: { status: 'received', trace_id: null, message: 'ignored' } };
    return {
      status: 200,
      body: {
        status: 'received',
        trace_id: result.traceId,
        message: result.status === 'duplicate' ? 'duplicate' : 'accepted',
      },
    };
  }

  async send(
    to: ChatRef,
    out: OutboundMessage,
    opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt> {
    const client = this.requireClient();
    if (out.reaction) {
      const { messageId, emoji } = out.reaction;
      await this.call('reactions.add', () =>
        client.reactions.add({ channel: to.chatId, timestamp: messageId, name: emojiName(emoji) }),
      );
      return { platformMessageId: messageId };
    }
    const text = out.text || out.media?.caption || '';
    if (!text) throw new ChannelError('the Slack adapter sends text only (media is not supported)', false);

    const chunks = chunkText(text, { maxChars: this.capabilities.maxText });
    // A retry of the same send (same key) after a partial failure continues after the posted chunks.
    const posted = this.postedChunks.get(opts.idempotencyKey) ?? [];
    this.postedChunks.set(opts.idempotencyKey, posted);
    for (let i = posted.length; i < chunks.length; i++) {
      const res = await this.call('chat.postMessage', () =>
        client.chat.postMessage({ channel: to.chatId, thread_ts: to.threadId, text: chunks[i] }),
      );
      if (!res.ts) throw new ChannelError('chat.postMessage answered without a ts', true);
      posted.push(res.ts);
    }
    return { platformMessageId: posted[posted.length - 1] };
  }

  async edit(to: ChatRef, platformMessageId: string, text: string): Promise<void> {
    const client = this.requireClient();
    await this.call('chat.update', () => client.chat.update({ channel: to.chatId, ts: platformMessageId, text }));
  }

  /**
   * "Thinking" indicator: assistant.threads.setStatus where the app may use it; otherwise (tried
   * once per adapter) an hourglass reaction on the triggering message, removed when `on` is false.
   * Never throws: a missing indicator must not fail the reply.
   */
  async typing(to: ChatRef, on: boolean, inbound?: InboundMessage): Promise<void> {
    const client = this.app?.client;
    if (!client) return;
    const threadTs = to.threadId ?? inbound?.replyToMessageId;
    const key = `${to.chatId}:${threadTs ?? ''}`;
    try {
      if (!on) {
        const state = this.typingByThread.get(key);
        this.typingByThread.delete(key);
        if (state?.mode === 'status')
          await this.call('assistant.threads.setStatus', () =>
            client.assistant.threads.setStatus({ channel_id: state.channel, thread_ts: state.threadTs, status: '' }),
          );
        if (state?.mode === 'reaction')
          await this.call('reactions.remove', () =>
            client.reactions.remove({ channel: state.channel, timestamp: state.timestamp, name: THINKING_REACTION }),
          );
        return;
      }
      if (threadTs && !this.setStatusUnavailable) {
        try {
          await this.call('assistant.threads.setStatus', () =>
            client.assistant.threads.setStatus({ channel_id: to.chatId, thread_ts: threadTs, status: THINKING_STATUS }),
          );
          this.typingByThread.set(key, { mode: 'status', channel: to.chatId, threadTs });
          return;
        } catch (error) {
          // unknown_method / not_allowed / missing_scope / not an assistant thread: use the reaction from now on.
          this.setStatusUnavailable = true;
          this.ctx?.log.debug(
            { err: describe(error) },
            'slack: assistant.threads.setStatus unavailable, using a reaction',
          );
        }
      }
      const timestamp = inbound?.replyToMessageId ?? (inbound?.extra?.ts as string | undefined);
      if (!timestamp) return;
      try {
        await this.call('reactions.add', () =>
          client.reactions.add({ channel: to.chatId, timestamp, name: THINKING_REACTION }),
        );
      } catch (error) {
        if ((error as ChannelError).message?.includes('already_reacted') !== true) throw error;
      }
      this.typingByThread.set(key, { mode: 'reaction', channel: to.chatId, timestamp });
    } catch (error) {
      this.ctx?.log.debug({ err: describe(error) }, 'slack: thinking indicator failed');
    }
  }

  private async onEvent(body: SlackEventBody, context: Context): Promise<void> {
    const outcome = context[OUTCOME_KEY] as IngestOutcome | undefined;
    const msg = toInboundMessage(this.instance.id, body, context.botUserId);
    if (!msg || !this.ctx) return;
    try {
      const ctx = this.ctx;
      const result = outcome?.retryOverload
        ? await ingestWithRetry(ctx, msg, { clock: this.clock, log: ctx.log })
        : await ctx.ingest(msg);
      outcome?.results.push(result);
    } catch (error) {
      if (outcome) outcome.error = error;
      throw error;
    }
  }

  private async onSocketEvent(app: App, args: SocketEventArgs): Promise<void> {
    try {
      if (args.type !== 'events_api') {
        // Slash commands and interactivity are not handled; ack so Slack does not redeliver them.
        await args.ack();
        return;
      }
      const outcome: IngestOutcome = { results: [], retryOverload: true };
      await app.processEvent({
        body: args.body,
        retryNum: args.retry_num,
        retryReason: args.retry_reason,
        ack: async () => {}, // acked below, after ingest
        customProperties: { [OUTCOME_KEY]: outcome },
      });
      await args.ack();
    } catch (error) {
      // Not acked: Slack redelivers the envelope.
      this.ctx?.log.warn({ err: describe(error) }, 'slack: socket event not stored');
    }
  }

  private verifySignature(rawBody: string, headers: Headers): boolean {
    const signingSecret = configString(this.instance.config.slack_signing_secret);
    const signature = headers.get('x-slack-signature');
    const timestamp = Number(headers.get('x-slack-request-timestamp') ?? '');
    if (!signingSecret || !signature || !Number.isInteger(timestamp)) return false;
    const nowMs = this.clock.now();
    // Bolt only rejects old timestamps; Slack's rule is a window both ways.
    if (Math.abs(nowMs / 1000 - timestamp) > SIGNATURE_WINDOW_SEC) return false;
    return isValidSlackRequest({
      signingSecret,
      body: rawBody,
      headers: { 'x-slack-signature': signature, 'x-slack-request-timestamp': timestamp },
      nowMilliseconds: nowMs,
    });
  }

  private report(status: 'connected' | 'connecting' | 'disconnected' | 'error', reason?: string): void {
    if (this.stopping || !this.ctx) return;
    this.ctx.setStatus(status, reason ? { reason } : undefined);
  }

  private requireClient(): WebClient {
    const client = this.app?.client;
    if (!client || !this.ready) throw new ChannelError('Slack instance is not running', true);
    return client;
  }

  /** One Web API call; 429 is waited out (Retry-After) up to maxRateLimitWaits times. */
  private async call<T>(method: string, fn: () => Promise<T>): Promise<T> {
    for (let waits = 0; ; waits++) {
      try {
        return await fn();
      } catch (error) {
        const e = error as SlackApiError;
        if (e?.code === 'slack_webapi_rate_limited_error') {
          const waitMs = Math.max(1, e.retryAfter ?? 1) * 1000;
          if (waits < this.maxRateLimitWaits) {
            await this.clock.sleep(waitMs);
            continue;
          }
          throw new ChannelError(`Slack ${method}: rate limited`, true, waitMs, 429);
        }
        throw toChannelError(method, e);
      }
    }
  }
}

interface SocketEventArgs {
  ack: (response?: Record<string, unknown>) => Promise<void>;
  envelope_id: string;
  type: string;
  body: Record<string, unknown>;
  retry_num?: number;
  retry_reason?: string;
}

/** Platform errors that mean "try again later"; every other platform error is permanent. */
const RETRYABLE_PLATFORM_ERRORS = new Set([
  'internal_error',
  'fatal_error',
  'service_unavailable',
  'request_timeout',
  'ratelimited',
]);

function toChannelError(method: string, e: SlackApiError): ChannelError {
  switch (e?.code) {
    case 'slack_webapi_platform_error': {
      const code = e.data?.error ?? 'unknown_error';
      return new ChannelError(`Slack ${method}: ${code}`, RETRYABLE_PLATFORM_ERRORS.has(code));
    }
    case 'slack_webapi_http_error': {
      const status = e.statusCode ?? 0;
      return new ChannelError(`Slack ${method}: HTTP ${status}`, status >= 500 || status === 408, undefined, status);
    }
    case 'slack_webapi_request_error':
      return new ChannelError(`Slack ${method}: ${e.message ?? 'request failed'}`, true);
    default:
      return new ChannelError(`Slack ${method}: ${e?.message ?? String(e)}`, true);
  }
}

const UNICODE_EMOJI_NAMES: Record<string, string> = {
  '👍': '+1',
  '👎': '-1',
  '❤️': 'heart',
  '❤': 'heart',
  '✅': 'white_check_mark',
  '👀': 'eyes',
  '😂': 'joy',
  '🙏': 'pray',
  '🎉': 'tada',
  '🔥': 'fire',
  '⏳': 'hourglass_flowing_sand',
};

/** Slack reactions take a name (`thumbsup`), not `:thumbsup:` or a Unicode emoji. */
function emojiName(emoji: string): string {
  return UNICODE_EMOJI_NAMES[emoji] ?? emoji.replace(/^:|:$/g, '');
}

function positiveInt(value: unknown): number | undefined {
  const n = typeof value === 'string' ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : undefined;
}

function describe(error: unknown): string {
  const e = error as SlackApiError;
  if (e?.code === 'slack_webapi_platform_error' && e.data?.error) return e.data.error;
  return error instanceof Error ? error.message : String(error);
}

function errorBody(code: string, message: string) {
  return { error: { code, message, details: null } };
}
