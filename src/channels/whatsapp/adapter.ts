// WhatsApp directly through Baileys: pairing (QR or code), auth state in SQLite, a reconnect
// policy that stops when WhatsApp says the link is gone, inbound mapping and paced sending.
// The instance actor owns one adapter; inbound goes to ctx.ingest (the durable inbox).
// Kept whole: one adapter, one Baileys socket's lifecycle (pairing, reconnects, pacing share it).

import type { Database } from 'bun:sqlite';
import { createHash } from 'node:crypto';
import { BufferJSON } from '@whiskeysockets/baileys';
import type { Logger } from 'pino';
import { Backoff } from '../../../actors/runtime/backoff.ts';
import { type Clock, realClock, type Timer } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { InstanceStatus } from '../../core/instance.ts';
import type { ChatRef, InboundMedia, InboundMessage, OutboundMessage } from '../../core/message.ts';
import { RecentMap } from '../../core/recent-map.ts';
import { MediaTooLarge } from '../../net/bounded-read.ts';
import { chunkText } from '../../stream/chunker.ts';
import { ingestWithRetry } from '../ingest-retry.ts';
import type { AdapterContext, ChannelAdapter, FetchedMedia, MediaFetchOptions, SentReceipt } from '../types.ts';
import { AuthStateCorruptError, clearAuthState, type SqliteAuthState, useSqliteAuthState } from './auth-state.ts';
import { WHATSAPP_CAPABILITIES } from './capabilities.ts';
import { isIgnored, normalizeJid, parseBaileysMessage } from './parse.ts';
import { TokenBucket } from './rate-limit.ts';
import { createBaileysSocket, type Listener, type SocketFactory, type WASocketLike } from './socket.ts';

export { AuthStateCorruptError, useSqliteAuthState } from './auth-state.ts';
export { isIgnored, type ParseOptions, type ParseResult, parseBaileysMessage } from './parse.ts';
export type { SocketFactory, SocketFactoryOptions, WASocketLike } from './socket.ts';

/** Close codes after which reconnecting cannot help: the device must be linked again. */
const RELINK_REASONS: Record<number, string> = {
  401: 'logged out from the phone (401); link the device again',
  403: 'WhatsApp refused this session (403, the number may be restricted); link the device again',
  440: 'another WhatsApp Web session replaced this one (440); reconnect to take over again',
};

export const RECONNECT_BACKOFF = { baseMs: 2_000, maxMs: 30_000, factor: 1.8, jitter: 0.25 } as const;
/** A connection that stayed open this long resets the backoff. */
export const STABLE_CONNECTION_MS = 60_000;
/** Baileys shows the first QR of a connection for 60 s and each following one for 20 s. */
const FIRST_QR_TTL_MS = 60_000;
const NEXT_QR_TTL_MS = 20_000;
const PAIRING_WAIT_MS = 30_000;
const MAX_LID_MAPPINGS = 50_000;

export interface BaileysAdapterOptions {
  db: Database;
  socketFactory?: SocketFactory;
  clock?: Clock;
  /** Randomness for backoff and send jitter (tests pin it). */
  random?: () => number;
}

export interface DisconnectInfo {
  statusCode: number | null;
  reason: string;
  at: string;
}

export interface BaileysStatus {
  status: InstanceStatus;
  reason: string | null;
  lastDisconnect: DisconnectInfo | null;
  /** QR codes shown since the last successful open. */
  qrRounds: number;
  /** When the next reconnect attempt is due (ISO), if one is scheduled. */
  nextReconnectAt: string | null;
}

interface WhatsAppConfig {
  wsUrl?: string;
  selfMessages: boolean;
  groupMentionOnly: boolean;
  readReceipts: boolean;
  quoteReplies: boolean;
  sendRatePerSecond: number;
  sendBurst: number;
  sendJitterMs: number;
  maxQrRounds: number;
  version?: [number, number, number];
}

function bool(v: unknown, dflt: boolean): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') return ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());
  return dflt;
}

