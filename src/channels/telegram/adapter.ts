// Telegram through grammY: one Bot per instance, its HTTP through the gateway's outbound policy.
// - Webhook mode: start() registers POST /webhook/telegram/<name> with setWebhook and a generated
//   secret token; the route hands the raw request to handleWebhookRequest(), which checks the
//   X-Telegram-Bot-Api-Secret-Token header (constant time), feeds the update to grammY and answers
//   after the durable inbox write (a non-2xx makes Telegram deliver it again).
// - Polling mode: getUpdates in a loop on the node running the instance (in a cluster, the owner
//   of its shard). The offset moves past an update only after its inbox write and is kept in
//   channel_state, so a crash redelivers (deduplicated by chat id + message id) rather than loses.
// Outbound text is plain (no parse_mode): nothing an agent writes can make a send fail on
// MarkdownV2/HTML parsing.
import type { Database } from 'bun:sqlite';
import { Bot, type Context, GrammyError, HttpError, InputFile } from 'grammy';
import type { Message, ReactionTypeEmoji, Update } from 'grammy/types';
import type { Logger } from 'pino';
import { type Clock, realClock, type Timer } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { ChatRef, InboundMedia, InboundMessage, IngestResult, OutboundMessage } from '../../core/message.ts';
import { RecentMap } from '../../core/recent-map.ts';
import { readBounded } from '../../net/bounded-read.ts';
import { OutboundRefused } from '../../net/outbound.ts';
import { crashPoint } from '../../services/crash.ts';
import { constantTimeEqual } from '../../services/ids.ts';
import { chunkText } from '../../stream/chunker.ts';
import { downloadFile } from '../file-download.ts';
import { ingestWithRetry, isOverloaded } from '../ingest-retry.ts';
import type {
  AdapterContext,
  ChannelAdapter,
  FetchedMedia,
  MediaFetchOptions,
  SentReceipt,
  WebhookAnswer,
} from '../types.ts';
import { TELEGRAM_CAPABILITIES, TELEGRAM_MAX_TEXT } from './capabilities.ts';
import { type BotIdentity, toInbound } from './inbound.ts';
import { readTelegramSettings, type TelegramSettings, webhookSecretToken } from './settings.ts';
import { readOffset, saveOffset } from './state.ts';

const MAX_CAPTION = 1024;
/** The updates we handle; Telegram sends only these (setWebhook / getUpdates `allowed_updates`). */
const ALLOWED_UPDATES = ['message', 'edited_message'] as const;
/** "typing…" shows for 5 s or until the next message; refresh a little earlier. */
const TYPING_REFRESH_MS = 4_500;
/** Telegram allows about one message per second in a chat and 20 per minute in a group. */
const EDIT_GAP_MS = { direct: 1_000, group: 3_000 };
const RECONNECT_DELAYS_MS = [1_000, 2_000, 5_000, 10_000, 30_000];
/** How many send() idempotency keys remember which chunks were already posted. */
const POSTED_CHUNKS_MEMORY = 500;

export interface TelegramAdapterOptions {
  clock?: Clock;
  /** The gateway's outbound-policy fetch (gw.fetch); every Bot API call goes through it. */
  fetch: typeof fetch;
  /** channel_state: the polling offset. */
  db: Database;
  /** TELEGRAM_API_URL, used when the instance has no telegram_api_url. */
  defaultApiUrl?: string | null;
  /** PUBLIC_URL: the base of the webhook URL given to setWebhook. */
  publicUrl?: string | null;
  /** getUpdates long-poll seconds (tests use 1). */
  pollTimeoutSeconds?: number;
  /** Smallest gap between two edits in one chat (Telegram's edit rate limits). */
  editGapMs?: { direct: number; group: number };
  typingRefreshMs?: number;
  reconnectDelaysMs?: readonly number[];
  /** Waits for a full inbox while polling (tests shorten them). */
  ingestRetryDelaysMs?: readonly number[];
}

/** What handling one update led to (the webhook answer / the polling loop read it). */
interface UpdateOutcome {
  /** Polling: wait out a full inbox here (no HTTP 503 to give Telegram). */
  retryOverload: boolean;
  result?: IngestResult;
}

