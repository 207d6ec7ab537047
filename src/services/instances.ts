// Instances: one service behind both API versions. Input arrives already mapped to
// InstanceInput (v1 flat snake_case and v2 camelCase are thin mappers over this).
import type { Database } from 'bun:sqlite';
import { scriptProblems } from '../agents/builtin.ts';
import { CHANNEL_KINDS, channelOf, inferChannel } from '../channels/registry.ts';
import type { FieldType } from '../channels/types.ts';
import { Conflict, NotFound, Validation } from '../core/errors.ts';
import type { AgentConfig, ChannelConfig, Instance, InstanceSettings, InstanceStatus } from '../core/instance.ts';
import type { ChannelKind } from '../core/message.ts';
import { literalProblem } from '../net/outbound.ts';
import { accessSettingsProblems } from './access.ts';
import { isoNow, newId, randomToken } from './ids.ts';

export interface InstanceInput {
  name?: string;
  channel?: ChannelKind;
  isActive?: boolean;
  isDefault?: boolean;
  agent?: Partial<AgentConfig>;
  config?: ChannelConfig;
  settings?: Partial<InstanceSettings>;
}

/** Headers the HTTP client owns: set by a user they would redirect or smuggle requests. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);

/** Bounds of one instance's extension settings (they are stored with the instance and replicated). */
const MAX_EXTENSION_SETTINGS = 50;
const MAX_EXTENSION_BYTES = 32 * 1024;
const MAX_EXTENSION_DEPTH = 8;

function extensionSettingProblem(key: string, v: unknown): string | null {
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(key)) return 'is not a setting name (letters, digits, _ . -; ≤ 64)';
  // Depth first, without recursion: JSON.stringify of a deep value would overflow the stack.
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length) {
    const [x, depth] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    if (depth > MAX_EXTENSION_DEPTH) return `nests deeper than ${MAX_EXTENSION_DEPTH} levels`;
    for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, depth + 1]);
  }
  if (JSON.stringify(v).length > MAX_EXTENSION_BYTES)
    return `must be at most ${MAX_EXTENSION_BYTES} characters as JSON`;
  return null;
}

export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{1,62}$/;
const AGENT_TYPES = ['auto', 'json', 'agui', 'openai', 'leo', 'echo', 'script'] as const;
const REPLY_MODES = ['final', 'blocks', 'edit'] as const;
const ACCESS_MODES = ['disabled', 'blocklist', 'allowlist'] as const;

interface Problem {
  field: string;
  problem: string;
}

function checkUrl(v: unknown, protocols: string[]): string | null {
  if (typeof v !== 'string' || v.length > 2048) return 'must be a URL';
  try {
    const u = new URL(v);
    if (!protocols.includes(u.protocol)) return `must use ${protocols.join(' or ')}`;
    if (!u.hostname) return 'must have a host';
    // A fragment would swallow the path a client appends to the URL.
    if (v.includes('#')) return 'must not have a fragment (#)';
    return literalProblem(v);
  } catch {
    return 'must be a URL';
  }
}

function checkField(kind: FieldType, v: unknown): string | null {
  switch (kind) {
    case 'string':
      return typeof v === 'string' && v.length <= 4096 ? null : 'must be a string (≤ 4096 characters)';
    case 'secret':
      if (typeof v !== 'string' || v.length > 4096) return 'must be a string (≤ 4096 characters)';
      // A blank secret would work as a credential anyone can guess (e.g. a webhook's evolution_key).
      return v.trim() === '' ? 'must not be blank' : null;
    case 'bool':
      return typeof v === 'boolean' ? null : 'must be a boolean';
    case 'int':
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 1e9
        ? null
        : 'must be a non-negative integer';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 1e6 ? null : 'must be a positive number';
    case 'intOrString':
      return (Number.isInteger(v) && (v as number) >= 0) || (typeof v === 'string' && /^\d{1,20}$/.test(v))
        ? null
        : 'must be an integer';
    case 'http':
      return checkUrl(v, ['http:', 'https:']);
    case 'ws':
      return checkUrl(v, ['ws:', 'wss:']);
    case 'strings':
      return Array.isArray(v) && v.length <= 500 && v.every((s) => typeof s === 'string' && s.length <= 64)
        ? null
        : 'must be a list of ids';
  }
}