function num(v: unknown, dflt: number, min: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isFinite(n) && n >= min ? n : dflt;
}

function readConfig(raw: Record<string, unknown>): WhatsAppConfig {
  const env = typeof process !== 'undefined' ? process.env.WHATSAPP_WS_URL : undefined;
  const wsUrl = typeof raw.whatsapp_ws_url === 'string' && raw.whatsapp_ws_url ? raw.whatsapp_ws_url : env || undefined;
  let version: [number, number, number] | undefined;
  if (typeof raw.whatsapp_version === 'string' && /^\d+\.\d+\.\d+$/.test(raw.whatsapp_version)) {
    version = raw.whatsapp_version.split('.').map(Number) as [number, number, number];
  }
  return {
    wsUrl,
    selfMessages: bool(raw.whatsapp_self_messages, false),
    groupMentionOnly: bool(raw.whatsapp_group_mention_only, false),
    readReceipts: bool(raw.whatsapp_read_receipts, false),
    quoteReplies: bool(raw.whatsapp_quote_replies, false),
    sendRatePerSecond: num(raw.whatsapp_send_rate_per_second, 1, 0.01),
    sendBurst: num(raw.whatsapp_send_burst, 5, 1),
    sendJitterMs: num(raw.whatsapp_send_jitter_ms, 0, 0),
    maxQrRounds: Math.floor(num(raw.whatsapp_max_qr_rounds, 5, 1)),
    version,
  };
}

/** Status code of a Baileys close error (Boom: output.statusCode). */
export function disconnectCode(err: unknown): number | null {
  const e = err as { output?: { statusCode?: unknown }; statusCode?: unknown } | null | undefined;
  const code = e?.output?.statusCode ?? e?.statusCode;
  return typeof code === 'number' ? code : null;
}

/** "+55 11 9999-0001" / "5511999990001" / a JID → a JID; throws a permanent ChannelError. */
export function toJid(target: string): string {
  const t = target.trim();
  if (t.includes('@')) {
    if (!/^[\w.:+-]+@(s\.whatsapp\.net|c\.us|g\.us|lid|broadcast|newsletter)$/.test(t)) {
      throw new ChannelError(`invalid WhatsApp address: ${target}`, false, undefined, 400);
    }
    return t.endsWith('@c.us') ? t.replace('@c.us', '@s.whatsapp.net') : t;
  }
  const digits = t.replace(/[\s\-().+]/g, '');
  if (!/^\d{7,15}$/.test(digits)) throw new ChannelError(`invalid WhatsApp number: ${target}`, false, undefined, 400);
  return `${digits}@s.whatsapp.net`;
}

/** Stable WhatsApp message id from the idempotency key, in Baileys' own id format. */
function messageIdFor(idempotencyKey: string, part: number): string {
  const h = createHash('sha256').update(`${idempotencyKey}#${part}`).digest('hex').toUpperCase();
  return `3EB0${h.slice(0, 18)}`;
}

function toChannelError(err: unknown): ChannelError {
  if (err instanceof ChannelError) return err;
  const code = disconnectCode(err);
  const message = err instanceof Error ? err.message : String(err);
  // Baileys uses 408/428/440 for transport states; those and 429/5xx are worth retrying.
  const retryable = code === null || code >= 500 || [408, 428, 429, 440].includes(code);
  return new ChannelError(`WhatsApp send failed: ${message}`, retryable, undefined, code ?? undefined);
}

export class BaileysAdapter implements ChannelAdapter {
  readonly kind = 'whatsapp-baileys' as const;
  readonly capabilities = WHATSAPP_CAPABILITIES;

  private readonly db: Database;
  private readonly socketFactory: SocketFactory;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly backoff: Backoff;

