// The delivery outbox: one row per (event, subscription), inserted by record() inside the
// transaction that records the event, so an event and its deliveries exist together or not at
// all. The worker (worker.ts) takes the rows from here and writes each attempt's outcome back.
import type { Database } from 'bun:sqlite';
import type { Clock } from '../../actors/runtime/clock.ts';
import { isoNow, newId } from '../services/ids.ts';
import type { SubscriptionRow, SubscriptionStore } from './subscriptions.ts';
import type { DeliveryStatus, DeliveryView, WebhookEvent } from './types.ts';

export interface DeliveryRow {
  seq: number;
  id: string;
  subscription_id: string;
  msg_id: string;
  event_type: string;
  order_key: string;
  payload_json: string;
  status: DeliveryStatus;
  attempts: number;
  window_start: number;
  next_attempt_at: number;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: number | null;
  created_at: number;
}

const iso = (ms: number | null) => (ms === null ? null : isoNow(ms));

export function deliveryView(r: DeliveryRow): DeliveryView {
  return {
    id: r.id,
    subscriptionId: r.subscription_id,
    webhookId: r.msg_id,
    eventType: r.event_type,
    status: r.status,
    attempts: r.attempts,
    lastStatusCode: r.last_status_code,
    lastError: r.last_error,
    lastAttemptAt: iso(r.last_attempt_at),
    nextAttemptAt: r.status === 'pending' ? iso(r.next_attempt_at) : null,
    deliveredAt: iso(r.delivered_at),
    createdAt: isoNow(r.created_at),
    payload: JSON.parse(r.payload_json) as Record<string, unknown>,
  };
}

/** Whether a subscription asked for this event (type filter, instance filter). */
export function wants(s: SubscriptionRow, e: WebhookEvent): boolean {
  const events = JSON.parse(s.events_json) as string[];
  if (events.length > 0 && !events.includes(e.type)) return false;
  if (s.instance_ids_json === null) return true;
  return e.instanceId !== null && (JSON.parse(s.instance_ids_json) as string[]).includes(e.instanceId);
}

/** The body every attempt sends, byte for byte. */
export function body(e: WebhookEvent): string {
  return JSON.stringify({ type: e.type, timestamp: e.at, data: e.data });
}

export class DeliveryOutbox {
  private stmt;

  constructor(
    private db: Database,
    private clock: Clock,
    private subscriptions: SubscriptionStore,
  ) {
    this.stmt = {
      insert: db.query<unknown, [string, string, string, string, string, string, number, number, number]>(
        `INSERT INTO webhook_deliveries (id, subscription_id, msg_id, event_type, order_key, payload_json, window_start, next_attempt_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id, msg_id) DO NOTHING`,
      ),
      nextDue: db.query<{ at: number | null }, [number]>(
        `SELECT MIN(d.next_attempt_at) AS at FROM webhook_deliveries d
         JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active = 1
         WHERE d.status = 'pending' AND d.next_attempt_at > ?`,
      ),
      attempted: db.query<
        unknown,
        [DeliveryStatus, number | null, string | null, number, number | null, number | null, number]
      >(
        // The retry period runs from the first attempt, not from when the row was written (a row may
        // wait behind a failing earlier event of its conversation): the first attempt starts it.
        `UPDATE webhook_deliveries SET status = ?1, attempts = attempts + 1, last_status_code = ?2, last_error = ?3,
           last_attempt_at = ?4, window_start = CASE WHEN attempts = 0 THEN ?4 ELSE window_start END,
           next_attempt_at = COALESCE(?5, next_attempt_at), delivered_at = COALESCE(?6, delivered_at)
         WHERE seq = ?7 AND status = 'pending'`,
      ),
    };
  }

