// A local stand-in for the Telegram Bot API (https://api.telegram.org/bot<token>/<method>), set as
// an instance's telegram_api_url. grammY talks to it unchanged: JSON (or multipart) POSTs, answers
// `{ok: true, result}` or `{ok: false, error_code, description, parameters?}`. Every call is
// recorded; updates queued with push() are served by getUpdates (offset confirms, like Telegram).
import type { Server } from 'bun';
import type { Update } from 'grammy/types';

export interface RecordedCall {
  method: string;
  token: string;
  params: Record<string, any>;
  at: number;
}

/** A canned answer for one call instead of the normal one. */
export type CannedReply =
  | { status: 429; retryAfter: number }
  | { status: number; description: string }
  /** Answer normally (lets a test fail the 2nd call but not the 1st). */
  | { passThrough: true };

export interface FakeTelegramOptions {
  token?: string;
  botId?: number;
  username?: string;
  /** Longest a getUpdates with nothing to deliver is held (whatever `timeout` asks), ms. */
  maxHoldMs?: number;
}

/** Characters MarkdownV2 requires escaped outside entities (core.telegram.org/bots/api#markdownv2-style). */
const MARKDOWN_V2_SPECIALS = /(?<!\\)[_*[\]()~`>#+\-=|{}.!]/;

export class FakeTelegram {
  readonly calls: RecordedCall[] = [];
  readonly token: string;
  readonly botId: number;
  readonly username: string;
  webhook: { url: string; secretToken: string | null; allowedUpdates: string[] | null } | null = null;
  private readonly maxHoldMs: number;
  private readonly queue: Update[] = [];
  private readonly canned = new Map<string, CannedReply[]>();
  private readonly texts = new Map<string, string>(); // chat:message → current text
  private waiters: Array<() => void> = [];
  private server: Server<undefined> | null = null;
  private messageSeq = 1000;
  /** Files getFile knows (file_id → bytes), served at /file/bot<token>/<file_path>. */
  readonly files = new Map<string, Uint8Array>();
  private updateSeq = 500;

  constructor(opts: FakeTelegramOptions = {}) {
    this.token = opts.token ?? '123456:TEST-token-abcdefghijklmnopqrstuvwxyz';
    this.botId = opts.botId ?? 123456;
    this.username = opts.username ?? 'switchboard_test_bot';
    this.maxHoldMs = opts.maxHoldMs ?? 300;
  }

  start(): this {
    this.server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: (req) => this.handle(req) });
    return this;
  }

  async stop(): Promise<void> {
    for (const w of this.waiters.splice(0)) w();
    await this.server?.stop(true);
    this.server = null;
  }

  /** The telegram_api_url (grammY's apiRoot: no trailing slash). */
  get apiUrl(): string {
    if (!this.server) throw new Error('fake Telegram not started');
    return `http://127.0.0.1:${this.server.port}`;
  }

  /** Queues an update for getUpdates; returns it with its update_id. */
  push(update: Omit<Update, 'update_id'> & { update_id?: number }): Update {
    const u = { update_id: update.update_id ?? ++this.updateSeq, ...update } as Update;
    this.queue.push(u);
    for (const w of this.waiters.splice(0)) w();
    return u;
  }

  /** Updates served but not yet confirmed by a later offset. */
  get pending(): number {
    return this.queue.length;
  }

  failNext(method: string, ...replies: CannedReply[]): void {
    this.canned.set(method, [...(this.canned.get(method) ?? []), ...replies]);
  }

  callsOf(method: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  private async handle(req: Request): Promise<Response> {
    const file = /^\/file\/bot([^/]+)\/files\/(.+)$/.exec(new URL(req.url).pathname);
    if (file) {
      this.calls.push({ method: 'file', token: file[1], params: { path: file[2] }, at: Date.now() });
      const bytes = file[1] === this.token ? this.files.get(decodeURIComponent(file[2])) : undefined;
      return bytes ? new Response(bytes as Uint8Array<ArrayBuffer>) : new Response('Not Found', { status: 404 });
    }
    const m = /^\/bot([^/]+)\/(\w+)$/.exec(new URL(req.url).pathname);
    if (!m) return json(404, { ok: false, error_code: 404, description: 'Not Found' });
    const [, token, method] = m;
    const params = await readParams(req);
    this.calls.push({ method, token, params, at: Date.now() });
    if (token !== this.token) return json(401, { ok: false, error_code: 401, description: 'Unauthorized' });
    const canned = this.canned.get(method)?.shift();
    if (canned && !('passThrough' in canned)) {
      if ('retryAfter' in canned)
        return json(429, {
          ok: false,
          error_code: 429,
          description: `Too Many Requests: retry after ${canned.retryAfter}`,
          parameters: { retry_after: canned.retryAfter },
        });
      return json(canned.status, { ok: false, error_code: canned.status, description: canned.description });
    }
    return this.answer(method, params);
  }

  private async answer(method: string, p: Record<string, any>): Promise<Response> {
    const ok = (result: unknown) => json(200, { ok: true, result });
    const bad = (description: string) => json(400, { ok: false, error_code: 400, description });
    switch (method) {
      case 'getMe':
        return ok({
          id: this.botId,
          is_bot: true,
          first_name: 'Switchboard Test',
          username: this.username,
          can_join_groups: true,
          can_read_all_group_messages: false,
          supports_inline_queries: false,
          can_connect_to_business: false,
          has_main_web_app: false,
        });
      case 'setWebhook':
        this.webhook = {
          url: p.url,
          secretToken: p.secret_token ?? null,
          allowedUpdates: asArray(p.allowed_updates),
        };
        return ok(true);
      case 'deleteWebhook':
        this.webhook = null;
        return ok(true);
      case 'getUpdates': {
        if (this.webhook)
          return json(409, {
            ok: false,
            error_code: 409,
            description:
              "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
          });
        const offset = Number(p.offset ?? 0);
        // An offset confirms every update before it: they are never sent again.
        if (offset > 0)
          for (let i = this.queue.length - 1; i >= 0; i--)
            if (this.queue[i].update_id < offset) this.queue.splice(i, 1);
        if (this.queue.length === 0 && Number(p.timeout ?? 0) > 0) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, Math.min(this.maxHoldMs, Number(p.timeout) * 1000));
            this.waiters.push(() => (clearTimeout(t), resolve()));
          });
        }
        return ok(this.queue.filter((u) => u.update_id >= offset).slice(0, Number(p.limit ?? 100)));
      }
      case 'sendMessage': {
        const text = String(p.text ?? '');
        if (!text.trim()) return bad('Bad Request: message text is empty');
        if (text.length > 4096) return bad('Bad Request: message is too long');
        const entityProblem = parseProblem(text, p.parse_mode);
        if (entityProblem) return bad(entityProblem);
        return ok(this.message(p, { text }));
      }
      case 'editMessageText': {
        const text = String(p.text ?? '');
        if (text.length > 4096) return bad('Bad Request: MESSAGE_TOO_LONG');
        const entityProblem = parseProblem(text, p.parse_mode);
        if (entityProblem) return bad(entityProblem);
        const key = `${p.chat_id}:${p.message_id}`;
        if (!this.texts.has(key)) return bad('Bad Request: message to edit not found');
        if (this.texts.get(key) === text)
          return bad(
            'Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
          );
        this.texts.set(key, text);
        return ok({ message_id: Number(p.message_id), chat: { id: Number(p.chat_id) }, date: now(), text });
      }
      case 'sendChatAction':
      case 'setMessageReaction':
        return ok(true);
      case 'getFile': {
        const bytes = this.files.get(String(p.file_id));
        if (!bytes) return bad('Bad Request: invalid file_id');
        return ok({
          file_id: p.file_id,
          file_unique_id: `u-${p.file_id}`,
          file_size: bytes.byteLength,
          file_path: `files/${p.file_id}`,
        });
      }
      case 'sendPhoto':
      case 'sendVideo':
      case 'sendAudio':
      case 'sendVoice':
      case 'sendDocument':
        return ok(this.message(p, p.caption ? { caption: String(p.caption) } : {}));
      default:
        return json(404, { ok: false, error_code: 404, description: 'Not Found: method not found' });
    }
  }

  private message(p: Record<string, any>, body: Record<string, unknown>) {
    const message_id = ++this.messageSeq;
    if (typeof body.text === 'string') this.texts.set(`${p.chat_id}:${message_id}`, body.text);
    return {
      message_id,
      date: now(),
      chat: { id: Number(p.chat_id), type: Number(p.chat_id) > 0 ? 'private' : 'supergroup' },
      from: { id: this.botId, is_bot: true, first_name: 'Switchboard Test', username: this.username },
      ...(p.message_thread_id ? { message_thread_id: Number(p.message_thread_id), is_topic_message: true } : {}),
      ...body,
    };
  }
}