  private ctx: AdapterContext | null = null;
  private log: Logger | null = null;
  private config: WhatsAppConfig = readConfig({});
  private auth: SqliteAuthState | null = null;
  private sock: WASocketLike | null = null;
  private listeners: Array<[string, Listener]> = [];
  /** Bumped whenever a socket is replaced or torn down; late events of old sockets are dropped. */
  private generation = 0;
  /** True when no reconnect may happen until start()/restart(). */
  private stopped = true;
  private reconnectTimer: Timer | null = null;
  private nextReconnectAt: number | null = null;
  private openedAt: number | null = null;
  private qrRounds = 0;
  private qrInConnection = 0;
  private qr: { qr: string; expiresAt: number } | null = null;
  private qrWaiters: Array<() => void> = [];
  private current: { status: InstanceStatus; reason: string | null } = { status: 'disconnected', reason: null };
  private lastDisconnectInfo: DisconnectInfo | null = null;
  private bucket: TokenBucket | null = null;
  private inboundChain: Promise<void> = Promise.resolve();
  private readonly lidToPhone = new RecentMap<string, string>(MAX_LID_MAPPINGS);
  private readonly knownNumbers = new Set<string>();

  constructor(opts: BaileysAdapterOptions) {
    this.db = opts.db;
    this.socketFactory = opts.socketFactory ?? createBaileysSocket;
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.backoff = new Backoff(RECONNECT_BACKOFF, this.random);
  }

  // ---- lifecycle -------------------------------------------------------------------------

  async start(ctx: AdapterContext): Promise<void> {
    this.ctx = ctx;
    this.log = ctx.log.child({ channel: 'whatsapp-baileys', instance: ctx.instance.id });
    this.config = readConfig(ctx.instance.config ?? {});
    this.bucket = new TokenBucket(this.config.sendRatePerSecond, this.config.sendBurst, this.clock);
    this.stopped = false;
    this.backoff.reset();
    this.qrRounds = 0;
    this.openSocket();
  }

  async stop(reason: string): Promise<void> {
    this.stopped = true;
    this.teardown();
    this.setStatus('disconnected', { reason, qr: null });
  }

  /** Drops the current socket and connects again with a fresh backoff and QR budget. */
  async restart(): Promise<void> {
    if (!this.ctx) throw new ChannelError('adapter not started', false, undefined, 409);
    this.teardown();
    this.stopped = false;
    this.backoff.reset();
    this.qrRounds = 0;
    this.openSocket();
  }

  /** Unlinks the device (when connected) and deletes the auth state. */
  async logout(): Promise<void> {
    const sock = this.sock;
    this.stopped = true;
    this.teardown({ keepSocket: true });
    if (sock) {
      try {
        await sock.logout();
      } catch (err) {
        this.log?.warn({ err }, 'whatsapp logout request failed; clearing local auth anyway');
      }
      try {
        sock.end(undefined);
      } catch {
        /* already closed */
      }
    }
    if (this.ctx) clearAuthState(this.db, this.ctx.instance.id);
    this.auth = null;
    this.setStatus('logged_out', { reason: 'logged out on request', qr: null });
  }

  status(): BaileysStatus {
    return {
      status: this.current.status,
      reason: this.current.reason,
      lastDisconnect: this.lastDisconnectInfo,
      qrRounds: this.qrRounds,
      nextReconnectAt: this.nextReconnectAt === null ? null : new Date(this.nextReconnectAt).toISOString(),
    };
  }

  get lastDisconnect(): DisconnectInfo | null {
    return this.lastDisconnectInfo;
  }

  /** The QR currently shown, while it is still valid. */
  currentQr(): { qr: string; expiresAt: string } | null {
    if (!this.qr || this.clock.now() >= this.qr.expiresAt) return null;
    return { qr: this.qr.qr, expiresAt: new Date(this.qr.expiresAt).toISOString() };
  }

