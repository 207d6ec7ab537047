// Instances: one service behind both API versions. Input arrives already mapped to
// InstanceInput (v1 flat snake_case and v2 camelCase are thin mappers over this).
import type { Database } from 'bun:sqlite';
import { channelOf } from '../channels/registry.ts';
import { Conflict, NotFound } from '../core/errors.ts';
import type { Instance, InstanceStatus } from '../core/instance.ts';
import type { ChannelKind } from '../core/message.ts';
import { crashPoint } from './crash.ts';
import { isoNow, newId, randomToken } from './ids.ts';
import { DEFAULT_AGENT, DEFAULT_SETTINGS, type InstanceInput, validateInstanceInput } from './instance-input.ts';

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

  create(input: InstanceInput): Instance {
    const v = validateInstanceInput(input, null, this.defaults.agentTimeoutSeconds);
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
    const v = validateInstanceInput(input, previous, this.defaults.agentTimeoutSeconds);
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

  /**
   * Status is runtime state written by the instance actor; no change event for listeners that reconfigure.
   * `inTransaction` runs in the same transaction after the write, so what it records (the status
   * event and its webhook deliveries) commits with the status or, when it throws, rolls it back.
   */
  setStatus(id: string, status: InstanceStatus, reason: string | null, inTransaction?: () => void): void {
    this.db
      .transaction(() => {
        this.db.query('UPDATE instances SET status = ?, status_reason = ? WHERE id = ?').run(status, reason, id);
        crashPoint('status_before_event');
        inTransaction?.();
      })
      .immediate();
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