export class TelegramAdapter implements ChannelAdapter {
  readonly kind = 'telegram';
  readonly capabilities = TELEGRAM_CAPABILITIES;
  private readonly clock: Clock;
  private readonly settings: TelegramSettings;
  private readonly secretToken: string;
  private bot: Bot | null = null;
  private me: BotIdentity | null = null;
  private ctx: AdapterContext | null = null;
  private log: Logger | null = null;
  private abort: AbortController | null = null;
  private running: Promise<void> | null = null;
  private readonly outcomes = new WeakMap<Update, UpdateOutcome>();
  private readonly typingTimers = new Map<string, Timer>();
  private readonly nextEditAt = new Map<string, number>();
  private readonly postedChunks = new RecentMap<string, string[]>(POSTED_CHUNKS_MEMORY);

  constructor(
    private readonly instance: { id: string; name: string; config: Record<string, unknown>; webhookSecret: string },
    private readonly opts: TelegramAdapterOptions,
  ) {
    this.clock = opts.clock ?? realClock;
    this.settings = readTelegramSettings(instance.config, { apiUrl: opts.defaultApiUrl, publicUrl: opts.publicUrl });
    this.secretToken = webhookSecretToken(instance);
  }

  async start(ctx: AdapterContext): Promise<void> {
    if (this.bot) await this.stop('restart');
    this.ctx = ctx;
    this.log = ctx.log.child({ channel: 'telegram' });
    const token = this.settings.botToken;
    if (!token) return ctx.setStatus('error', { reason: 'telegram_bot_token is not set' });
    if (this.settings.mode === 'webhook' && !this.opts.publicUrl)
      return ctx.setStatus('error', { reason: 'telegram_mode webhook needs PUBLIC_URL (the URL Telegram calls)' });

    const bot = new Bot(token, {
      client: {
        apiRoot: this.settings.apiUrl,
        fetch: policyFetch(this.opts.fetch),
        // Above the long poll, below grammY's 500 s default: a silent connection is noticed.
        timeoutSeconds: this.pollTimeoutSeconds + 30,
      },
    });
    bot.on(['message', 'edited_message'], (c) => this.onMessage(c));
    this.bot = bot;
    const abort = new AbortController();
    this.abort = abort;
    ctx.setStatus('connecting');
    this.running = this.run(bot, ctx, abort.signal).catch((err) => {
      if (!abort.signal.aborted) this.log?.error({ err: describe(err) }, 'telegram: connection loop ended');
    });
  }

  /** A received file: getFile gives its path, then GET {api}/file/bot{token}/{path} (Bot API limit 20 MB). */
  async fetchMedia(item: InboundMedia, opts: MediaFetchOptions): Promise<FetchedMedia> {
    const bot = this.bot;
    const token = this.settings.botToken;
    if (!bot || !token) throw new ChannelError('Telegram is not connected', true);
    const fileId = (item.ref as { fileId?: unknown } | undefined)?.fileId;
    if (typeof fileId !== 'string') throw new ChannelError('the message has no file id', false);
    let path: string | undefined;
    try {
      path = (await bot.api.getFile(fileId)).file_path;
    } catch (err) {
      throw toChannelError('getFile', err);
    }
    if (!path)
      throw new ChannelError('Telegram getFile answered without a file path (file too large for bots?)', false);
    const res = await downloadFile(
      this.opts.fetch,
      `${this.settings.apiUrl}/file/bot${token}/${path}`,
      { signal: opts.signal },
      'Telegram file download',
      describe,
    );
    return { bytes: await readBounded(res, opts.maxBytes), mimeType: item.mimeType, filename: item.filename };
  }

  async stop(reason: string): Promise<void> {
    for (const t of this.typingTimers.values()) t.cancel();
    this.typingTimers.clear();
    this.abort?.abort(new Error(`stopped: ${reason}`));
    this.abort = null;
    this.bot = null;
    this.me = null;
    const running = this.running;
    this.running = null;
    await running;
  }

  // ---- connection ------------------------------------------------------------------------

  private get pollTimeoutSeconds(): number {
    return this.opts.pollTimeoutSeconds ?? 25;
  }