  /** Links by phone number instead of QR: returns the 8-character code to type on the phone. */
  async requestPairingCode(phone: string): Promise<string> {
    const digits = phone.replace(/[\s\-().+]/g, '');
    if (!/^\d{7,15}$/.test(digits)) throw new ChannelError(`invalid phone number: ${phone}`, false, undefined, 400);
    if (!this.ctx) throw new ChannelError('adapter not started', false, undefined, 409);
    if (this.auth?.state.creds.registered)
      throw new ChannelError('this instance is already linked', false, undefined, 409);
    // A pairing request gives the user a fresh QR budget while they type the code.
    this.qrRounds = 0;
    if (!this.sock) {
      this.stopped = false;
      this.cancelReconnect();
      this.openSocket();
    }
    // Baileys accepts the request only once the server offered pairing (the first QR).
    if (!this.qr) await this.waitForQr();
    const sock = this.sock;
    if (!sock) throw new ChannelError('connection closed before pairing', true, undefined, 503);
    let code: string;
    try {
      code = await sock.requestPairingCode(digits);
    } catch (err) {
      throw toChannelError(err);
    }
    this.setStatus('connecting', { pairingCode: code });
    return code;
  }

  // ---- connection --------------------------------------------------------------------------

  private openSocket(): void {
    const ctx = this.ctx;
    if (this.stopped || !ctx) return;
    this.reconnectTimer = null;
    this.nextReconnectAt = null;
    let auth: SqliteAuthState;
    try {
      auth = useSqliteAuthState(this.db, ctx.instance.id);
    } catch (err) {
      if (err instanceof AuthStateCorruptError) return this.failCorrupt(err);
      this.log?.error({ err }, 'could not load whatsapp auth state');
      this.stopped = true;
      this.setStatus('error', { reason: `could not load auth state: ${(err as Error).message}` });
      return;
    }
    this.auth = auth;
    const gen = ++this.generation;
    this.qrInConnection = 0;
    this.setStatus('connecting');

    // A corrupt key row surfaces inside Baileys; notice it here and stop cleanly.
    const keys = auth.state.keys;
    const guardedKeys: typeof keys = {
      ...keys,
      get: (type, ids) => {
        try {
          return keys.get(type, ids);
        } catch (err) {
          if (err instanceof AuthStateCorruptError) queueMicrotask(() => this.failCorrupt(err, gen));
          throw err;
        }
      },
    };

    let sock: WASocketLike;
    try {
      sock = this.socketFactory({
        auth: { creds: auth.state.creds, keys: guardedKeys },
        waWebSocketUrl: this.config.wsUrl,
        logger: this.baileysLogger(),
        version: this.config.version,
      });
    } catch (err) {
      this.log?.error({ err }, 'whatsapp socket could not be created');
      this.onClose(gen, err);
      return;
    }
    this.sock = sock;
    const on = (event: string, fn: Listener) => {
      // Every handler is guarded: a malformed event is logged and skipped, never fatal.
      const guarded: Listener = (arg) => {
        if (gen !== this.generation) return;
        try {
          fn(arg);
        } catch (err) {
          this.log?.warn({ err, event }, 'whatsapp event handler failed; event skipped');
        }
      };
      sock.ev.on(event, guarded);
      this.listeners.push([event, guarded]);
    };
    on('connection.update', (u) => this.onConnectionUpdate(gen, u));
    on('creds.update', (update) => {
      if (update && typeof update === 'object') Object.assign(auth.state.creds, update);
      auth.saveCreds();
    });
    on('messages.upsert', (u) => {
      this.inboundChain = this.inboundChain
        .then(() => this.onUpsert(sock, u))
        .catch((err) => this.log?.error({ err }, 'whatsapp inbound handling failed'));
    });
    on('lid-mapping.update', (m) => this.learnLid(m?.lid, m?.pn));
    on('messaging-history.set', (h) => {
      for (const m of Array.isArray(h?.lidPnMappings) ? h.lidPnMappings : []) this.learnLid(m?.lid, m?.pn);
      for (const c of Array.isArray(h?.contacts) ? h.contacts : []) this.learnContact(c);
    });
    on('contacts.upsert', (list) => {
      for (const c of Array.isArray(list) ? list : []) this.learnContact(c);
    });
    on('presence.update', (p) => this.log?.trace({ presence: p }, 'whatsapp presence'));
  }

