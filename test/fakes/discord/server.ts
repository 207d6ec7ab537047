// A local stand-in for Discord's REST API (v10) and gateway, enough for discord.js 14 to log in
// and work unchanged: GET /gateway/bot → our WebSocket; HELLO → IDENTIFY → READY + GUILD_CREATE;
// heartbeats → ACK; RESUME → replay of missed dispatches + RESUMED. REST writes are recorded in
// `sent`; POST /channels/{id}/messages dedupes by nonce when enforce_nonce is set, as Discord does.
// Dispatch payload shapes come from the captured real payloads in test/fixtures.
import type { Server, ServerWebSocket } from 'bun';
import payloads from '../../fixtures/discord-gateway-real-payloads.json';

export interface RestCall {
  method: string;
  path: string; // without /api/v10
  body: any;
  at: number;
  status: number;
}

export interface PostedMessage {
  id: string;
  channel_id: string;
  content: string;
  nonce?: string | number;
  message_reference?: { message_id: string };
}

interface Failure {
  method: string;
  path: RegExp;
  status: number;
  retryAfterSec?: number;
  remaining: number;
}

export interface FakeDiscordOptions {
  token?: string;
  heartbeatIntervalMs?: number;
}

type GatewaySocket = ServerWebSocket<{ id: number }>;

const DM_TEMPLATE = payloads.messages.MESSAGE_CREATE[0].payload;
const GUILD_TEMPLATE = payloads.guild.GUILD_CREATE[0].payload;
const READY_TEMPLATE = payloads.connection.READY[0].payload;

export const BOT_USER = { ...READY_TEMPLATE.user, id: '747922925146996746', username: 'SwitchboardBot', bot: true };
export const HUMAN = DM_TEMPLATE.author; // id 230869302276784128
export const OTHER_BOT = {
  id: '235088799074484224',
  username: 'OtherBot',
  discriminator: '3722',
  global_name: null,
  avatar: null,
  bot: true,
};
export const GUILD_ID = GUILD_TEMPLATE.id;
export const DM_CHANNEL_ID = DM_TEMPLATE.channel_id;
export const TEXT_CHANNEL_ID = '720034209007140968';
export const OTHER_TEXT_CHANNEL_ID = '720794245564465183';
export const THREAD_ID = '1467363183181303818';

let snowflakeSeq = 0n;
function snowflake(): string {
  return (((BigInt(Date.now()) - 1420070400000n) << 22n) | (snowflakeSeq++ & 0xfffn)).toString();
}

export class FakeDiscord {
  readonly token: string;
  readonly sent: RestCall[] = [];
  readonly messages: PostedMessage[] = [];
  readonly gatewayOps: Array<{ op: number; t?: string }> = [];
  identifies = 0;
  resumes = 0;
  heartbeats = 0;
  private server!: Server<{ id: number }>;
  private socket: GatewaySocket | null = null;
  private sessionId = '';
  private seq = 0;
  /** Dispatches sent (or due) in this session, for RESUME replay. */
  private backlog: Array<{ s: number; t: string; d: unknown }> = [];
  private failures: Failure[] = [];
  private socketSeq = 0;
  /** Interaction token → channel, so deferred/original responses land in the right channel. */
  private interactionChannels = new Map<string, string>();
  private readonly heartbeatIntervalMs: number;

  constructor(opts: FakeDiscordOptions = {}) {
    this.token = opts.token ?? 'fake-bot-token';
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 1000;
  }