  /** getMe, then setWebhook or the polling loop; transient failures are retried with backoff. */
  private async run(bot: Bot, ctx: AdapterContext, signal: AbortSignal): Promise<void> {
    for (let failures = 0; !signal.aborted; ) {
      try {
        // getMe ourselves, not bot.init(): that retries 5xx and network errors silently, forever;
        // this loop reports them as the instance's status and backs off.
        if (!bot.isInited()) bot.botInfo = await bot.api.getMe(grammySignal(signal));
        this.me = { id: bot.botInfo.id, username: bot.botInfo.username };
        if (this.settings.mode === 'webhook') {
          await bot.api.setWebhook(
            this.webhookUrl(),
            { secret_token: this.secretToken, allowed_updates: [...ALLOWED_UPDATES] },
            grammySignal(signal),
          );
          ctx.setStatus('connected');
          return;
        }
        // getUpdates is refused (409) while a webhook is set; pending updates are kept.
        await bot.api.deleteWebhook({ drop_pending_updates: false }, grammySignal(signal));
        failures = 0;
        await this.poll(bot, ctx, signal);
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (isPermanent(err)) return ctx.setStatus('error', { reason: connectFailure(err) });
        const delay = retryAfterMs(err) ?? this.reconnectDelay(failures++);
        this.log?.warn({ err: describe(err), delayMs: delay }, 'telegram: connecting failed; retrying');
        ctx.setStatus('connecting', { reason: connectFailure(err) });
        await this.clock.sleep(delay, signal).catch(() => {});
      }
    }
  }

  private webhookUrl(): string {
    return `${this.opts.publicUrl!.replace(/\/+$/, '')}/webhook/telegram/${encodeURIComponent(this.instance.name)}`;
  }

  private reconnectDelay(failures: number): number {
    const delays = this.opts.reconnectDelaysMs ?? RECONNECT_DELAYS_MS;
    return delays[Math.min(failures, delays.length - 1)] ?? 1_000;
  }

  /** Long polling; returns only when stopped (errors of one round are retried here). */
  private async poll(bot: Bot, ctx: AdapterContext, signal: AbortSignal): Promise<void> {
    let offset = readOffset(this.opts.db, this.instance.id) ?? undefined;
    let failures = 0;
    while (!signal.aborted) {
      let updates: Update[];
      try {
        updates = await bot.api.getUpdates(
          { offset, timeout: this.pollTimeoutSeconds, allowed_updates: [...ALLOWED_UPDATES] },
          grammySignal(signal),
        );
      } catch (err) {
        if (signal.aborted) return;
        if (isPermanent(err)) throw err;
        const delay = retryAfterMs(err) ?? this.reconnectDelay(failures++);
        // 409: another getUpdates (a second gateway on this bot token) or a webhook set meanwhile.
        ctx.setStatus('connecting', { reason: `getUpdates failed: ${connectFailure(err)}` });
        this.log?.warn({ err: describe(err), delayMs: delay }, 'telegram: getUpdates failed');
        await this.clock.sleep(delay, signal).catch(() => {});
        continue;
      }
      failures = 0;
      ctx.setStatus('connected');
      for (const update of updates) {
        try {
          await this.dispatch(bot, update, true);
        } catch (err) {
          if (signal.aborted) return;
          // Not stored: the offset stays, the next getUpdates brings this update (and the rest) again.
          const delay = this.reconnectDelay(failures++);
          this.log?.warn(
            { err: describe(err), update: update.update_id, delayMs: delay },
            'telegram: update not stored',
          );
          await this.clock.sleep(delay, signal).catch(() => {});
          break;
        }
        crashPoint('after_poll_ingest_before_offset');
        offset = update.update_id + 1;
        this.commitOffset(offset);
      }
    }
  }

  private commitOffset(offset: number): void {
    try {
      saveOffset(this.opts.db, this.instance.id, offset);
    } catch (err) {
      // The instance was deleted meanwhile, or the database fails: the next round still asks from `offset`.
      this.log?.warn({ err: describe(err) }, 'telegram: offset not saved');
    }
  }

  // ---- inbound ---------------------------------------------------------------------------

  /** Runs one update through grammY; resolves after the inbox write (rejects when it failed). */
  private async dispatch(bot: Bot, update: Update, retryOverload: boolean): Promise<UpdateOutcome> {
    const outcome: UpdateOutcome = { retryOverload };
    this.outcomes.set(update, outcome);
    try {
      await bot.handleUpdate(update);
    } catch (err) {
      throw (err as { error?: unknown }).error ?? err; // grammY wraps middleware errors in a BotError
    }
    return outcome;
  }

