// A local stand-in for Slack's Web API (https://slack.com/api/<method>) and its Socket Mode
// WebSocket. The real @slack/web-api and @slack/socket-mode clients talk to it unchanged:
// requests are form-encoded POSTs with `Authorization: Bearer <token>`, answers are `{ok, ...}`.
// Shared files are served like files.slack.com: GET /files-pri/<team>-<file id>/download/<name>
// with the bot token; any other token gets a sign-in page (HTML, 200), as Slack answers.
import type { Server, ServerWebSocket } from 'bun';

export interface RecordedCall {
  method: string;
  params: Record<string, string>;
  /** Bearer token the client sent (bot token for Web API calls, app token for apps.connections.open). */
  token: string | null;
}

/** A canned answer for one call: an HTTP status other than 200, or a Slack platform error. */
export type CannedReply =
  | { status: 429; retryAfterSeconds: number }
  | { status: number; body?: string }
  | { error: string }
  /** Answer normally (lets a test fail the 2nd call but not the 1st). */
  | { passThrough: true };

export interface SocketAck {
  envelope_id: string;
  payload?: unknown;
}

export interface FakeSlackOptions {
  botUserId?: string;
  botId?: string;
  teamId?: string;
  /** Methods the workspace does not offer (answered `{ok:false, error:'unknown_method'}`). */
  unknownMethods?: string[];
  /** The token file downloads must carry (`Authorization: Bearer …`). */
  botToken?: string;
}

export interface HostedFile {
  bytes: Uint8Array;
  mimetype: string;
  name: string;
}

export interface FileDownload {
  fileId: string;
  token: string | null;
  /** The file was served (the token was right). */
  served: boolean;
}

type SocketData = { id: number };

export class FakeSlack {
  readonly calls: RecordedCall[] = [];
  readonly acks: SocketAck[] = [];
  readonly botUserId: string;
  readonly botId: string;
  readonly teamId: string;
  readonly botToken: string;
  /** Files by id, served under fileUrl(id). */
  readonly files = new Map<string, HostedFile>();
  readonly downloads: FileDownload[] = [];
  private readonly unknownMethods: Set<string>;
  private readonly canned = new Map<string, CannedReply[]>();
  private server: Server<SocketData> | null = null;
  private readonly sockets = new Set<ServerWebSocket<SocketData>>();
  private ackWaiters = new Map<string, (ack: SocketAck) => void>();
  private connectionWaiters: Array<() => void> = [];
  private socketSeq = 0;
  private tsSeq = 0;
  private envelopeSeq = 0;

  constructor(opts: FakeSlackOptions = {}) {
    this.botUserId = opts.botUserId ?? 'UBOT0001';
    this.botId = opts.botId ?? 'BBOT0001';
    this.teamId = opts.teamId ?? 'T0000001';
    this.botToken = opts.botToken ?? 'xoxb-fake-bot-token';
    this.unknownMethods = new Set(opts.unknownMethods ?? []);
  }

  start(): this {
    this.server = Bun.serve<SocketData>({
      hostname: '127.0.0.1',
      port: 0,
      fetch: (req, server) => this.handle(req, server),
      websocket: {
        open: (ws) => {
          this.sockets.add(ws);
          // Slack greets every Socket Mode connection; the client reports "connected" on it.
          ws.send(
            JSON.stringify({
              type: 'hello',
              num_connections: 1,
              debug_info: { host: 'fake-slack' },
              connection_info: { app_id: 'A0000001' },
            }),
          );
          for (const w of this.connectionWaiters.splice(0)) w();
        },
        message: (_ws, data) => {
          const text = typeof data === 'string' ? data : new TextDecoder().decode(data);
          const ack = JSON.parse(text) as SocketAck;
          this.acks.push(ack);
          this.ackWaiters.get(ack.envelope_id)?.(ack);
          this.ackWaiters.delete(ack.envelope_id);
        },
        close: (ws) => {
          this.sockets.delete(ws);
        },
      },
    });
    return this;
  }

  async stop(): Promise<void> {
    for (const ws of this.sockets) ws.close();
    await this.server?.stop(true);
    this.server = null;
  }

  get port(): number {
    if (!this.server) throw new Error('fake Slack not started');
    return this.server.port as number;
  }

  /** Base URL to configure as `slack_api_url` (ends with a slash, as the WebClient expects). */
  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  /** The url_private_download of a file in `files`. */
  fileUrl(fileId: string): string {
    const name = this.files.get(fileId)?.name ?? 'file';
    return `http://127.0.0.1:${this.port}/files-pri/${this.teamId}-${fileId}/download/${encodeURIComponent(name)}`;
  }

  /** A Slack file object (as in a file_share event) for a file in `files`. */
  fileObject(fileId: string): Record<string, unknown> {
    const f = this.files.get(fileId);
    if (!f) throw new Error(`no file ${fileId}`);
    return {
      id: fileId,
      name: f.name,
      title: f.name,
      mimetype: f.mimetype,
      filetype: f.name.split('.').pop() ?? 'binary',
      size: f.bytes.byteLength,
      mode: 'hosted',
      url_private: this.fileUrl(fileId).replace('/download/', '/'),
      url_private_download: this.fileUrl(fileId),
    };
  }

