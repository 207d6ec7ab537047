// Environment → typed configuration. The one place that reads process.env for the gateway's
// own settings; a bad value stops the start with one line naming the variable.

export interface Config {
  port: number;
  host: string;
  databasePath: string;
  dataDir: string;
  /** Media files and the media URL signing key (MEDIA_DIR, default <data dir>/media). */
  mediaDir: string;
  apiKey: string | null;
  redisUrl: string | null;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  publicUrl: string | null;
  bodyLimitBytes: number;
  corsOrigins: string[];
  /** Remote platform endpoints (instance fields override these). */
  discordApiUrl: string | null;
  slackApiUrl: string | null;
  /** WhatsApp Cloud API (Graph API) base URL for instances that set none (WHATSAPP_CLOUD_API_URL). */
  whatsappCloudApiUrl: string | null;
  telegramApiUrl: string | null;
  whatsappWsUrl: string | null;
  /**
   * Values a v1 create takes for fields it leaves unset, by environment variable (the v1 guide's
   * EVOLUTION_API_URL / EVOLUTION_API_KEY; which field each fills is the channel definition's
   * `v1Default`).
   */
  v1Defaults: Record<string, string>;
  /** Pipeline tuning. */
  pipeline: {
    maxAttempts: number;
    retryBaseMs: number;
    retryMaxMs: number;
    conversationBacklog: number;
    globalBacklog: number;
    agentConcurrency: number;
    prefetch: number;
    actorIdleMs: number;
    maxActiveActors: number;
    /** Show "typing…" only when the agent takes longer than this (0 = at once). */
    typingDelayMs: number;
  };
  /** Cluster mode (only used when redisUrl is set). */
  cluster: {
    nodeId: string | null;
    keyPrefix: string;
    shards: number;
    leaseMs: number;
    /** This node's own base URL for internal calls between nodes (default http://HOST:PORT as bound). */
    advertiseUrl: string | null;
    /** Shared by every node (required in cluster mode): keys for the values kept in Redis and for peer requests. */
    secret: string | null;
  };
  /** Policy for requests made on a user's behalf (agents, Evolution, …): see src/net/outbound.ts. */
  outbound: {
    /** Loopback and private addresses may be reached (default true, for local development). */
    allowPrivate: boolean;
    /** When non-empty, the only hosts reachable (`*.example.com` for subdomains). */
    allowedHosts: string[];
  };
  /** Proxies whose X-Forwarded-For is believed (IP addresses or CIDR ranges); empty = none. */
  trustedProxies: string[];
  /** Outgoing webhooks (src/webhooks). */
  webhooks: {
    /** A delivery is retried for this long after its first attempt (WEBHOOK_RETRY_PERIOD_SECONDS, default 1 day). */
    retryPeriodSeconds: number;
    /** Finished deliveries are kept this many days (WEBHOOK_RETENTION_DAYS, default 7). */
    retentionDays: number;
    /** After a secret rotation the previous secret also signs for this long (WEBHOOK_SECRET_GRACE_SECONDS, default 1 day). */
    secretGraceSeconds: number;
  };
  leo: {
    bearerToken: string | null;
    subscriptionKey: string | null;
    workflowId: string | null;
    apiBaseUrl: string | null;
  };
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
  }
}

type Env = Record<string, string | undefined>;

function pick(env: Env, names: string[]): [string, string] | undefined {
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && v !== '') return [n, v];
  }
  return undefined;
}

function int(env: Env, names: string[], def: number, min: number, max: number): number {
  const found = pick(env, names);
  if (!found) return def;
  const [name, raw] = found;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, names: string[], def: boolean): boolean {
  const found = pick(env, names);
  if (!found) return def;
  const [name, raw] = found;
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function list(env: Env, names: string[]): [string, string[]] | null {
  const found = pick(env, names);
  if (!found) return null;
  return [
    found[0],
    found[1]
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
}

function hostList(env: Env, names: string[]): string[] {
  const found = list(env, names);
  if (!found) return [];
  for (const h of found[1])
    if (!/^(\*\.)?[A-Za-z0-9.:\-[\]]+$/.test(h))
      throw new ConfigError(found[0], `"${h}" is not a host name (or *.example.com)`);
  return found[1];
}

function proxyList(env: Env, names: string[]): string[] {
  const found = list(env, names);
  if (!found) return [];
  for (const p of found[1])
    if (!/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(p))
      throw new ConfigError(found[0], `"${p}" is not an IP address or CIDR range`);
  return found[1];
}

function url(env: Env, names: string[], protocols: string[]): string | null {
  const found = pick(env, names);
  if (!found) return null;
  const [name, raw] = found;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL, got "${raw}"`);
  }
  if (!protocols.includes(u.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${u.protocol}"`);
  }
  return raw.replace(/\/+$/, '');
}