  private async onMessage(c: Context): Promise<void> {
    const ctx = this.ctx;
    const me = this.me;
    const m = (c.update.message ?? c.update.edited_message) as Message | undefined;
    if (!ctx || !me || !m) return;
    let msg: InboundMessage | null;
    try {
      msg = toInbound(this.instance.id, m, me, {
        requireMention: this.settings.requireMention,
        edited: c.update.edited_message !== undefined,
      });
    } catch (err) {
      // A message we cannot read is skipped (and logged), never retried forever.
      this.log?.warn({ err: describe(err), update: c.update.update_id }, 'telegram: update not understood');
      return;
    }
    if (!msg) return;
    const outcome = this.outcomes.get(c.update);
    outcome!.result = outcome?.retryOverload
      ? await ingestWithRetry(ctx, msg, { clock: this.clock, log: this.log, delaysMs: this.opts.ingestRetryDelaysMs })
      : await ctx.ingest(msg);
  }

  /**
   * POST /webhook/telegram/:instance. The secret header must match the token given to setWebhook;
   * otherwise 401 and nothing is stored. Answers after the durable inbox write.
   */
  async handleWebhookRequest(rawBody: string, headers: Headers): Promise<WebhookAnswer> {
    const given = headers.get('x-telegram-bot-api-secret-token') ?? '';
    if (!constantTimeEqual(given, this.secretToken))
      return { status: 401, body: errorBody('UNAUTHORIZED', 'invalid Telegram secret token') };
    let update: Update;
    try {
      update = JSON.parse(rawBody) as Update;
    } catch {
      return { status: 400, body: errorBody('VALIDATION_ERROR', 'body is not JSON') };
    }
    if (typeof update !== 'object' || update === null || !Number.isSafeInteger(update.update_id))
      return { status: 400, body: errorBody('VALIDATION_ERROR', 'body is not a Telegram update') };
    const bot = this.bot;
    if (!bot || !this.me)
      return {
        status: 503,
        body: errorBody('UNAVAILABLE', 'Telegram instance is not running'),
        headers: { 'retry-after': '5' },
      };
    let outcome: UpdateOutcome;
    try {
      outcome = await this.dispatch(bot, update, false);
    } catch (err) {
      this.log?.warn({ err: describe(err), update: update.update_id }, 'telegram: update not stored');
      return isOverloaded(err)
        ? { status: 503, body: errorBody('UNAVAILABLE', 'inbox is full'), headers: { 'retry-after': '1' } }
        : { status: 500, body: errorBody('INTERNAL_ERROR', 'update could not be stored') };
    }
    const r = outcome.result;
    if (!r) return { status: 200, body: { status: 'ignored', trace_id: null, message: 'nothing to answer' } };
    return {
      status: 200,
      body:
        r.status === 'duplicate'
          ? { status: 'duplicate', trace_id: r.traceId, message: 'Message already received' }
          : { status: 'received', trace_id: r.traceId, message: 'Message accepted' },
    };
  }

  // ---- outbound --------------------------------------------------------------------------