  /** Answer the next call(s) of `method` with these replies, one per call, before behaving normally. */
  failNext(method: string, ...replies: CannedReply[]): void {
    const queue = this.canned.get(method) ?? [];
    queue.push(...replies);
    this.canned.set(method, queue);
  }

  callsOf(method: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  get openSockets(): number {
    return this.sockets.size;
  }

  /** Resolves once a Socket Mode client is connected (immediately if one already is). */
  waitForSocket(): Promise<void> {
    if (this.sockets.size > 0) return Promise.resolve();
    return new Promise((resolve) => this.connectionWaiters.push(resolve));
  }

  /**
   * Push an Events API payload over every open Socket Mode connection, wrapped in the envelope
   * Slack uses. Resolves with the envelope id; `waitForAck` tells when the client acknowledged it.
   */
  pushEvent(payload: Record<string, unknown>, retryAttempt = 0): string {
    const envelopeId = `env-${++this.envelopeSeq}`;
    const envelope = {
      envelope_id: envelopeId,
      type: 'events_api',
      payload,
      accepts_response_payload: false,
      retry_attempt: retryAttempt,
      retry_reason: retryAttempt > 0 ? 'timeout' : '',
    };
    for (const ws of this.sockets) ws.send(JSON.stringify(envelope));
    return envelopeId;
  }

  waitForAck(envelopeId: string, timeoutMs = 3000): Promise<SocketAck> {
    const done = this.acks.find((a) => a.envelope_id === envelopeId);
    if (done) return Promise.resolve(done);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack for ${envelopeId}`)), timeoutMs);
      this.ackWaiters.set(envelopeId, (ack) => {
        clearTimeout(timer);
        resolve(ack);
      });
    });
  }

  private async handle(req: Request, server: Server<SocketData>): Promise<Response | undefined> {
    const url = new URL(req.url);
    if (url.pathname === '/socket') {
      if (server.upgrade(req, { data: { id: ++this.socketSeq } })) return undefined;
      return new Response('upgrade required', { status: 426 });
    }
    const file = /^\/files-pri\/[A-Z0-9]+-([A-Z0-9]+)\//.exec(url.pathname);
    if (file && req.method === 'GET') return this.serveFile(file[1], req);
    const match = /^\/api\/([\w.]+)$/.exec(url.pathname);
    if (!match || req.method !== 'POST') return new Response('not found', { status: 404 });
    const method = match[1];
    const params = await readParams(req);
    const auth = req.headers.get('authorization');
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : (params.token ?? null);
    this.calls.push({ method, params, token });

    const canned = this.canned.get(method)?.shift();
    if (canned && !('passThrough' in canned)) {
      if ('error' in canned) return json({ ok: false, error: canned.error });
      if (canned.status === 429 && 'retryAfterSeconds' in canned) {
        return new Response(JSON.stringify({ ok: false, error: 'ratelimited' }), {
          status: 429,
          headers: { 'content-type': 'application/json', 'retry-after': String(canned.retryAfterSeconds) },
        });
      }
      return new Response('body' in canned ? (canned.body ?? '') : '', { status: canned.status });
    }
    if (this.unknownMethods.has(method)) return json({ ok: false, error: 'unknown_method' });
    return json(this.answer(method, params));
  }

  private serveFile(fileId: string, req: Request): Response {
    const auth = req.headers.get('authorization');
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : null;
    const f = this.files.get(fileId);
    const served = token === this.botToken && f !== undefined;
    this.downloads.push({ fileId, token, served });
    if (!f) return new Response('not found', { status: 404 });
    if (!served)
      return new Response('<!DOCTYPE html><html><body>Sign in to Slack</body></html>', {
        headers: { 'content-type': 'text/html; charset=utf-8' },
      });
    return new Response(Buffer.from(f.bytes), { headers: { 'content-type': f.mimetype } });
  }

  private answer(method: string, params: Record<string, string>): Record<string, unknown> {
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://fake.slack.com/',
          team: 'Fake Team',
          user: 'switchboard',
          team_id: this.teamId,
          user_id: this.botUserId,
          bot_id: this.botId,
        };
      case 'chat.postMessage': {
        const ts = this.nextTs();
        return {
          ok: true,
          channel: params.channel,
          ts,
          message: {
            type: 'message',
            user: this.botUserId,
            bot_id: this.botId,
            text: params.text,
            ts,
            ...(params.thread_ts ? { thread_ts: params.thread_ts } : {}),
          },
        };
      }
      case 'chat.update':
        return { ok: true, channel: params.channel, ts: params.ts, text: params.text };
      case 'reactions.add':
      case 'reactions.remove':
      case 'assistant.threads.setStatus':
        return { ok: true };
      case 'apps.connections.open':
        return { ok: true, url: `ws://127.0.0.1:${this.port}/socket?ticket=t${this.socketSeq + 1}` };
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  private nextTs(): string {
    this.tsSeq += 1;
    return `${1_700_000_000 + this.tsSeq}.${String(this.tsSeq).padStart(6, '0')}`;
  }
}

async function readParams(req: Request): Promise<Record<string, string>> {
  const type = req.headers.get('content-type') ?? '';
  const text = await req.text();
  if (type.includes('application/json')) {
    const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    return Object.fromEntries(
      Object.entries(parsed).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
    );
  }
  return Object.fromEntries(new URLSearchParams(text));
}

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } });
}
