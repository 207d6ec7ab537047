// Webhook subscriptions: where events go, which ones, and the secret that signs them. A
// configuration table (replicated to every node in cluster mode, like access rules).
import type { Database } from 'bun:sqlite';
import type { Clock } from '../../actors/runtime/clock.ts';
import { NotFound, Validation } from '../core/errors.ts';
import { literalProblem, maskUrl } from '../net/outbound.ts';
import { isoNow, newId } from '../services/ids.ts';
import { maskedSecret, newSecret } from './signing.ts';
import { type SubscriptionView, WEBHOOK_EVENT_TYPES } from './types.ts';

export interface SubscriptionRow {
  id: string;
  url: string;
  description: string | null;
  events_json: string;
  instance_ids_json: string | null;
  secret: string;
  previous_secret: string | null;
  previous_secret_until: number | null;
  active: number;
  disabled_reason: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface SubscriptionInput {
  url?: string;
  events?: string[];
  instanceIds?: string[] | null;
  description?: string | null;
  active?: boolean;
}

/**
 * The row as the API shows it; the secret, and credentials in the URL (password, `?token=`-like
 * query values), in full only when `reveal` (create, rotation), as the agent URL elsewhere.
 */
export function subscriptionView(r: SubscriptionRow, reveal = false): SubscriptionView {
  return {
    id: r.id,
    url: reveal ? r.url : (maskUrl(r.url) ?? r.url),
    description: r.description,
    events: JSON.parse(r.events_json) as string[],
    instanceIds: r.instance_ids_json === null ? null : (JSON.parse(r.instance_ids_json) as string[]),
    active: r.active === 1,
    disabledReason: r.disabled_reason,
    disabledAt: r.disabled_at,
    secret: reveal ? r.secret : maskedSecret(r.secret),
    previousSecretExpiresAt: r.previous_secret && r.previous_secret_until ? isoNow(r.previous_secret_until) : null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** An http(s) URL that is not a literal link-local or metadata address (names are checked per request). */
export function checkUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Validation('url: must be an absolute http or https URL', [{ field: 'url', problem: 'is not a URL' }]);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Validation('url: must be http or https', [{ field: 'url', problem: 'must be http or https' }]);
  const problem = literalProblem(url);
  if (problem) throw new Validation(`url: ${problem}`, [{ field: 'url', problem }]);
  return u.toString();
}

function checkEvents(events: string[]): string[] {
  const known = new Set<string>(WEBHOOK_EVENT_TYPES);
  const unknown = events.filter((e) => !known.has(e));
  if (unknown.length)
    throw new Validation(`events: unknown event type ${unknown.map((e) => `'${e}'`).join(', ')}`, [
      { field: 'events', problem: `must be among: ${WEBHOOK_EVENT_TYPES.join(', ')}` },
    ]);
  return [...new Set(events)];
}

/** Whether a key limited to `keyInstances` (null = all) may see and change this subscription. */
export function visibleTo(r: SubscriptionRow, keyInstances: string[] | null): boolean {
  if (keyInstances === null) return true;
  if (r.instance_ids_json === null) return false;
  const ids = JSON.parse(r.instance_ids_json) as string[];
  return ids.length > 0 && ids.every((id) => keyInstances.includes(id));
}

export class SubscriptionStore {
  constructor(
    private db: Database,
    private clock: Clock,
  ) {}

  /** Active subscriptions as last read: every recorded event is matched against them (hot path). */
  private activeRows: SubscriptionRow[] | null = null;

  /** Drops the cached active list: after each write here, and when the cluster replicated rows. */
  invalidate(): void {
    this.activeRows = null;
  }

  create(input: SubscriptionInput & { url: string }): SubscriptionRow {
    this.invalidate();
    const now = isoNow(this.clock.now());
    const id = newId();
    this.db
      .query(
        `INSERT INTO webhook_subscriptions (id, url, description, events_json, instance_ids_json, secret, active, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)`,
      )
      .run(
        id,
        checkUrl(input.url),
        input.description ?? null,
        JSON.stringify(checkEvents(input.events ?? [])),
        input.instanceIds == null ? null : JSON.stringify([...new Set(input.instanceIds)]),
        newSecret(),
        now,
        now,
      );
    return this.get(id)!;
  }

  get(id: string): SubscriptionRow | null {
    return this.db.query<SubscriptionRow, [string]>('SELECT * FROM webhook_subscriptions WHERE id = ?').get(id);
  }

  /** Oldest first; `keyInstances` limits to the subscriptions an instance-bound key may see. */
  list(f: { keyInstances: string[] | null; afterId?: string; limit?: number }): SubscriptionRow[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (f.keyInstances !== null) {
      // Only subscriptions limited to instances the key is limited to as well.
      where.push('instance_ids_json IS NOT NULL AND json_array_length(instance_ids_json) > 0');
      where.push(
        `NOT EXISTS (SELECT 1 FROM json_each(instance_ids_json) j WHERE j.value NOT IN (${f.keyInstances.map(() => '?').join(',') || "''"}))`,
      );
      args.push(...f.keyInstances);
    }
    if (f.afterId !== undefined) {
      where.push('id > ?');
      args.push(f.afterId);
    }
    args.push(f.limit ?? -1);
    return this.db
      .query<SubscriptionRow, typeof args>(
        `SELECT * FROM webhook_subscriptions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`,
      )
      .all(...args);
  }

  update(id: string, patch: SubscriptionInput): SubscriptionRow {
    const cur = this.get(id);
    if (!cur) throw new NotFound('Webhook subscription not found');
    const sets: string[] = [];
    const args: Array<string | number | null> = [];
    const set = (col: string, v: string | number | null) => {
      sets.push(`${col} = ?`);
      args.push(v);
    };
    // The masked URL a read showed, sent back unchanged, keeps the stored one.
    if (patch.url !== undefined && patch.url !== maskUrl(cur.url)) set('url', checkUrl(patch.url));
    if (patch.events !== undefined) set('events_json', JSON.stringify(checkEvents(patch.events)));
    if (patch.instanceIds !== undefined)
      set('instance_ids_json', patch.instanceIds === null ? null : JSON.stringify([...new Set(patch.instanceIds)]));
    if (patch.description !== undefined) set('description', patch.description);
    if (patch.active !== undefined) {
      set('active', patch.active ? 1 : 0);
      // Turned on again by its owner: the reason it was turned off no longer holds.
      if (patch.active) {
        set('disabled_reason', null);
        set('disabled_at', null);
      }
    }
    set('updated_at', isoNow(this.clock.now()));
    this.invalidate();
    this.db.query(`UPDATE webhook_subscriptions SET ${sets.join(', ')} WHERE id = ?`).run(...args, id);
    return this.get(id)!;
  }

  delete(id: string): boolean {
    this.invalidate();
    return this.db.query('DELETE FROM webhook_subscriptions WHERE id = ?').run(id).changes > 0;
  }

  /** A new secret; the old one keeps signing (a second signature) for `graceMs`. */
  rotate(id: string, graceMs: number): SubscriptionRow {
    const cur = this.get(id);
    if (!cur) throw new NotFound('Webhook subscription not found');
    const now = this.clock.now();
    this.invalidate();
    this.db
      .query(
        'UPDATE webhook_subscriptions SET secret = ?, previous_secret = ?, previous_secret_until = ?, updated_at = ? WHERE id = ?',
      )
      .run(newSecret(), graceMs > 0 ? cur.secret : null, graceMs > 0 ? now + graceMs : null, isoNow(now), id);
    return this.get(id)!;
  }

  /** The gateway turns a subscription off (410 Gone, failing for its whole retry period). */
  disable(id: string, reason: string): void {
    const now = isoNow(this.clock.now());
    this.invalidate();
    this.db
      .query(
        'UPDATE webhook_subscriptions SET active = 0, disabled_reason = ?, disabled_at = ?, updated_at = ? WHERE id = ? AND active = 1',
      )
      .run(reason, now, now, id);
  }

  /** Active subscriptions (the outbox matches each recorded event against them). */
  active(): SubscriptionRow[] {
    this.activeRows ??= this.db
      .query<SubscriptionRow, []>('SELECT * FROM webhook_subscriptions WHERE active = 1')
      .all();
    return this.activeRows;
  }

  /** The secrets that sign a delivery now: the current one, and the previous one during its grace period. */
  secrets(r: SubscriptionRow, now = this.clock.now()): string[] {
    return r.previous_secret && (r.previous_secret_until ?? 0) > now ? [r.secret, r.previous_secret] : [r.secret];
  }
}