  async send(
    to: ChatRef,
    out: OutboundMessage,
    opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt> {
    const bot = this.requireBot();
    const chatId = chatIdOf(to.chatId);
    const thread = threadOf(to);
    if (out.reaction) {
      const { messageId, emoji } = out.reaction;
      const reaction: ReactionTypeEmoji[] = [{ type: 'emoji', emoji: emoji as ReactionTypeEmoji['emoji'] }];
      await this.call('setMessageReaction', () => bot.api.setMessageReaction(chatId, Number(messageId), reaction));
      return { platformMessageId: messageId };
    }
    const reply = (replyTo: string | undefined) =>
      replyTo && /^\d+$/.test(replyTo)
        ? { reply_parameters: { message_id: Number(replyTo), allow_sending_without_reply: true } }
        : {};

    // The messages this send consists of: the media (with the text as caption when it fits), then
    // the text in chunks of 4,096 (the pipeline pre-chunks replies; direct callers may not).
    const pieces: Array<(other: Record<string, unknown>) => Promise<Message>> = [];
    let text = out.text ?? '';
    const media = out.media;
    if (media) {
      const joined = [text, media.caption].filter(Boolean).join('\n');
      const caption = joined.length <= MAX_CAPTION ? joined : '';
      pieces.push((other) => this.sendMedia(bot, chatId, media, caption ? { ...other, caption } : other));
      text = caption ? '' : joined;
    }
    if (text.trim())
      for (const chunk of chunkText(text, { maxChars: TELEGRAM_MAX_TEXT }))
        pieces.push((other) => this.call('sendMessage', () => bot.api.sendMessage(chatId, chunk, other)));
    if (pieces.length === 0) throw new ChannelError('empty message', false);

    // A retry of the same send (same key) after a partial failure continues after the posted pieces.
    const posted = this.postedChunks.get(opts.idempotencyKey) ?? [];
    this.postedChunks.set(opts.idempotencyKey, posted);
    for (let i = posted.length; i < pieces.length; i++) {
      const sent = await pieces[i]({ ...thread, ...(i === 0 ? reply(out.replyTo) : {}) });
      posted.push(String(sent.message_id));
    }
    return { platformMessageId: posted[0] };
  }

  private sendMedia(
    bot: Bot,
    chatId: number | string,
    media: NonNullable<OutboundMessage['media']>,
    other: Record<string, unknown>,
  ): Promise<Message> {
    const file = media.url
      ? media.url
      : media.base64
        ? new InputFile(Buffer.from(media.base64, 'base64'), media.filename)
        : null;
    if (file === null) throw new ChannelError('media needs a url or base64 content', false);
    switch (media.mediaType) {
      case 'image':
        return this.call('sendPhoto', () => bot.api.sendPhoto(chatId, file, other));
      case 'video':
        return this.call('sendVideo', () => bot.api.sendVideo(chatId, file, other));
      case 'audio':
        return media.voiceNote
          ? this.call('sendVoice', () => bot.api.sendVoice(chatId, file, other))
          : this.call('sendAudio', () => bot.api.sendAudio(chatId, file, other));
      default:
        return this.call('sendDocument', () => bot.api.sendDocument(chatId, file, other));
    }
  }

  /** Edit in place (reply mode `edit`), spaced per chat within Telegram's rate limits. */
  async edit(to: ChatRef, platformMessageId: string, text: string): Promise<void> {
    const bot = this.requireBot();
    if (text.length > TELEGRAM_MAX_TEXT)
      throw new ChannelError(`edit longer than ${TELEGRAM_MAX_TEXT} characters`, false);
    await this.paceEdit(to);
    try {
      await this.call('editMessageText', () =>
        bot.api.editMessageText(chatIdOf(to.chatId), Number(platformMessageId), text),
      );
    } catch (err) {
      // The text is already what we wanted shown (e.g. a repeated final edit).
      if (err instanceof ChannelError && /message is not modified/i.test(err.message)) return;
      throw err;
    }
  }

  private async paceEdit(to: ChatRef): Promise<void> {
    const gaps = this.opts.editGapMs ?? EDIT_GAP_MS;
    const gap = to.kind === 'group' ? gaps.group : gaps.direct;
    const now = this.clock.monotonic();
    const at = Math.max(now, this.nextEditAt.get(to.chatId) ?? 0);
    this.nextEditAt.set(to.chatId, at + gap);
    if (this.nextEditAt.size > 10_000) {
      for (const [k, v] of this.nextEditAt) if (v < now) this.nextEditAt.delete(k);
    }
    if (at > now) await this.clock.sleep(at - now);
  }

  /** "typing…" while the agent works, refreshed until `on` is false. Never fails the reply. */
  async typing(to: ChatRef, on: boolean): Promise<void> {
    const key = `${to.chatId}#${to.threadId ?? ''}`;
    const existing = this.typingTimers.get(key);
    if (!on) {
      existing?.cancel();
      this.typingTimers.delete(key);
      return;
    }
    if (existing) return;
    const pulse = () => {
      const bot = this.bot;
      if (!bot) return;
      bot.api
        .sendChatAction(chatIdOf(to.chatId), 'typing', threadOf(to))
        .catch((err) => this.log?.debug({ err: describe(err) }, 'telegram: typing failed'));
      this.typingTimers.set(key, this.clock.setTimeout(pulse, this.opts.typingRefreshMs ?? TYPING_REFRESH_MS));
    };
    pulse();
  }

  private requireBot(): Bot {
    if (!this.bot || !this.me) throw new ChannelError('Telegram instance is not running', true);
    return this.bot;
  }

  private async call<T>(method: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toChannelError(method, err);
    }
  }
}

/**
 * grammY (Node build) hands fetch a polyfilled AbortSignal and an http.Agent; Bun's fetch takes
 * neither, so the signal is bridged to a native one and the agent dropped.
 */
