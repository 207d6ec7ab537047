// A small typed client of the Switchboard HTTP API (v2): every path the CLI uses is here, next to
// the shape of its answer. Errors come back as GatewayError (the error envelope) or
// UnreachableError (no HTTP answer at all).

export interface Page<T> {
  items: T[];
  meta: { cursor: string | null; hasMore: boolean; total?: number; partial?: boolean };
}

export interface Instance {
  id: string;
  name: string;
  channel: string;
  channelConfig: Record<string, unknown>;
  agent: Record<string, unknown>;
  settings: Record<string, unknown>;
  isActive: boolean;
  isDefault: boolean;
  status: string;
  statusReason: string | null;
  webhookUrl: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface InstanceStatus {
  status: string;
  reason: string | null;
  channel: string;
  running: boolean;
  hasQr: boolean;
}

export interface Qr {
  /** data:image/png;base64,… */
  qr: string;
  expiresAt: string;
}

export interface SendResult {
  messageId: string;
  externalMessageId: string | null;
  status: string;
}

export interface Conversation {
  id: string;
  instanceId: string;
  chat: { chatId: string; threadId?: string; kind: string };
  kind: string;
  title: string | null;
  lastActivityAt: string;
  pending: number;
}

export interface TraceStep {
  step: string;
  status: string;
  at: string;
  durationMs: number | null;
  details?: Record<string, unknown> | null;
}

export interface Trace {
  id: string;
  instanceId: string;
  instanceName: string;
  conversationId: string;
  kind: 'inbound' | 'send';
  sender: { id: string; name: string | null; phone: string | null };
  text: string;
  responseText: string | null;
  status: string;
  attempts: number;
  error: string | null;
  durationMs: number | null;
  receivedAt: string;
  completedAt: string | null;
  steps: TraceStep[];
}

export interface DeadLetter {
  id: string;
  traceId: string;
  instanceId: string;
  conversationId: string;
  reason: string;
  attempts: number;
  createdAt: string;
  text: string;
}

export interface ApiKey {
  id: string;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  scopes: string[];
  instanceIds: string[] | null;
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string;
  lastUsedAt: string | null;
  usageCount: number;
}

/** The gateway answered with an error envelope (or something that is not one). */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown = null,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}

/** No HTTP answer: refused, DNS, TLS, timeout. */
export class UnreachableError extends Error {
  constructor(
    readonly url: string,
    cause: unknown,
  ) {
    super(`cannot reach ${url}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'UnreachableError';
  }
}

const seg = encodeURIComponent;

/** Every API path the CLI calls. */
export const PATHS = {
  instances: '/api/v2/instances',
  instance: (id: string) => `/api/v2/instances/${seg(id)}`,
  instanceStatus: (id: string) => `/api/v2/instances/${seg(id)}/status`,
  instanceQr: (id: string) => `/api/v2/instances/${seg(id)}/qr`,
  instancePair: (id: string) => `/api/v2/instances/${seg(id)}/pair`,
  messages: '/api/v2/messages',
  conversations: '/api/v2/conversations',
  conversation: (id: string) => `/api/v2/conversations/${seg(id)}`,
  traces: '/api/v2/traces',
  trace: (id: string) => `/api/v2/traces/${seg(id)}`,
  deadLetters: '/api/v2/dead-letters',
  deadLetterReplay: (id: string) => `/api/v2/dead-letters/${seg(id)}/replay`,
  keys: '/api/v2/keys',
  keyRevoke: (id: string) => `/api/v2/keys/${seg(id)}/revoke`,
  stream: '/ws',
} as const;

type Query = Record<string, string | number | undefined>;

export class SwitchboardClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    private readonly key: string,
    private readonly timeoutMs = 60_000,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async request<T>(
    method: string,
    path: string,
    opts: { query?: Query; body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(opts.query ?? {}))
      if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { 'x-api-key': this.key, accept: 'application/json', ...opts.headers };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new UnreachableError(this.baseUrl, err);
    }
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const e = json?.error;
      if (e && typeof e.code === 'string')
        throw new GatewayError(res.status, e.code, String(e.message ?? e.code), e.details ?? null);
      throw new GatewayError(res.status, `HTTP_${res.status}`, `HTTP ${res.status} ${text.slice(0, 200)}`.trim());
    }
    return json as T;
  }

  /** The WebSocket URL of the live stream (the key as ?apiKey=, as browsers send it). */
  streamUrl(): string {
    const u = new URL(this.baseUrl + PATHS.stream);
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.searchParams.set('apiKey', this.key);
    return u.toString();
  }

  listInstances(q: { limit?: number; cursor?: string; channel?: string; status?: string } = {}) {
    return this.request<Page<Instance>>('GET', PATHS.instances, { query: q });
  }
  async createInstance(body: Record<string, unknown>) {
    return (await this.request<{ data: Instance }>('POST', PATHS.instances, { body })).data;
  }
  async getInstance(id: string) {
    return (await this.request<{ data: Instance }>('GET', PATHS.instance(id))).data;
  }
  deleteInstance(id: string) {
    return this.request<{ success: boolean }>('DELETE', PATHS.instance(id));
  }
  async instanceStatus(id: string) {
    return (await this.request<{ data: InstanceStatus }>('GET', PATHS.instanceStatus(id))).data;
  }
  async instanceQr(id: string) {
    return (await this.request<{ data: Qr }>('GET', PATHS.instanceQr(id))).data;
  }
  async pairingCode(id: string, phoneNumber: string) {
    return (await this.request<{ data: { code: string } }>('POST', PATHS.instancePair(id), { body: { phoneNumber } }))
      .data.code;
  }

  async sendText(body: { instanceId: string; to: string; text: string; replyTo?: string }, idempotencyKey?: string) {
    const headers: Record<string, string> = idempotencyKey ? { 'idempotency-key': idempotencyKey } : {};
    return (await this.request<{ data: SendResult }>('POST', PATHS.messages, { body, headers })).data;
  }

  listConversations(q: { instanceId?: string; limit?: number; cursor?: string } = {}) {
    return this.request<Page<Conversation>>('GET', PATHS.conversations, { query: q });
  }
  async getConversation(id: string) {
    return (await this.request<{ data: Conversation }>('GET', PATHS.conversation(id))).data;
  }

  listTraces(
    q: {
      instanceId?: string;
      conversationId?: string;
      status?: string;
      limit?: number;
      cursor?: string;
      ids?: string;
    } = {},
  ) {
    return this.request<Page<Trace>>('GET', PATHS.traces, { query: q });
  }
  async getTrace(id: string) {
    return (await this.request<{ data: Trace }>('GET', PATHS.trace(id))).data;
  }

  listDeadLetters(q: { instanceId?: string; limit?: number; cursor?: string } = {}) {
    return this.request<Page<DeadLetter>>('GET', PATHS.deadLetters, { query: q });
  }
  async replayDeadLetter(id: string) {
    return (await this.request<{ data: { traceId: string; status: string } }>('POST', PATHS.deadLetterReplay(id))).data;
  }

  listKeys(q: { limit?: number; cursor?: string } = {}) {
    return this.request<Page<ApiKey>>('GET', PATHS.keys, { query: q });
  }
  async createKey(body: { name: string; scopes: string[]; instanceIds?: string[] | null; expiresAt?: string | null }) {
    return (await this.request<{ data: ApiKey & { key: string } }>('POST', PATHS.keys, { body })).data;
  }
  async revokeKey(id: string) {
    return (await this.request<{ data: ApiKey }>('POST', PATHS.keyRevoke(id))).data;
  }
}
