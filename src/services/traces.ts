// Traces: the inbox row is the trace; steps are appended as the pipeline runs. This service reads
// them for the API; every write goes through the inbox store (db/inbox-store.ts).
import type { Database } from 'bun:sqlite';
import type { InboxRow } from './inbox.ts';
import { olderThan, type TimeKey } from './pagination.ts';

export interface TraceStep {
  step: string;
  status: 'success' | 'error' | 'skipped';
  at: string;
  durationMs: number | null;
  details: Record<string, unknown> | null;
}

export interface TraceFilter {
  instanceId?: string;
  instanceIds?: string[] | null;
  userId?: string;
  status?: string[];
  since?: string;
  until?: string;
  conversationId?: string;
  /** Only these trace ids. */
  ids?: string[];
  /** The cursor: only rows strictly older than this (received_at, id). */
  before?: TimeKey;
  limit: number;
  offset?: number;
}

export interface TraceRecord extends InboxRow {
  instance_name: string;
  steps: TraceStep[];
}

export class TraceService {
  constructor(readonly db: Database) {}

  steps(traceId: string): TraceStep[] {
    return this.db
      .query<
        {
          step: string;
          status: TraceStep['status'];
          at: string;
          duration_ms: number | null;
          details_json: string | null;
        },
        [string]
      >('SELECT step, status, at, duration_ms, details_json FROM trace_steps WHERE trace_id = ? ORDER BY idx')
      .all(traceId)
      .map((r) => ({
        step: r.step,
        status: r.status,
        at: r.at,
        durationMs: r.duration_ms,
        details: r.details_json ? JSON.parse(r.details_json) : null,
      }));
  }

  private where(f: Omit<TraceFilter, 'limit' | 'offset'>): { sql: string; params: (string | number)[] } {
    const w: string[] = [];
    const p: (string | number)[] = [];
    if (f.instanceId) {
      w.push('i.instance_id = ?');
      p.push(f.instanceId);
    }
    if (f.instanceIds) {
      if (f.instanceIds.length === 0) w.push('0');
      else {
        w.push(`i.instance_id IN (${f.instanceIds.map(() => '?').join(',')})`);
        p.push(...f.instanceIds);
      }
    }
    if (f.userId) {
      // v1 filters by phone or user id; accept "+55…", digits, or the platform id.
      const digits = f.userId.replace(/\D/g, '');
      w.push('(i.sender_id = ? OR i.sender_phone = ? OR i.sender_phone = ?)');
      p.push(f.userId, f.userId, `+${digits}`);
    }
    if (f.status?.length) {
      w.push(`i.status IN (${f.status.map(() => '?').join(',')})`);
      p.push(...f.status);
    }
    if (f.since) {
      w.push('i.received_at >= ?');
      p.push(f.since);
    }
    if (f.until) {
      w.push('i.received_at <= ?');
      p.push(f.until);
    }
    if (f.conversationId) {
      w.push('i.conversation_id = ?');
      p.push(f.conversationId);
    }
    if (f.ids) {
      if (f.ids.length === 0) w.push('0');
      else {
        w.push(`i.id IN (${f.ids.map(() => '?').join(',')})`);
        p.push(...f.ids);
      }
    }
    if (f.before) {
      const older = olderThan('i.received_at', 'i.id', f.before);
      w.push(older.sql);
      p.push(...older.params);
    }
    return { sql: w.length ? `WHERE ${w.join(' AND ')}` : '', params: p };
  }

  /** Newest first by (received_at, id): the same order on every node (src/services/pagination.ts). */
  list(f: TraceFilter): TraceRecord[] {
    const { sql, params } = this.where(f);
    const rows = this.db
      .query<InboxRow & { instance_name: string }, (string | number)[]>(
        `SELECT i.*, n.name AS instance_name FROM inbox i JOIN instances n ON n.id = i.instance_id ${sql} ORDER BY i.received_at DESC, i.id DESC LIMIT ? OFFSET ?`,
      )
      .all(...params, f.limit, f.offset ?? 0);
    return rows.map((r) => ({ ...r, steps: this.steps(r.id) }));
  }

  count(f: Omit<TraceFilter, 'limit' | 'offset'>): number {
    const { sql, params } = this.where(f);
    return this.db.query<{ n: number }, (string | number)[]>(`SELECT COUNT(*) AS n FROM inbox i ${sql}`).get(...params)!
      .n;
  }

  get(traceId: string): TraceRecord | null {
    const r = this.db
      .query<InboxRow & { instance_name: string }, [string]>(
        'SELECT i.*, n.name AS instance_name FROM inbox i JOIN instances n ON n.id = i.instance_id WHERE i.id = ?',
      )
      .get(traceId);
    return r ? { ...r, steps: this.steps(r.id) } : null;
  }
}