/** What Telegram answers for text it cannot parse in the given parse mode (null: fine). */
function parseProblem(text: string, parseMode: unknown): string | null {
  if (parseMode === 'MarkdownV2') {
    const m = MARKDOWN_V2_SPECIALS.exec(text);
    if (m)
      return `Bad Request: can't parse entities: Character '${m[0]}' is reserved and must be escaped with the preceding '\\'`;
  }
  if (parseMode === 'HTML' && /<(?!\/?(b|i|u|s|a|code|pre)\b)|&(?![a-z]+;|#\d+;)/.test(text))
    return "Bad Request: can't parse entities: Unsupported start tag";
  return null;
}

async function readParams(req: Request): Promise<Record<string, any>> {
  const type = req.headers.get('content-type') ?? '';
  if (type.includes('application/json')) return (await req.json().catch(() => ({}))) as Record<string, any>;
  if (type.includes('multipart/form-data')) {
    const out: Record<string, any> = {};
    for (const [k, v] of (await req.formData()).entries()) {
      out[k] = typeof v === 'string' ? tryJson(v) : { file: (v as File).name, size: (v as File).size };
    }
    return out;
  }
  return Object.fromEntries(new URL(req.url).searchParams);
}

function tryJson(v: string): unknown {
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

function asArray(v: unknown): string[] | null {
  return Array.isArray(v) ? v.map(String) : null;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

const now = () => Math.floor(Date.now() / 1000);