  private baileysLogger(): Logger {
    // Baileys logs a lot at info; keep its warnings and errors only.
    const base = this.log ?? this.ctx!.log;
    const quieter = base.levelVal > base.levels.values.warn ? base.level : 'warn';
    return base.child({ lib: 'baileys' }, { level: quieter });
  }

  private onConnectionUpdate(gen: number, u: unknown): void {
    if (!u || typeof u !== 'object') {
      this.log?.warn({ update: u }, 'malformed connection.update skipped');
      return;
    }
    const update = u as { connection?: string; qr?: unknown; lastDisconnect?: { error?: unknown } };
    if (typeof update.qr === 'string' && update.qr) this.onQr(update.qr);
    if (gen !== this.generation) return; // onQr may have stopped this socket
    if (update.connection === 'open') this.onOpen();
    else if (update.connection === 'close') this.onClose(gen, update.lastDisconnect?.error);
  }

  private onQr(qr: string): void {
    this.qrRounds++;
    if (this.qrRounds > this.config.maxQrRounds) {
      this.stopForQr();
      return;
    }
    const ttl = this.qrInConnection++ === 0 ? FIRST_QR_TTL_MS : NEXT_QR_TTL_MS;
    this.qr = { qr, expiresAt: this.clock.now() + ttl };
    this.setStatus('connecting', { qr });
    const waiters = this.qrWaiters;
    this.qrWaiters = [];
    for (const w of waiters) w();
  }

  private stopForQr(): void {
    const rounds = this.config.maxQrRounds;
    this.stopped = true;
    this.teardown();
    this.setStatus('disconnected', {
      reason: `QR not scanned after ${rounds} rounds; reconnect to try again`,
      qr: null,
    });
  }

  private onOpen(): void {
    this.openedAt = this.clock.monotonic();
    this.qrRounds = 0;
    this.qr = null;
    const user = this.sock?.user;
    this.log?.info({ user: user?.id }, 'whatsapp connected');
    this.setStatus('connected', { qr: null, pairingCode: null });
  }

  private onClose(gen: number, err: unknown): void {
    if (gen !== this.generation) return;
    this.detachSocket();
    this.qr = null;
    const code = disconnectCode(err);
    const message = err instanceof Error ? err.message : err ? String(err) : 'connection closed';
    this.lastDisconnectInfo = { statusCode: code, reason: message, at: new Date(this.clock.now()).toISOString() };
    const openFor = this.openedAt === null ? 0 : this.clock.monotonic() - this.openedAt;
    this.openedAt = null;
    if (this.stopped) return;

    const relink = code !== null ? RELINK_REASONS[code] : undefined;
    if (relink) {
      this.stopped = true;
      if (code === 401 && this.ctx) clearAuthState(this.db, this.ctx.instance.id);
      this.log?.warn({ code }, `whatsapp stopped: ${relink}`);
      this.setStatus('logged_out', { reason: relink, qr: null });
      return;
    }
    if (this.qrRounds >= this.config.maxQrRounds) {
      // Baileys closes (408) when its QR refs run out; do not open another round past the budget.
      this.stopForQr();
      return;
    }
    if (openFor >= STABLE_CONNECTION_MS) this.backoff.reset();
    const delay = this.backoff.next();
    this.nextReconnectAt = this.clock.now() + delay;
    const reason = `connection closed (${code ?? 'no code'}: ${message}); reconnecting in ${(delay / 1000).toFixed(1)} s`;
    this.log?.info({ code, delayMs: Math.round(delay), attempt: this.backoff.attempt }, reason);
    this.setStatus('connecting', { reason, qr: null });
    this.reconnectTimer = this.clock.setTimeout(() => this.openSocket(), delay);
  }

  private failCorrupt(err: AuthStateCorruptError, gen?: number): void {
    if (gen !== undefined && gen !== this.generation) return;
    this.stopped = true;
    this.teardown();
    this.log?.error({ err }, 'whatsapp auth state corrupt');
    this.setStatus('logged_out', { reason: `${err.message}; log out to clear it, then pair again`, qr: null });
  }