function policyFetch(base: typeof fetch): typeof fetch {
  const wrapped = (input: string | URL | Request, init: RequestInit & { agent?: unknown; compress?: unknown } = {}) => {
    const { signal: given, agent: _agent, compress: _compress, ...rest } = init;
    const signal = given as { aborted: boolean; addEventListener(t: 'abort', f: () => void): void } | null | undefined;
    let native: AbortSignal | undefined;
    if (signal instanceof AbortSignal || !signal) native = signal ?? undefined;
    else {
      const c = new AbortController();
      if (signal.aborted) c.abort();
      else signal.addEventListener('abort', () => c.abort());
      native = c.signal;
    }
    return base(input, { ...rest, signal: native });
  };
  return wrapped as typeof fetch;
}

/** grammY's types name the abort-controller polyfill's signal; it only listens to 'abort', which a native one has. */
type GrammySignal = Parameters<Bot['api']['getMe']>[0];
function grammySignal(signal: AbortSignal): GrammySignal {
  return signal as unknown as GrammySignal;
}

/** Numeric chat ids as numbers (the Bot API's own type); `@channelname` as is. */
function chatIdOf(chatId: string): number | string {
  return /^-?\d+$/.test(chatId) ? Number(chatId) : chatId;
}

function threadOf(to: ChatRef): { message_thread_id?: number } {
  return to.threadId && /^\d+$/.test(to.threadId) ? { message_thread_id: Number(to.threadId) } : {};
}

/** 401 (bad token) and 404 (no such bot) do not get better by retrying. */
function isPermanent(err: unknown): boolean {
  return err instanceof GrammyError && (err.error_code === 401 || err.error_code === 404);
}

function retryAfterMs(err: unknown): number | undefined {
  if (!(err instanceof GrammyError) || err.error_code !== 429) return undefined;
  const s = err.parameters?.retry_after;
  return typeof s === 'number' && s >= 0 ? Math.ceil(s * 1000) : 1000;
}

function connectFailure(err: unknown): string {
  if (err instanceof GrammyError && err.error_code === 401) return 'invalid bot token';
  return describe(err);
}

/** Bot API failures → ChannelError: 429 (with its retry_after), 5xx and network errors are retryable. */
export function toChannelError(method: string, err: unknown): ChannelError {
  if (err instanceof ChannelError) return err;
  if (err instanceof GrammyError) {
    const code = err.error_code;
    return new ChannelError(
      `Telegram ${method}: ${code} ${reasonOf(err)}`,
      code === 429 || code >= 500,
      retryAfterMs(err),
      code,
    );
  }
  if (err instanceof HttpError) {
    const refused = err.error instanceof OutboundRefused;
    return new ChannelError(`Telegram ${method}: ${describe(err.error)}`, !refused);
  }
  return new ChannelError(`Telegram ${method}: ${describe(err)}`, true);
}

/**
 * Bot API refusals we recognise, in our own words. The description itself is remote text (the Bot
 * API URL is configurable) and is not passed on to traces or API answers.
 */
const KNOWN_REFUSALS: Array<[RegExp, string]> = [
  [/bot was blocked by the user/i, 'the user blocked the bot'],
  [/bot can't initiate conversation/i, 'the user has not started a chat with the bot'],
  [/user is deactivated/i, 'the user deleted their account'],
  [/bot was kicked|bot is not a member/i, 'the bot is not in the chat'],
  [/chat not found/i, 'chat not found'],
  [/not enough rights|have no rights/i, 'the bot lacks the rights for this in the chat'],
  [/message is too long/i, 'message too long'],
  // edit() treats this one as success (the text was already what we sent); keep the words it matches.
  [/message is not modified/i, 'message is not modified'],
  [
    /message to (edit|reply|react) not found|message can't be edited/i,
    'the message to edit, reply to or react to is gone',
  ],
  [
    /wrong file identifier|failed to get HTTP URL content|wrong type of the web page content/i,
    'Telegram could not fetch the media',
  ],
];

function reasonOf(err: GrammyError): string {
  for (const [pattern, reason] of KNOWN_REFUSALS) if (pattern.test(err.description)) return reason;
  if (err.error_code === 401) return 'invalid bot token';
  if (err.error_code === 429) return 'rate limited';
  if (err.error_code >= 500) return 'Telegram temporarily failing';
  return 'request refused';
}

/** An error for logs and traces; a bot token that slipped into a message (a URL) is masked. */
function describe(err: unknown): string {
  if (err instanceof GrammyError) return `${err.error_code} ${reasonOf(err)}`;
  if (err instanceof HttpError) return describe(err.error);
  return (err instanceof Error ? err.message : String(err)).replace(/\d+:[\w-]{20,}/g, '****');
}

function errorBody(code: string, message: string) {
  return { error: { code, message, details: null } };
}