/** Shortest CLUSTER_SECRET accepted (characters). */
export const CLUSTER_SECRET_MIN = 32;

function clusterConfig(env: Env, clustered: boolean): Config['cluster'] {
  const id = pick(env, ['CLUSTER_NODE_ID']);
  if (id && !/^[A-Za-z0-9._-]{1,64}$/.test(id[1]))
    throw new ConfigError(id[0], `must be 1-64 letters, digits, '.', '_' or '-', got "${id[1]}"`);
  const prefix = pick(env, ['CLUSTER_KEY_PREFIX']);
  if (prefix && !/^[A-Za-z0-9:._-]{1,64}$/.test(prefix[1]))
    throw new ConfigError(prefix[0], `must be 1-64 letters, digits, ':', '.', '_' or '-', got "${prefix[1]}"`);
  // Never echoed in an error: it is a secret.
  const secret = pick(env, ['CLUSTER_SECRET']);
  if (secret && secret[1].length < CLUSTER_SECRET_MIN)
    throw new ConfigError(
      secret[0],
      `must be at least ${CLUSTER_SECRET_MIN} characters (e.g. the output of: openssl rand -base64 32)`,
    );
  // Required, not optional: without it the configuration's secrets would sit in Redis readable,
  // and anyone reading Redis could sign requests as a node.
  if (!secret && clustered)
    throw new ConfigError(
      'CLUSTER_SECRET',
      `required when REDIS_URL is set: at least ${CLUSTER_SECRET_MIN} random characters, the same on every node (e.g. the output of: openssl rand -base64 32)`,
    );
  return {
    nodeId: id ? id[1] : null,
    keyPrefix: prefix ? prefix[1] : 'switchboard:',
    shards: int(env, ['CLUSTER_SHARDS'], 256, 1, 4096),
    // 3 s: a killed owner's shards are served again within ~3.5–4 s (BENCHMARKS.md, cluster), while a
    // node tolerates an event-loop stall of ~2 s before it self-fences (renewed every 500 ms).
    leaseMs: int(env, ['CLUSTER_LEASE_MS'], 3_000, 300, 600_000),
    advertiseUrl: url(env, ['CLUSTER_ADVERTISE_URL'], ['http:', 'https:']),
    secret: secret ? secret[1] : null,
  };
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export function loadConfig(env: Env = process.env): Config {
  const port = int(env, ['PORT', 'AUTOMAGIK_OMNI_API_PORT'], 8882, 0, 65535);
  const hostFound = pick(env, ['HOST', 'AUTOMAGIK_OMNI_API_HOST']);
  const host = hostFound ? hostFound[1] : '0.0.0.0';
  if (hostFound && !/^[A-Za-z0-9.:\-[\]]+$/.test(host)) {
    throw new ConfigError(hostFound[0], `must be a host name or address, got "${host}"`);
  }
  const dbFound = pick(env, ['DATABASE_PATH', 'AUTOMAGIK_OMNI_SQLITE_DATABASE_PATH']);
  const databasePath = dbFound ? dbFound[1] : './data/switchboard.db';
  const keyFound = pick(env, ['SWITCHBOARD_API_KEY', 'AUTOMAGIK_OMNI_API_KEY']);
  if (keyFound && keyFound[1].length < 16) {
    throw new ConfigError(keyFound[0], 'must be at least 16 characters');
  }
  const levelFound = pick(env, ['LOG_LEVEL', 'AUTOMAGIK_OMNI_LOG_LEVEL']);
  const logLevel = (levelFound ? levelFound[1].toLowerCase() : 'info') as Config['logLevel'];
  if (!LEVELS.includes(logLevel)) {
    throw new ConfigError(levelFound![0], `must be one of ${LEVELS.join(', ')}, got "${levelFound![1]}"`);
  }
  const corsRaw = pick(env, ['CORS_ORIGINS', 'AUTOMAGIK_OMNI_CORS_ORIGINS']);
  const corsOrigins = corsRaw
    ? corsRaw[1]
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
  for (const o of corsOrigins) {
    if (o !== '*' && !/^https?:\/\/[^/]+$/.test(o))
      throw new ConfigError(corsRaw![0], `"${o}" is not an origin like https://example.com`);
  }
  const redisUrl = url(env, ['REDIS_URL'], ['redis:', 'rediss:']);
  const dataDir = databasePath === ':memory:' ? './data' : databasePath.replace(/\/[^/]*$/, '') || '.';

  return {
    port,
    host,
    databasePath,
    dataDir,
    mediaDir: pick(env, ['MEDIA_DIR'])?.[1] || `${dataDir.replace(/\/+$/, '')}/media`,
    apiKey: keyFound ? keyFound[1] : null,
    redisUrl,
    logLevel,
    publicUrl: url(env, ['PUBLIC_URL'], ['http:', 'https:']),
    bodyLimitBytes: int(env, ['BODY_LIMIT_BYTES'], 1024 * 1024, 1024, 100 * 1024 * 1024),
    corsOrigins,
    discordApiUrl: url(env, ['DISCORD_API_URL'], ['http:', 'https:']),
    slackApiUrl: url(env, ['SLACK_API_URL'], ['http:', 'https:']),
    whatsappCloudApiUrl: url(env, ['WHATSAPP_CLOUD_API_URL'], ['http:', 'https:']),
    telegramApiUrl: url(env, ['TELEGRAM_API_URL'], ['http:', 'https:']),
    whatsappWsUrl: url(env, ['WHATSAPP_WS_URL'], ['ws:', 'wss:']),
    v1Defaults: definedOnly({
      EVOLUTION_API_URL: url(env, ['EVOLUTION_API_URL'], ['http:', 'https:']),
      EVOLUTION_API_KEY: secretValue(env, 'EVOLUTION_API_KEY'),
    }),
    pipeline: {
      maxAttempts: int(env, ['PIPELINE_MAX_ATTEMPTS'], 5, 1, 100),
      retryBaseMs: int(env, ['PIPELINE_RETRY_BASE_MS'], 500, 1, 600_000),
      retryMaxMs: int(env, ['PIPELINE_RETRY_MAX_MS'], 30_000, 1, 3_600_000),
      conversationBacklog: int(env, ['CONVERSATION_BACKLOG_LIMIT'], 1000, 1, 1_000_000),
      globalBacklog: int(env, ['GLOBAL_BACKLOG_LIMIT'], 100_000, 1, 100_000_000),
      agentConcurrency: int(env, ['AGENT_CONCURRENCY'], 64, 1, 10_000),
      prefetch: int(env, ['CONVERSATION_PREFETCH'], 16, 1, 1000),
      actorIdleMs: int(env, ['ACTOR_IDLE_MS'], 60_000, 10, 86_400_000),
      maxActiveActors: int(env, ['MAX_ACTIVE_ACTORS'], 10_000, 1, 10_000_000),
      typingDelayMs: int(env, ['TYPING_DELAY_MS'], 1000, 0, 60_000),
    },
    cluster: clusterConfig(env, redisUrl !== null),
    outbound: {
      allowPrivate: bool(env, ['OUTBOUND_ALLOW_PRIVATE'], true),
      allowedHosts: hostList(env, ['OUTBOUND_ALLOWED_HOSTS']),
    },
    trustedProxies: proxyList(env, ['TRUSTED_PROXIES']),
    webhooks: {
      retryPeriodSeconds: int(env, ['WEBHOOK_RETRY_PERIOD_SECONDS'], 86_400, 1, 30 * 86_400),
      retentionDays: int(env, ['WEBHOOK_RETENTION_DAYS'], 7, 1, 3650),
      secretGraceSeconds: int(env, ['WEBHOOK_SECRET_GRACE_SECONDS'], 86_400, 0, 30 * 86_400),
    },
    leo: {
      bearerToken: pick(env, ['LEO_BEARER_TOKEN'])?.[1] ?? null,
      subscriptionKey: pick(env, ['LEO_SUBSCRIPTION_KEY'])?.[1] ?? null,
      workflowId: pick(env, ['LEO_WORKFLOW_ID'])?.[1] ?? null,
      apiBaseUrl: url(env, ['LEO_API_BASE_URL'], ['http:', 'https:']),
    },
  };
}

function definedOnly(values: Record<string, string | null>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter((e): e is [string, string] => e[1] !== null));
}

/** A secret from the environment: unset or empty is null; blank (only spaces) is refused. */
function secretValue(env: Env, name: string): string | null {
  const v = env[name];
  if (v === undefined || v === '') return null;
  if (v.trim() === '') throw new ConfigError(name, 'must not be blank');
  return v;
}