  /**
   * Puts the event into the outbox of every active subscription that wants it (or of `only`). A
   * disabled subscription gets no new rows (its queued ones wait until it is enabled again).
   * Call inside the transaction that records the event. Returns the rows written.
   */
  record(e: WebhookEvent, only?: SubscriptionRow): number {
    const subs = only ? [only] : this.subscriptions.active().filter((s) => wants(s, e));
    if (subs.length === 0) return 0;
    const now = this.clock.now();
    const json = body(e);
    let n = 0;
    for (const s of subs) {
      const id = newId();
      // A test event is ordered on its own: it never waits for (or holds up) real events.
      const key = e.type === 'webhook.test' ? id : e.orderKey;
      n += this.stmt.insert.run(id, s.id, e.msgId, e.type, key, json, now, now, now).changes;
    }
    return n;
  }

  get(id: string): DeliveryRow | null {
    return this.db.query<DeliveryRow, [string]>('SELECT * FROM webhook_deliveries WHERE id = ?').get(id);
  }

  /** The row of one event for one subscription. */
  find(subscriptionId: string, msgId: string): DeliveryRow | null {
    return this.db
      .query<DeliveryRow, [string, string]>('SELECT * FROM webhook_deliveries WHERE subscription_id = ? AND msg_id = ?')
      .get(subscriptionId, msgId);
  }

  /** Newest first. */
  list(subscriptionId: string, f: { beforeSeq?: number; status?: DeliveryStatus; limit: number }): DeliveryRow[] {
    const where = ['subscription_id = ?'];
    const args: Array<string | number> = [subscriptionId];
    if (f.beforeSeq !== undefined) {
      where.push('seq < ?');
      args.push(f.beforeSeq);
    }
    if (f.status) {
      where.push('status = ?');
      args.push(f.status);
    }
    args.push(f.limit);
    return this.db
      .query<DeliveryRow, typeof args>(
        `SELECT * FROM webhook_deliveries WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`,
      )
      .all(...args);
  }

  /** Sends the same event again (same webhook-id and body) with a fresh retry period. */
  redeliver(id: string): DeliveryRow | null {
    const now = this.clock.now();
    this.db
      .query(
        "UPDATE webhook_deliveries SET status = 'pending', window_start = ?, next_attempt_at = ?, delivered_at = NULL WHERE id = ?",
      )
      .run(now, now, id);
    return this.get(id);
  }

  /**
   * The first pending row of each (subscription, order key) that is due, earliest first: later
   * rows of the same key wait for it to be delivered or given up (order), other keys do not.
   * `skip`: subscriptions whose share of the worker is taken (their rows would only be passed over).
   */
  dueHeads(limit: number, skip: string[] = [], now = this.clock.now()): DeliveryRow[] {
    const notIn = skip.length ? `AND d.subscription_id NOT IN (${skip.map(() => '?').join(',')})` : '';
    return this.db
      .query<DeliveryRow, Array<string | number>>(
        `SELECT d.* FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.active = 1
         WHERE d.status = 'pending' AND d.next_attempt_at <= ? ${notIn}
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.subscription_id = d.subscription_id
                           AND e.order_key = d.order_key AND e.status = 'pending' AND e.seq < d.seq)
         ORDER BY d.next_attempt_at, d.seq LIMIT ?`,
      )
      .all(now, ...skip, limit);
  }

  /** When the next pending row (of an active subscription) falls due after `after`; null when none. */
  nextDue(after: number): number | null {
    return this.stmt.nextDue.get(after)?.at ?? null;
  }

  /** Writes one attempt's outcome: delivered, failed (given up), or pending again at `retryAt`. */
  attempted(
    seq: number,
    o: { status: DeliveryStatus; code: number | null; error: string | null; retryAt?: number },
  ): void {
    const now = this.clock.now();
    const deliveredAt = o.status === 'delivered' ? now : null;
    this.stmt.attempted.run(o.status, o.code, o.error, now, o.retryAt ?? null, deliveredAt, seq);
  }

  /** When the subscription last had a delivery accepted (ms), or null. */
  lastSuccess(subscriptionId: string): number | null {
    return (
      this.db
        .query<{ at: number | null }, [string]>(
          'SELECT MAX(delivered_at) AS at FROM webhook_deliveries WHERE subscription_id = ?',
        )
        .get(subscriptionId)?.at ?? null
    );
  }

  /** Drops finished rows created before `before` (ms). */
  prune(before: number): number {
    return this.db.query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ?").run(before)
      .changes;
  }
}
