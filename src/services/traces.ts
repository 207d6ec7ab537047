// Traces: the inbox row is the trace; steps are appended as the pipeline runs.
import type { Database } from 'bun:sqlite';
import type { GroupCommitter } from './group-commit.ts';
import { isoNow } from './ids.ts';
import type { InboxRow, InboxStatus } from './inbox.ts';

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
  beforeSeq?: number;
  /** Cluster cursor: only rows strictly older than this (received_at, id); implies that order. */
  before?: { at: string; id: string };
  /** Order newest first by (received_at, id) instead of seq (cluster mode: comparable across nodes). */
  byReceived?: boolean;
  limit: number;
  offset?: number;
}

export interface TraceRecord extends InboxRow {
  instance_name: string;
  steps: TraceStep[];
}

/**
 * The pending writes of one message being processed: trace steps and row updates are buffered
 * and written together with the stage's own change (agent commit, outbox `sending`, finish), so
 * a message costs a few transactions instead of one per step.
 */
export class TraceLog {
  private ops: Array<() => void> = [];
  private nextIdx: number;

  /** `nextStep`: the next step index when the caller knows it (a row fresh from ingest); else queried. */
  constructor(
    private traces: TraceService,
    readonly traceId: string,
    private committer: GroupCommitter,
    nextStep?: number,
  ) {
    this.nextIdx = nextStep ?? traces.nextStepIndex(traceId);
  }

  step(
    step: string,
    status: TraceStep['status'],
    details?: Record<string, unknown> | null,
    durationMs?: number | null,
  ): void {
    const idx = this.nextIdx++;
    const at = isoNow();
    this.ops.push(() =>
      this.traces.insertStep(this.traceId, idx, step, status, at, durationMs ?? null, details ?? null),
    );
  }

  /** Queues a row update for the next commit of this message. */
  write(op: () => void): void {
    this.ops.push(op);
  }

  /** Commits the queued writes, then `also`, in the next group commit; resolves once durable. */
  commit(also?: () => void): Promise<void> {
    const ops = this.ops;
    this.ops = [];
    if (ops.length === 0 && !also) return Promise.resolve();
    return this.committer.commit(() => {
      for (const op of ops) op();
      also?.();
    });
  }
}

export class TraceService {
  /** Hot-path statements, prepared once (db.query would look each up by its SQL text per call). */
  private stmt;

  constructor(readonly db: Database) {
    this.stmt = {
      insertStep: db.query<unknown, [string, number, string, string, string, number | null, string | null]>(
        'INSERT INTO trace_steps (trace_id, idx, step, status, at, duration_ms, details_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      finish: db.query<unknown, [string, string | null, number | null, string, number, number]>(
        'UPDATE inbox SET status = ?, error = COALESCE(?, error), channel_success = COALESCE(?, channel_success), completed_at = ?, duration_ms = ? WHERE seq = ?',
      ),
    };
  }

  nextStepIndex(traceId: string): number {
    return this.db
      .query<{ n: number }, [string]>('SELECT COALESCE(MAX(idx), -1) + 1 AS n FROM trace_steps WHERE trace_id = ?')
      .get(traceId)!.n;
  }

  insertStep(
    traceId: string,
    idx: number,
    step: string,
    status: TraceStep['status'],
    at: string,
    durationMs: number | null,
    details: Record<string, unknown> | null,
  ): void {
    this.stmt.insertStep.run(traceId, idx, step, status, at, durationMs, details ? JSON.stringify(details) : null);
  }

  /** One step in its own transaction (API actions such as a replay; the pipeline uses TraceLog). */
  addStep(
    traceId: string,
    step: string,
    status: TraceStep['status'],
    details?: Record<string, unknown> | null,
    durationMs?: number | null,
  ): void {
    this.insertStep(traceId, this.nextStepIndex(traceId), step, status, isoNow(), durationMs ?? null, details ?? null);
  }

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
    if (f.beforeSeq !== undefined) {
      w.push('i.seq < ?');
      p.push(f.beforeSeq);
    }
    if (f.before) {
      w.push('(i.received_at < ? OR (i.received_at = ? AND i.id < ?))');
      p.push(f.before.at, f.before.at, f.before.id);
    }
    return { sql: w.length ? `WHERE ${w.join(' AND ')}` : '', params: p };
  }

  /** Newest first. */
  list(f: TraceFilter): TraceRecord[] {
    const { sql, params } = this.where(f);
    const rows = this.db
      .query<InboxRow & { instance_name: string }, (string | number)[]>(
        `SELECT i.*, n.name AS instance_name FROM inbox i JOIN instances n ON n.id = i.instance_id ${sql} ORDER BY ${f.byReceived || f.before ? 'i.received_at DESC, i.id DESC' : 'i.seq DESC'} LIMIT ? OFFSET ?`,
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

  /** Marks a trace terminal. */
  finish(
    seq: number,
    status: InboxStatus,
    fields: { error?: string | null; channelSuccess?: boolean | null; receivedAt: string },
  ): void {
    const now = Date.now();
    this.stmt.finish.run(
      status,
      fields.error ?? null,
      fields.channelSuccess == null ? null : fields.channelSuccess ? 1 : 0,
      isoNow(now),
      Math.max(0, now - Date.parse(fields.receivedAt)),
      seq,
    );
  }
}