const DEFAULT_AGENT: AgentConfig = {
  url: null,
  apiKey: null,
  type: 'auto',
  timeoutSeconds: 60,
  idleTimeoutSeconds: 30,
  defaultAgent: null,
  model: null,
  headers: {},
};
const DEFAULT_SETTINGS: InstanceSettings = {
  replyMode: 'final',
  errorReply: null,
  accessMode: 'blocklist',
  maxTextLength: null,
};

interface Row {
  id: string;
  seq: number;
  name: string;
  channel: string;
  is_active: number;
  is_default: number;
  agent_json: string;
  config_json: string;
  settings_json: string;
  webhook_secret: string;
  status: string;
  status_reason: string | null;
  created_at: string;
  updated_at: string;
}

function fromRow(r: Row): Instance {
  return {
    id: r.id,
    seq: r.seq,
    name: r.name,
    channel: r.channel as ChannelKind,
    isActive: r.is_active === 1,
    isDefault: r.is_default === 1,
    agent: { ...DEFAULT_AGENT, ...JSON.parse(r.agent_json) },
    config: JSON.parse(r.config_json),
    settings: { ...DEFAULT_SETTINGS, ...JSON.parse(r.settings_json) },
    webhookSecret: r.webhook_secret,
    status: r.status as InstanceStatus,
    statusReason: r.status_reason,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export type InstanceChange =
  | { type: 'created'; instance: Instance }
  | { type: 'updated'; instance: Instance; previous: Instance }
  | { type: 'deleted'; instance: Instance };

export interface ListFilter {
  channel?: string[];
  status?: string[];
  ids?: string[] | null;
  afterId?: string;
  limit?: number;
}

export class InstanceService {
  private listeners: Array<(c: InstanceChange) => void> = [];
  private cacheById = new Map<string, Instance>();
  /** name → id (every webhook names its instance); cleared with cacheById. */
  private idByName = new Map<string, string>();

  constructor(
    private db: Database,
    private defaults: { agentTimeoutSeconds: () => number } = { agentTimeoutSeconds: () => 60 },
  ) {}

  onChange(fn: (c: InstanceChange) => void): () => void {
    this.listeners.push(fn);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== fn);
    };
  }

  private emit(c: InstanceChange) {
    this.cacheById.clear();
    this.idByName.clear();
    for (const l of this.listeners) l(c);
  }

  /** Re-reads from the database on next access (config changed on another node). */
  invalidate(): void {
    this.cacheById.clear();
    this.idByName.clear();
  }

  get(id: string): Instance | null {
    const hit = this.cacheById.get(id);
    if (hit) return hit;
    const r = this.db.query<Row, [string]>('SELECT * FROM instances WHERE id = ?').get(id);
    if (!r) return null;
    const inst = fromRow(r);
    this.cacheById.set(id, inst);
    return inst;
  }

  getByName(name: string): Instance | null {
    let id = this.idByName.get(name);
    if (id === undefined) {
      const r = this.db.query<{ id: string }, [string]>('SELECT id FROM instances WHERE name = ?').get(name);
      if (!r) return null;
      id = r.id;
      this.idByName.set(name, id);
    }
    const inst = this.get(id);
    return inst && inst.name === name ? inst : null;
  }

  /** v2 paths take the id; the name is accepted too for convenience. */
  resolve(idOrName: string): Instance | null {
    return this.get(idOrName) ?? this.getByName(idOrName);
  }

  require(idOrName: string): Instance {
    const i = this.resolve(idOrName);
    if (!i) throw new NotFound(`Instance '${idOrName}' not found`);
    return i;
  }

  list(f: ListFilter = {}): Instance[] {
    const { sql, params } = this.where(f);
    const q = `SELECT * FROM instances ${sql} ORDER BY id ${f.limit ? `LIMIT ${Math.floor(f.limit)}` : ''}`;
    return this.db
      .query<Row, (string | number)[]>(q)
      .all(...params)
      .map(fromRow);
  }

  count(f: Omit<ListFilter, 'afterId' | 'limit'> = {}): number {
    const { sql, params } = this.where(f);
    return this.db
      .query<{ n: number }, (string | number)[]>(`SELECT COUNT(*) AS n FROM instances ${sql}`)
      .get(...params)!.n;
  }

  private where(f: ListFilter): { sql: string; params: (string | number)[] } {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (f.channel?.length) {
      where.push(`channel IN (${f.channel.map(() => '?').join(',')})`);
      params.push(...f.channel);
    }
    if (f.status?.length) {
      where.push(`status IN (${f.status.map(() => '?').join(',')})`);
      params.push(...f.status);
    }
    if (f.ids) {
      if (f.ids.length === 0) where.push('0');
      else {
        where.push(`id IN (${f.ids.map(() => '?').join(',')})`);
        params.push(...f.ids);
      }
    }
    if (f.afterId) {
      where.push('id > ?');
      params.push(f.afterId);
    }
    return { sql: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
  }

  /**
   * Validates and merges input over a base (create: defaults; update: current). Throws VALIDATION_ERROR listing every
   * problem. Field types, required fields and cross-field checks come from the channel's definition.
   */
  private build(
    input: InstanceInput,
    base: Instance | null,
  ): Omit<Instance, 'id' | 'seq' | 'webhookSecret' | 'status' | 'statusReason' | 'createdAt' | 'updatedAt'> {
    const problems: Problem[] = [];
    const name = input.name ?? base?.name;
    if (name === undefined) problems.push({ field: 'name', problem: 'is required' });
    else if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      problems.push({
        field: 'name',
        problem:
          'must be a slug: lowercase letters, digits and dashes, 2–63 characters, starting with a letter or digit',
      });
    }
    const config: ChannelConfig = { ...(base?.config ?? {}), ...(input.config ?? {}) };
    let channel: ChannelKind;
    if (base) {
      channel = base.channel;
      if (input.channel !== undefined && input.channel !== base.channel)
        problems.push({ field: 'channel', problem: 'cannot be changed; create a new instance' });
    } else {
      channel = input.channel ?? inferChannel(config);
      if (!CHANNEL_KINDS.includes(channel))
        problems.push({ field: 'channel', problem: `must be one of ${CHANNEL_KINDS.join(', ')}` });
    }
    const def = channelOf(channel);
    const fields = def?.fields ?? [];
    for (const [k, v] of Object.entries(input.config ?? {})) {
      const kind = fields.find((f) => f.v1 === k)?.type;
      if (!kind) {
        problems.push({ field: k, problem: `is not a field of a ${channel} instance` });
        continue;
      }
      if (v === null) {
        delete config[k];
        continue;
      }
      const p = checkField(kind, v);
      if (p) problems.push({ field: k, problem: p });
    }
    // A stored secret is never sent to a new endpoint: changing an endpoint drops the secrets that
    // go to it unless they are given again in the same request.
    const cleared = new Map<string, string>();
    if (base) {
      for (const { v1: urlField, receives } of fields) {
        if (!receives || !(urlField in (input.config ?? {})) || input.config![urlField] === base.config[urlField])
          continue;
        for (const secret of receives) {
          if (secret in (input.config ?? {}) || config[secret] === undefined) continue;
          delete config[secret];
          cleared.set(secret, urlField);
        }
      }
    }
    for (const req of fields.filter((f) => f.required).map((f) => f.v1)) {
      if (config[req] === undefined || config[req] === '') {
        const url = cleared.get(req);
        problems.push({
          field: req,
          problem: url
            ? `must be given again when ${url} changes (a stored secret is never sent to a new endpoint)`
            : `is required for a ${channel} instance`,
        });
      }
    }
    if (def?.validate) problems.push(...def.validate(config));
    if (def?.fillDefaults && name) def.fillDefaults(config, name);

    const agent: AgentConfig = {
      ...DEFAULT_AGENT,
      timeoutSeconds: this.defaults.agentTimeoutSeconds(),
      ...(base?.agent ?? {}),
    };
    const a = input.agent ?? {};
    if (base && a.url !== undefined && a.url !== base.agent.url) {
      // Same rule for the agent: its key and headers are not carried over to a new URL.
      if (a.apiKey === undefined) agent.apiKey = null;
      if (a.headers === undefined) agent.headers = {};
    }
    if (a.url !== undefined) {
      if (a.url === null) agent.url = null;
      else {
        const p = checkUrl(a.url, ['http:', 'https:']);
        if (p) problems.push({ field: 'agent.url', problem: p });
        else agent.url = a.url;
      }
    }
    if (a.apiKey !== undefined) {
      if (a.apiKey !== null && (typeof a.apiKey !== 'string' || a.apiKey.length > 4096))
        problems.push({ field: 'agent.apiKey', problem: 'must be a string' });
      else agent.apiKey = a.apiKey;
    }
    if (a.type !== undefined) {
      if (!AGENT_TYPES.includes(a.type as never))
        problems.push({ field: 'agent.type', problem: `must be one of ${AGENT_TYPES.join(', ')}` });
      else agent.type = a.type;
    }
    if (a.timeoutSeconds !== undefined) {
      if (!Number.isInteger(a.timeoutSeconds) || a.timeoutSeconds < 1 || a.timeoutSeconds > 600)
        problems.push({ field: 'agent.timeoutSeconds', problem: 'must be an integer between 1 and 600 seconds' });
      else agent.timeoutSeconds = a.timeoutSeconds;
    }
    if (a.idleTimeoutSeconds !== undefined) {
      if (!Number.isInteger(a.idleTimeoutSeconds) || a.idleTimeoutSeconds < 1 || a.idleTimeoutSeconds > 600)
        problems.push({ field: 'agent.idleTimeoutSeconds', problem: 'must be an integer between 1 and 600 seconds' });
      else agent.idleTimeoutSeconds = a.idleTimeoutSeconds;
    }
    if (a.script !== undefined) {
      const p = scriptProblems(a.script);
      if (p.length) problems.push(...p);
      else agent.script = a.script;
    }
    if (a.defaultAgent !== undefined) agent.defaultAgent = a.defaultAgent;
    if (a.model !== undefined) agent.model = a.model;
    if (a.headers !== undefined) {
      const h = a.headers ?? {};
      if (
        typeof h !== 'object' ||
        Object.entries(h).some(([k, v]) => !/^[A-Za-z0-9-]{1,64}$/.test(k) || typeof v !== 'string' || /[\r\n]/.test(v))
      ) {
        problems.push({ field: 'agent.headers', problem: 'must map header names to single-line strings' });
      } else if (Object.keys(h).some((k) => RESERVED_HEADERS.has(k.toLowerCase()))) {
        problems.push({
          field: 'agent.headers',
          problem: `must not set Host or hop-by-hop headers (${[...RESERVED_HEADERS].join(', ')})`,
        });
      } else agent.headers = h;
    }
    // An instance without an agent URL can still be created (e.g. to pair first); the pipeline
    // dead-letters its messages with a clear reason.

    const settings: InstanceSettings = { ...DEFAULT_SETTINGS, ...(base?.settings ?? {}) };
    const s = input.settings ?? {};
    if (s.replyMode !== undefined) {
      if (!REPLY_MODES.includes(s.replyMode))
        problems.push({ field: 'settings.replyMode', problem: `must be one of ${REPLY_MODES.join(', ')}` });
      else settings.replyMode = s.replyMode;
    }
    if (s.accessMode !== undefined) {
      if (!ACCESS_MODES.includes(s.accessMode))
        problems.push({ field: 'settings.accessMode', problem: `must be one of ${ACCESS_MODES.join(', ')}` });
      else settings.accessMode = s.accessMode;
    }
    if (s.errorReply !== undefined) {
      if (s.errorReply !== null && (typeof s.errorReply !== 'string' || s.errorReply.length > 4000))
        problems.push({ field: 'settings.errorReply', problem: 'must be a string (≤ 4000 characters) or null' });
      else settings.errorReply = s.errorReply;
    }
    if (s.maxTextLength !== undefined) {
      if (
        s.maxTextLength !== null &&
        (!Number.isInteger(s.maxTextLength) || s.maxTextLength < 100 || s.maxTextLength > 100_000)
      )
        problems.push({
          field: 'settings.maxTextLength',
          problem: 'must be an integer between 100 and 100000, or null',
        });
      else settings.maxTextLength = s.maxTextLength;
    }
    for (const [k, v] of Object.entries(s)) {
      if (k in DEFAULT_SETTINGS) continue;
      // Extension settings (access gates, keyword triggers): null removes one; each is bounded.
      if (v === null) delete settings[k];
      else {
        const p = extensionSettingProblem(k, v);
        if (p) problems.push({ field: `settings.${k}`, problem: p });
        else settings[k] = v;
      }
    }
    if (Object.keys(settings).length - Object.keys(DEFAULT_SETTINGS).length > MAX_EXTENSION_SETTINGS)
      problems.push({ field: 'settings', problem: `has more than ${MAX_EXTENSION_SETTINGS} extension settings` });
    problems.push(...accessSettingsProblems(settings));
    if (problems.length) throw new Validation(problems.map((p) => `${p.field} ${p.problem}`).join('; '), problems);
    return {
      name: name as string,
      channel,
      config,
      agent,
      settings,
      isActive: input.isActive ?? base?.isActive ?? true,
      isDefault: input.isDefault ?? base?.isDefault ?? false,
    };
  }

  create(input: InstanceInput): Instance {
    const v = this.build(input, null);
    const now = isoNow();
    const id = newId();
    this.db
      .transaction(() => {
        if (this.db.query('SELECT 1 FROM instances WHERE name = ?').get(v.name)) {
          throw new Conflict(`An instance named '${v.name}' already exists`, { field: 'name' });
        }
        if (v.isDefault) this.db.query('UPDATE instances SET is_default = 0 WHERE is_default = 1').run();
        const seq = this.db.query<{ s: number }, []>('SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM instances').get()!.s;
        this.db
          .query(`INSERT INTO instances (id, seq, name, channel, is_active, is_default, agent_json, config_json, settings_json, webhook_secret, status, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'disconnected', ?, ?)`)
          .run(
            id,
            seq,
            v.name,
            v.channel,
            v.isActive ? 1 : 0,
            v.isDefault ? 1 : 0,
            JSON.stringify(v.agent),
            JSON.stringify(v.config),
            JSON.stringify(v.settings),
            randomToken(24),
            now,
            now,
          );
      })
      .immediate();
    const inst = this.get(id)!;
    this.emit({ type: 'created', instance: inst });
    return inst;
  }

  update(idOrName: string, input: InstanceInput): Instance {
    const previous = this.require(idOrName);
    const v = this.build(input, previous);
    this.db
      .transaction(() => {
        if (v.name !== previous.name && this.db.query('SELECT 1 FROM instances WHERE name = ?').get(v.name)) {
          throw new Conflict(`An instance named '${v.name}' already exists`, { field: 'name' });
        }
        if (v.isDefault && !previous.isDefault)
          this.db.query('UPDATE instances SET is_default = 0 WHERE is_default = 1').run();
        this.db
          .query(
            `UPDATE instances SET name = ?, is_active = ?, is_default = ?, agent_json = ?, config_json = ?, settings_json = ?, updated_at = ? WHERE id = ?`,
          )
          .run(
            v.name,
            v.isActive ? 1 : 0,
            v.isDefault ? 1 : 0,
            JSON.stringify(v.agent),
            JSON.stringify(v.config),
            JSON.stringify(v.settings),
            isoNow(),
            previous.id,
          );
      })
      .immediate();
    this.cacheById.clear();
    this.idByName.clear();
    const inst = this.get(previous.id)!;
    this.emit({ type: 'updated', instance: inst, previous });
    return inst;
  }

  delete(idOrName: string): Instance {
    const inst = this.require(idOrName);
    this.db.query('DELETE FROM instances WHERE id = ?').run(inst.id);
    this.emit({ type: 'deleted', instance: inst });
    return inst;
  }

  rotateWebhookSecret(idOrName: string): Instance {
    const inst = this.require(idOrName);
    this.db
      .query('UPDATE instances SET webhook_secret = ?, updated_at = ? WHERE id = ?')
      .run(randomToken(24), isoNow(), inst.id);
    this.cacheById.clear();
    this.idByName.clear();
    const next = this.get(inst.id)!;
    this.emit({ type: 'updated', instance: next, previous: inst });
    return next;
  }

  /** Status is runtime state written by the instance actor; no change event for listeners that reconfigure. */
  setStatus(id: string, status: InstanceStatus, reason: string | null): void {
    this.db.query('UPDATE instances SET status = ?, status_reason = ? WHERE id = ?').run(status, reason, id);
    const hit = this.cacheById.get(id);
    if (hit) this.cacheById.set(id, { ...hit, status, statusReason: reason });
  }
}

/** Webhook path segment per channel; null when the channel receives no webhooks. */
export function webhookPath(channel: ChannelKind): string | null {
  return channelOf(channel)?.webhook?.path ?? null;
}

/** The instance's webhook URL; the token is shown only to callers allowed to change the instance. */
export function webhookUrl(inst: Instance, base: string, revealToken = true): string | null {
  const seg = webhookPath(inst.channel);
  if (!seg) return null;
  return `${base.replace(/\/+$/, '')}/webhook/${seg}/${inst.name}?token=${revealToken ? inst.webhookSecret : '****'}`;
}