  get port(): number {
    return this.server.port!;
  }
  /** Value for the instance's discord_api_url / discord.js `rest.api`. */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api`;
  }
  get connected(): boolean {
    return this.socket !== null;
  }

  start(): this {
    this.server = Bun.serve<{ id: number }>({
      hostname: '127.0.0.1',
      port: 0,
      fetch: (req, server) => {
        const url = new URL(req.url);
        if (url.pathname === '/' && req.headers.get('upgrade')?.toLowerCase() === 'websocket') {
          if (server.upgrade(req, { data: { id: ++this.socketSeq } })) return undefined;
          return new Response('upgrade failed', { status: 400 });
        }
        return this.rest(req, url);
      },
      websocket: {
        open: (ws) => this.onOpen(ws),
        message: (ws, raw) => this.onFrame(ws, raw),
        close: (ws) => {
          if (this.socket === ws) this.socket = null;
        },
      },
    });
    return this;
  }

  async close(): Promise<void> {
    this.socket?.close(1000);
    await this.server.stop(true);
  }

  // ---- test controls -----------------------------------------------------------------------

  /** Make the next `times` requests matching method+path fail with `status` (429 carries retry_after). */
  failNext(method: string, path: RegExp, status: number, opts: { times?: number; retryAfterSec?: number } = {}): void {
    this.failures.push({ method, path, status, retryAfterSec: opts.retryAfterSec, remaining: opts.times ?? 1 });
  }

  /** Close the gateway socket with a resumable code; discord.js reconnects and RESUMEs. */
  dropConnection(code = 4000): void {
    this.socket?.close(code, 'dropped by test');
    this.socket = null;
  }

  /** Send (or queue for RESUME, when disconnected) a gateway dispatch. */
  dispatch(t: string, d: unknown): void {
    const s = ++this.seq;
    this.backlog.push({ s, t, d });
    if (this.backlog.length > 500) this.backlog.shift();
    this.socket?.send(JSON.stringify({ op: 0, t, s, d }));
  }

  /** Dispatch a MESSAGE_CREATE built on the captured real payload. Returns the message id. */
  dispatchMessage(m: {
    content: string;
    channelId?: string;
    guild?: boolean;
    author?: Record<string, unknown>;
    mentions?: Array<Record<string, unknown>>;
    type?: number;
    attachments?: Array<Record<string, unknown>>;
    referencedMessage?: Record<string, unknown>;
    id?: string;
  }): string {
    const id = m.id ?? snowflake();
    const guild = m.guild ?? false;
    const d: Record<string, unknown> = {
      ...DM_TEMPLATE,
      id,
      content: m.content,
      type: m.type ?? (m.referencedMessage ? 19 : 0),
      channel_id: m.channelId ?? (guild ? TEXT_CHANNEL_ID : DM_CHANNEL_ID),
      author: m.author ?? HUMAN,
      mentions: m.mentions ?? [],
      attachments: m.attachments ?? [],
      timestamp: new Date().toISOString(),
      nonce: undefined,
    };
    if (guild) {
      d.guild_id = GUILD_ID;
      d.member = {
        roles: [],
        joined_at: '2020-06-11T23:36:58.359000+00:00',
        nick: null,
        deaf: false,
        mute: false,
        flags: 0,
      };
      delete d.channel_type;
    }
    if (m.referencedMessage) {
      d.referenced_message = m.referencedMessage;
      d.message_reference = {
        type: 0,
        message_id: m.referencedMessage.id,
        channel_id: d.channel_id,
        ...(guild ? { guild_id: GUILD_ID } : {}),
      };
    }
    this.dispatch('MESSAGE_CREATE', d);
    return id;
  }

  /** A `/ask` slash command invocation (INTERACTION_CREATE, type 2). Returns the interaction id. */
  dispatchAsk(text: string, opts: { channelId?: string } = {}): { id: string; token: string } {
    const id = snowflake();
    const token = `interaction-token-${id}`;
    const channelId = opts.channelId ?? TEXT_CHANNEL_ID;
    this.interactionChannels.set(token, channelId);
    this.dispatch('INTERACTION_CREATE', {
      id,
      token,
      type: 2,
      version: 1,
      application_id: BOT_USER.id,
      guild_id: GUILD_ID,
      channel_id: channelId,
      channel: { id: channelId, type: 0, guild_id: GUILD_ID, name: 'Test', parent_id: null },
      member: {
        user: HUMAN,
        roles: [],
        joined_at: '2020-06-11T23:36:58.359000+00:00',
        deaf: false,
        mute: false,
        flags: 0,
        permissions: '2248473465835073',
      },
      app_permissions: '2248473465835073',
      locale: 'en-US',
      guild_locale: 'en-US',
      entitlements: [],
      authorizing_integration_owners: { '0': GUILD_ID },
      context: 0,
      data: {
        id: '1000000000000000001',
        name: 'ask',
        type: 1,
        guild_id: GUILD_ID,
        options: [{ name: 'message', type: 3, value: text }],
      },
    });
    return { id, token };
  }

  /** Resolves when `pred` holds (polling), or rejects after `timeoutMs`. */
  async waitFor<T>(pred: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v) return v;
      if (Date.now() > deadline) throw new Error('FakeDiscord.waitFor timed out');
      await Bun.sleep(10);
    }
  }

  // ---- gateway -----------------------------------------------------------------------------

  private onOpen(ws: GatewaySocket): void {
    this.socket?.close(4000, 'replaced');
    this.socket = ws;
    ws.send(
      JSON.stringify({
        op: 10,
        d: { heartbeat_interval: this.heartbeatIntervalMs, _trace: ['fake-gateway'] },
        s: null,
        t: null,
      }),
    );
  }

  private onFrame(ws: GatewaySocket, raw: string | Buffer): void {
    let frame: { op: number; d: any };
    try {
      frame = JSON.parse(String(raw));
    } catch {
      ws.close(4002, 'Error while decoding payload.');
      return;
    }
    this.gatewayOps.push({ op: frame.op });
    switch (frame.op) {
      case 1: // heartbeat
        this.heartbeats++;
        ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
        return;
      case 2: // identify
        if (frame.d?.token !== this.token) {
          ws.close(4004, 'Authentication failed.');
          return;
        }
        this.identifies++;
        this.sessionId = crypto.randomUUID().replace(/-/g, '');
        this.seq = 0;
        this.backlog = [];
        this.dispatch('READY', {
          ...READY_TEMPLATE,
          user: BOT_USER,
          session_id: this.sessionId,
          resume_gateway_url: `ws://127.0.0.1:${this.port}`,
          guilds: [{ id: GUILD_ID, unavailable: true }],
          private_channels: [],
          application: { id: BOT_USER.id, flags: READY_TEMPLATE.application.flags },
          shard: [0, 1],
        });
        this.dispatch('GUILD_CREATE', this.guildPayload());
        return;
      case 6: {
        // resume: replay what the client missed, then RESUMED
        const { session_id, seq } = frame.d ?? {};
        if (session_id !== this.sessionId) {
          ws.send(JSON.stringify({ op: 9, d: false, s: null, t: null }));
          return;
        }
        this.resumes++;
        for (const e of this.backlog) if (e.s > seq) ws.send(JSON.stringify({ op: 0, t: e.t, s: e.s, d: e.d }));
        ws.send(JSON.stringify({ op: 0, t: 'RESUMED', s: ++this.seq, d: { _trace: ['fake-gateway'] } }));
        return;
      }
      default:
        return; // presence/voice updates etc. are accepted and ignored
    }
  }

  private guildPayload(): Record<string, unknown> {
    return {
      ...GUILD_TEMPLATE,
      members: [
        ...GUILD_TEMPLATE.members,
        {
          user: BOT_USER,
          roles: [],
          joined_at: '2020-06-12T00:16:17.927000+00:00',
          deaf: false,
          mute: false,
          flags: 0,
        },
      ],
      threads: [
        {
          id: THREAD_ID,
          type: 11,
          guild_id: GUILD_ID,
          parent_id: TEXT_CHANNEL_ID,
          owner_id: HUMAN.id,
          name: 'A thread',
          last_message_id: null,
          rate_limit_per_user: 0,
          message_count: 0,
          member_count: 1,
          flags: 0,
          thread_metadata: {
            archived: false,
            auto_archive_duration: 4320,
            archive_timestamp: '2026-02-01T03:37:39.429217+00:00',
            locked: false,
          },
        },
      ],
    };
  }

  // ---- REST --------------------------------------------------------------------------------

  private async rest(req: Request, url: URL): Promise<Response> {
    const m = url.pathname.match(/^\/api\/v10(\/.*)$/);
    if (!m) return json(404, { message: '404: Not Found', code: 0 });
    const path = decodeURIComponent(m[1]);
    const method = req.method;
    const body = await readBody(req);
    const record = (status: number) => this.sent.push({ method, path, body, at: Date.now(), status });

    const failure = this.failures.find((f) => f.method === method && f.path.test(path) && f.remaining > 0);
    if (failure) {
      failure.remaining--;
      record(failure.status);
      if (failure.status === 429) {
        const after = failure.retryAfterSec ?? 1;
        return json(
          429,
          { message: 'You are being rate limited.', retry_after: after, global: false },
          {
            'Retry-After': String(after),
            'X-RateLimit-Limit': '5',
            'X-RateLimit-Remaining': '0',
            'X-RateLimit-Reset-After': String(after),
            'X-RateLimit-Bucket': `fake-bucket-${path.split('/')[2]}`,
            'X-RateLimit-Scope': 'user',
          },
        );
      }
      return json(failure.status, {
        message: failure.status >= 500 ? 'Internal Server Error' : 'Missing Access',
        code: failure.status >= 500 ? 0 : 50001,
      });
    }

    // Interaction webhooks authenticate by token in the path; everything else needs the bot token.
    const tokenRoute = path.startsWith('/interactions/') || path.startsWith('/webhooks/');
    if (!tokenRoute && req.headers.get('authorization') !== `Bot ${this.token}`) {
      record(401);
      return json(401, { message: '401: Unauthorized', code: 0 });
    }

    let r: RegExpMatchArray | null;
    if (method === 'GET' && path === '/gateway/bot') {
      record(200);
      return json(200, {
        url: `ws://127.0.0.1:${this.port}`,
        shards: 1,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 14400000, max_concurrency: 1 },
      });
    }
    if (method === 'GET' && path === '/users/@me') {
      record(200);
      return json(200, BOT_USER);
    }
    if (method === 'GET' && (r = path.match(/^\/channels\/(\d+)$/))) {
      record(200);
      const id = r[1];
      if (id === DM_CHANNEL_ID) return json(200, { id, type: 1, last_message_id: null, recipients: [HUMAN], flags: 0 });
      const ch = (GUILD_TEMPLATE.channels as Array<{ id: string }>).find((c) => c.id === id);
      return ch ? json(200, { ...ch, guild_id: GUILD_ID }) : json(404, { message: 'Unknown Channel', code: 10003 });
    }
    if (method === 'POST' && (r = path.match(/^\/channels\/(\d+)\/messages$/))) {
      const channelId = r[1];
      if (body?.enforce_nonce && body.nonce !== undefined) {
        const existing = this.messages.find((x) => x.channel_id === channelId && x.nonce === body.nonce);
        if (existing) {
          record(200);
          return json(200, this.messageObject(existing));
        }
      }
      const msg: PostedMessage = {
        id: snowflake(),
        channel_id: channelId,
        content: body?.content ?? '',
        nonce: body?.nonce,
        message_reference: body?.message_reference,
      };
      this.messages.push(msg);
      record(200);
      return json(200, this.messageObject(msg));
    }
    if (method === 'PATCH' && (r = path.match(/^\/channels\/(\d+)\/messages\/(\d+)$/))) {
      const msg = this.messages.find((x) => x.channel_id === r![1] && x.id === r![2]);
      if (!msg) {
        record(404);
        return json(404, { message: 'Unknown Message', code: 10008 });
      }
      if (typeof body?.content === 'string') msg.content = body.content;
      record(200);
      return json(200, this.messageObject(msg));
    }
    if (method === 'POST' && path.match(/^\/channels\/\d+\/typing$/)) {
      record(204);
      return new Response(null, { status: 204 });
    }
    if (method === 'PUT' && path.match(/^\/channels\/\d+\/messages\/\d+\/reactions\/[^/]+\/@me$/)) {
      record(204);
      return new Response(null, { status: 204 });
    }
    if (method === 'PUT' && (r = path.match(/^\/applications\/(\d+)\/guilds\/(\d+)\/commands$/))) {
      record(200);
      const cmds = Array.isArray(body) ? body : [];
      return json(
        200,
        cmds.map((c: any) => ({ ...c, id: snowflake(), application_id: r![1], guild_id: r![2], version: snowflake() })),
      );
    }
    if (method === 'POST' && (r = path.match(/^\/interactions\/\d+\/([^/]+)\/callback$/))) {
      // types 4 (message) and 5 (deferred "thinking…") create the original response message
      const token = r[1];
      if ((body?.type === 4 || body?.type === 5) && !this.originalOf(token)) {
        this.messages.push({
          id: snowflake(),
          channel_id: this.interactionChannels.get(token) ?? 'unknown',
          content: body?.data?.content ?? '',
          nonce: `@original:${token}`,
        });
      }
      record(204);
      return new Response(null, { status: 204 });
    }
    if (
      (method === 'PATCH' || method === 'POST') &&
      (r = path.match(/^\/webhooks\/(\d+)\/([^/]+)(?:\/messages\/([^/]+))?$/))
    ) {
      const [, , token, target] = r;
      const channelId = this.interactionChannels.get(token);
      if (!channelId) {
        record(401);
        return json(401, { message: 'Invalid Webhook Token', code: 50027 });
      }
      let msg: PostedMessage | undefined;
      if (method === 'PATCH') {
        msg =
          target === '@original'
            ? this.originalOf(token)
            : this.messages.find((x) => x.channel_id === channelId && x.id === target);
        if (!msg) {
          record(404);
          return json(404, { message: 'Unknown Message', code: 10008 });
        }
        if (typeof body?.content === 'string') msg.content = body.content;
      } else {
        msg = { id: snowflake(), channel_id: channelId, content: body?.content ?? '' };
        this.messages.push(msg);
      }
      record(200);
      return json(200, this.messageObject(msg));
    }
    record(404);
    return json(404, { message: '404: Not Found', code: 0 });
  }

  private originalOf(token: string): PostedMessage | undefined {
    return this.messages.find((x) => x.nonce === `@original:${token}`);
  }

  private messageObject(m: PostedMessage): Record<string, unknown> {
    return {
      id: m.id,
      channel_id: m.channel_id,
      type: m.message_reference ? 19 : 0,
      content: m.content,
      author: BOT_USER,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: [],
      embeds: [],
      pinned: false,
      flags: 0,
      components: [],
      ...(m.nonce !== undefined && !String(m.nonce).startsWith('@original') ? { nonce: m.nonce } : {}),
      ...(m.message_reference
        ? { message_reference: { type: 0, channel_id: m.channel_id, ...m.message_reference } }
        : {}),
    };
  }
}

async function readBody(req: Request): Promise<any> {
  const type = req.headers.get('content-type') ?? '';
  if (type.includes('application/json')) return req.json().catch(() => null);
  if (type.includes('multipart/form-data')) {
    // discord.js sends JSON in `payload_json` plus files[n] parts.
    const form = await req.formData();
    const payload = form.get('payload_json');
    const parsed = typeof payload === 'string' ? JSON.parse(payload) : {};
    const files: Array<{ name: string; size: number }> = [];
    for (const [k, v] of form.entries())
      if (k.startsWith('files[') && typeof v !== 'string')
        files.push({ name: (v as File).name, size: (v as File).size });
    return { ...parsed, files };
  }
  const text = await req.text();
  return text ? text : null;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

export async function startFakeDiscord(opts: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  return new FakeDiscord(opts).start();
}