  private detachSocket(): void {
    const sock = this.sock;
    if (sock) for (const [event, fn] of this.listeners) sock.ev.off(event, fn);
    this.listeners = [];
    this.sock = null;
  }

  private cancelReconnect(): void {
    this.reconnectTimer?.cancel();
    this.reconnectTimer = null;
    this.nextReconnectAt = null;
  }

  /** Ends the current socket on purpose: its close event will not trigger a reconnect. */
  private teardown(opts: { keepSocket?: boolean } = {}): void {
    this.cancelReconnect();
    this.generation++;
    const sock = this.sock;
    this.detachSocket();
    this.qr = null;
    this.openedAt = null;
    if (sock && !opts.keepSocket) {
      try {
        sock.end(undefined);
      } catch (err) {
        this.log?.debug({ err }, 'socket end failed');
      }
    }
  }

  private waitForQr(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.qrWaiters = this.qrWaiters.filter((w) => w !== done);
        reject(new ChannelError('WhatsApp did not offer pairing in time', true, undefined, 504));
      }, PAIRING_WAIT_MS);
      const done = () => {
        timer.cancel();
        resolve();
      };
      this.qrWaiters.push(done);
    });
  }

  /** Records and reports a status; a status without a reason clears the previous reason. */
  private setStatus(
    status: InstanceStatus,
    detail: { reason?: string; qr?: string | null; pairingCode?: string | null } = {},
  ): void {
    this.current = { status, reason: detail.reason ?? null };
    this.ctx?.setStatus(status, detail);
  }

  // ---- inbound ---------------------------------------------------------------------------------

  private learnLid(lid: unknown, pn: unknown): void {
    if (typeof lid !== 'string' || typeof pn !== 'string' || !lid || !pn) return;
    this.lidToPhone.set(normalizeJid(lid), normalizeJid(pn));
  }

  private learnContact(c: unknown): void {
    const contact = c as { id?: unknown; lid?: unknown; phoneNumber?: unknown } | null;
    if (!contact) return;
    const id = typeof contact.id === 'string' ? contact.id : undefined;
    const lid = typeof contact.lid === 'string' ? contact.lid : id?.endsWith('@lid') ? id : undefined;
    const pn =
      typeof contact.phoneNumber === 'string' ? contact.phoneNumber : id?.endsWith('@s.whatsapp.net') ? id : undefined;
    if (lid && pn) this.learnLid(lid, pn);
  }

  private async onUpsert(sock: WASocketLike, u: unknown): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    const upsert = u as { messages?: unknown; type?: unknown } | null;
    if (!upsert || typeof upsert !== 'object' || !Array.isArray(upsert.messages)) {
      this.log?.warn({ event: u }, 'malformed messages.upsert skipped');
      return;
    }
    if (upsert.type !== 'notify') return; // 'append' = history/own-device sync, not new traffic
    const user = sock.user ?? this.auth?.state.creds.me;
    for (const raw of upsert.messages) {
      let parsed;
      try {
        parsed = parseBaileysMessage(raw as any, {
          instanceId: ctx.instance.id,
          selfMessages: this.config.selfMessages,
          groupMentionOnly: this.config.groupMentionOnly,
          selfIds: [user?.id, (user as { lid?: string } | undefined)?.lid],
          lidToPhone: (lid) => this.lidToPhone.get(lid),
          nowMs: this.clock.now(),
        });
      } catch (err) {
        this.log?.warn({ err }, 'malformed whatsapp message skipped');
        continue;
      }
      if (isIgnored(parsed)) {
        if (parsed.ignored.startsWith('malformed'))
          this.log?.warn({ reason: parsed.ignored }, 'malformed whatsapp message skipped');
        else this.log?.debug({ reason: parsed.ignored }, 'whatsapp message ignored');
        continue;
      }
      try {
        // Runs inside inboundChain, so a message waiting out an overload keeps its place in line.
        await ingestWithRetry(ctx, parsed, { clock: this.clock, log: this.log });
      } catch (err) {
        this.log?.error(
          { err, messageId: parsed.providerMessageId },
          'whatsapp message could not be stored after retries',
        );
        continue;
      }
      if (this.config.readReceipts && !parsed.fromOwner) {
        const key = parsed.extra?.key as { remoteJid: string; id: string; participant?: string } | undefined;
        if (key)
          sock
            .readMessages([{ ...key, fromMe: false }])
            .catch((err) => this.log?.debug({ err }, 'read receipt failed'));
      }
    }
  }

  // ---- outbound --------------------------------------------------------------------------------

  async send(
    to: ChatRef,
    out: OutboundMessage,
    opts: { idempotencyKey: string; inbound?: InboundMessage },
  ): Promise<SentReceipt> {
    const jid = toJid(to.chatId);
    const sock = this.requireSocket();
    if (!opts.inbound) await this.checkNumber(sock, jid);

    if (out.reaction) {
      const fromInbound = opts.inbound?.providerMessageId === out.reaction.messageId ? opts.inbound : undefined;
      const key = {
        remoteJid: jid,
        id: out.reaction.messageId,
        fromMe: fromInbound?.fromOwner ?? false,
        ...(fromInbound && to.kind === 'group' ? { participant: fromInbound.sender.id } : {}),
      };
      const id = await this.sendOne(
        sock,
        jid,
        { react: { text: out.reaction.emoji, key } },
        { messageId: messageIdFor(opts.idempotencyKey, 0) },
      );
      return { platformMessageId: id };
    }

    const quoted = this.config.quoteReplies && opts.inbound ? this.quotedFor(opts.inbound, jid) : undefined;
    let part = 0;
    let lastId = '';
    const text = out.text ?? '';

    if (out.media) {
      const m = out.media;
      const source = m.url ? { url: m.url } : m.base64 ? Buffer.from(m.base64, 'base64') : undefined;
      if (!source) throw new ChannelError('media needs a url or base64 content', false, undefined, 400);
      const caption = m.caption ?? (text || undefined);
      let content: Record<string, unknown>;
      switch (m.mediaType) {
        case 'image':
          content = { image: source, caption };
          break;
        case 'video':
          content = { video: source, caption };
          break;
        case 'audio':
          content = {
            audio: source,
            ptt: m.voiceNote ?? false,
            mimetype: m.voiceNote ? 'audio/ogg; codecs=opus' : 'audio/mpeg',
          };
          break;
        case 'document':
          content = { document: source, fileName: m.filename ?? 'file', mimetype: 'application/octet-stream', caption };
          break;
        default:
          throw new ChannelError(`unsupported media type ${String(m.mediaType)}`, false, undefined, 400);
      }
      lastId = await this.sendOne(sock, jid, content, {
        messageId: messageIdFor(opts.idempotencyKey, part++),
        ...(quoted ? { quoted } : {}),
      });
      // Audio has no caption; a text that was not used as caption follows as its own message.
      const textUsed = m.mediaType !== 'audio' && caption === text;
      if (!text || textUsed) return { platformMessageId: lastId };
    }

    const max = this.maxText();
    const chunks = chunkText(text, { maxChars: max });
    if (chunks.length === 0) throw new ChannelError('nothing to send: empty text', false, undefined, 400);
    for (const chunk of chunks) {
      const first = part === 0;
      lastId = await this.sendOne(
        sock,
        jid,
        { text: chunk, linkPreview: null },
        { messageId: messageIdFor(opts.idempotencyKey, part++), ...(first && quoted ? { quoted } : {}) },
      );
    }
    return { platformMessageId: lastId };
  }

  /** A received message's media, downloaded and decrypted through the open socket. */
  async fetchMedia(item: InboundMedia, opts: MediaFetchOptions): Promise<FetchedMedia> {
    const sock = this.sock;
    if (!sock) throw new ChannelError('WhatsApp is not connected', true);
    if (!sock.downloadMedia) throw new ChannelError('this WhatsApp socket cannot download media', false);
    const stored = (item.ref as { waMessage?: unknown } | undefined)?.waMessage;
    if (!stored) throw new ChannelError('the message has no media reference', false);
    const message = JSON.parse(JSON.stringify(stored), BufferJSON.reviver) as { key: unknown; message: unknown };
    let bytes: Uint8Array;
    try {
      bytes = await sock.downloadMedia(message);
    } catch (err) {
      const status = (err as { output?: { statusCode?: number } })?.output?.statusCode;
      // WhatsApp's media links expire (about two weeks): gone is gone.
      throw new ChannelError(
        `WhatsApp media download failed: ${(err as Error)?.message ?? String(err)}`,
        status === undefined || status >= 500 || status === 408,
      );
    }
    if (opts.signal.aborted) throw opts.signal.reason;
    if (bytes.byteLength > opts.maxBytes) throw new MediaTooLarge(opts.maxBytes);
    return { bytes, mimeType: item.mimeType };
  }

  async typing(to: ChatRef, on: boolean): Promise<void> {
    const sock = this.sock;
    if (!sock) return; // best effort: no connection, no indicator
    try {
      await sock.sendPresenceUpdate(on ? 'composing' : 'paused', toJid(to.chatId));
    } catch (err) {
      this.log?.debug({ err }, 'presence update failed');
    }
  }

  private maxText(): number {
    const override = this.ctx?.instance.settings?.maxTextLength;
    return typeof override === 'number' && override > 0
      ? Math.min(override, WHATSAPP_CAPABILITIES.maxText)
      : WHATSAPP_CAPABILITIES.maxText;
  }

  private requireSocket(): WASocketLike {
    if (!this.sock || this.current.status !== 'connected') {
      throw new ChannelError(`WhatsApp is not connected (${this.current.status})`, true, undefined, 503);
    }
    return this.sock;
  }

  /** For sends nobody asked for (no inbound): refuse numbers that are not on WhatsApp. */
  private async checkNumber(sock: WASocketLike, jid: string): Promise<void> {
    if (!jid.endsWith('@s.whatsapp.net') || !sock.onWhatsApp || this.knownNumbers.has(jid)) return;
    let result: Array<{ jid: string; exists: boolean }> | undefined;
    try {
      result = await sock.onWhatsApp(jid);
    } catch (err) {
      this.log?.debug({ err }, 'onWhatsApp check failed; sending anyway');
      return;
    }
    if (result && result.length > 0 && result.every((r) => !r.exists)) {
      throw new ChannelError(`${jid.split('@')[0]} is not on WhatsApp`, false, undefined, 404);
    }
    if (result?.some((r) => r.exists)) this.knownNumbers.add(jid);
  }

  private quotedFor(inbound: InboundMessage, jid: string): Record<string, unknown> {
    const key = (inbound.extra?.key as Record<string, unknown> | undefined) ?? {
      remoteJid: jid,
      id: inbound.providerMessageId,
      fromMe: inbound.fromOwner ?? false,
      ...(inbound.chat.kind === 'group' ? { participant: inbound.sender.id } : {}),
    };
    // Baileys builds the quote from key + message; the text is enough (no media re-upload).
    return { key, message: { conversation: inbound.text } };
  }

  private async sendOne(
    sock: WASocketLike,
    jid: string,
    content: Record<string, unknown>,
    options: Record<string, unknown>,
  ): Promise<string> {
    const wait = this.bucket ? this.bucket.reserve() : 0;
    const jitter = this.config.sendJitterMs > 0 ? this.random() * this.config.sendJitterMs : 0;
    if (wait + jitter > 0) await this.clock.sleep(wait + jitter);
    if (this.sock !== sock)
      throw new ChannelError('WhatsApp connection was replaced before sending', true, undefined, 503);
    try {
      const sent = await sock.sendMessage(jid, content, options);
      return sent?.key?.id ?? String(options.messageId);
    } catch (err) {
      throw toChannelError(err);
    }
  }
}
