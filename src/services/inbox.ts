// The durable inbox. Ingress writes are group-committed: every write requested in the same
// event-loop turn shares one transaction, and each caller is answered only after that commit.
import type { Database, Statement } from 'bun:sqlite';
import { Overloaded } from '../core/errors.ts';
import type { ChatRef, InboundMessage, IngestResult } from '../core/message.ts';
import { crashPoint } from './crash.ts';
import { isoNow, newId, sha256 } from './ids.ts';

export type InboxStatus = 'pending' | 'processing' | 'completed' | 'failed' | 'blocked' | 'dead_lettered' | 'shed';
export const TERMINAL: InboxStatus[] = ['completed', 'failed', 'blocked', 'dead_lettered', 'shed'];

export interface InboxRow {
  seq: number;
  id: string;
  instance_id: string;
  provider_message_id: string;
  conversation_id: string;
  kind: 'inbound' | 'send';
  sender_id: string;
  sender_name: string | null;
  sender_phone: string | null;
  text: string;
  content_type: string;
  payload_json: string;
  status: InboxStatus;
  attempts: number;
  response_text: string | null;
  error: string | null;
  channel_success: number | null;
  possible_duplicate: number;
  received_at: string;
  completed_at: string | null;
  duration_ms: number | null;
}

export interface IngestOutcome extends IngestResult {
  conversationId: string;
  seq: number;
  shed: boolean;
}

interface Pending {
  msg: InboundMessage;
  kind: 'inbound' | 'send';
  resolve: (r: IngestOutcome) => void;
  reject: (e: unknown) => void;
}

export function chatKey(chat: ChatRef): string {
  return chat.threadId ? `${chat.chatId}/${chat.threadId}` : chat.chatId;
}

/** Deterministic conversation id: the same chat maps to the same id on every node. */
export function conversationIdFor(instanceId: string, chat: ChatRef): string {
  return conversationIdForKey(instanceId, chatKey(chat));
}

export function conversationIdForKey(instanceId: string, key: string): string {
  return `c_${sha256(`${instanceId}\u0000${key}`).slice(0, 24)}`;
}

/** Bounds on the rows kept in memory for conversation actors (beyond them actors query). */
const FRESH_PER_CONVERSATION = 64;
const FRESH_TOTAL = 10_000;

export interface InboxLimits {
  conversationBacklog: number;
  globalBacklog: number;
}

export class Inbox {
  private queue: Pending[] = [];
  private flushScheduled = false;
  /** Non-terminal rows per conversation (backlog), kept in memory for the bounds. */
  private backlog = new Map<string, number>();
  private backlogTotal = 0;
  private listeners: Array<(conversationId: string, instanceId: string) => void> = [];
  /**
   * Rows this process ingested that no actor has taken yet, per conversation, in seq order. When
   * they account for the conversation's whole backlog (every row handed out earlier is terminal),
   * they ARE its unfinished rows and next() returns them without a query. Anything that changes a
   * row behind the actors' back (replay, cluster catch-up) drops the conversation's list.
   */
  private fresh = new Map<string, InboxRow[]>();
  private freshTotal = 0;
  /** Rows handed out from `fresh`: never read back, never terminal before, trace steps 0..1 only. */
  private handedFresh = new WeakSet<InboxRow>();
  private stmt: {
    upsertConversation: Statement;
    touchConversation: Statement;
    insert: Statement;
    step: Statement;
  };
  /** Counters for metrics. */
  readonly counters = { accepted: 0, duplicates: 0, shed: 0, overloaded: 0, groupCommits: 0 };

  constructor(
    private db: Database,
    private limits: InboxLimits,
  ) {
    this.stmt = {
      upsertConversation: db.query(
        `INSERT INTO conversations (id, instance_id, chat_key, chat_json, kind, title, created_at, last_activity_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET last_activity_at = excluded.last_activity_at`,
      ),
      touchConversation: db.query('UPDATE conversations SET last_activity_at = ? WHERE id = ?'),
      insert: db.query(
        `INSERT INTO inbox (id, instance_id, provider_message_id, conversation_id, kind, sender_id, sender_name, sender_phone, text, content_type, payload_json, status, received_at, completed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance_id, provider_message_id) DO NOTHING RETURNING seq`,
      ),
      step: db.query(
        'INSERT INTO trace_steps (trace_id, idx, step, status, at, duration_ms, details_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
    };
    this.recount();
  }

  /** Called after each commit with the conversations that got new work. */
  onNewWork(fn: (conversationId: string, instanceId: string) => void): void {
    this.listeners.push(fn);
  }

  get depth(): number {
    return this.backlogTotal;
  }

  conversationBacklog(conversationId: string): number {
    return this.backlog.get(conversationId) ?? 0;
  }

  /** Unfinished rows of every conversation that has any (for the backlog histogram). */
  backlogSizes(): IterableIterator<number> {
    return this.backlog.values();
  }

  /**
   * A row reached a terminal state: it no longer counts against the bounds. The conversation
   * actor names the row it finished (a row it was handed); without `seq` the row may be one of
   * the kept fresh rows, so they are dropped.
   */
  settled(conversationId: string, seq?: number): void {
    if (seq === undefined) this.dropFresh(conversationId);
    const n = (this.backlog.get(conversationId) ?? 0) - 1;
    if (n <= 0) this.backlog.delete(conversationId);
    else this.backlog.set(conversationId, n);
    this.backlogTotal = Math.max(0, this.backlogTotal - 1);
  }

  /** Rebuilds the backlog counts from the database (after rows were deleted behind the actors' back). */
  recount(): void {
    this.backlog.clear();
    this.backlogTotal = 0;
    for (const conv of [...this.fresh.keys()]) this.dropFresh(conv);
    for (const r of this.db
      .query<{ conversation_id: string; n: number }, []>(
        `SELECT conversation_id, COUNT(*) AS n FROM inbox WHERE status IN ('pending','processing') GROUP BY conversation_id`,
      )
      .all()) {
      this.backlog.set(r.conversation_id, r.n);
      this.backlogTotal += r.n;
    }
  }

  /** A terminal row went back to pending (dead-letter replay). */
  reopened(conversationId: string): void {
    this.dropFresh(conversationId);
    this.backlog.set(conversationId, (this.backlog.get(conversationId) ?? 0) + 1);
    this.backlogTotal++;
  }

  /** Durable write; resolves after the group commit that contains it. */
  ingest(msg: InboundMessage, kind: 'inbound' | 'send' = 'inbound'): Promise<IngestOutcome> {
    if (this.backlogTotal + this.queue.length >= this.limits.globalBacklog) {
      this.counters.overloaded++;
      return Promise.reject(new Overloaded(5));
    }
    return new Promise<IngestOutcome>((resolve, reject) => {
      this.queue.push({ msg, kind, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const results: Array<IngestOutcome | null> = [];
    const freshRows: Array<InboxRow | null> = [];
    const woken = new Map<string, string>();
    this.batchCounts.clear();
    try {
      this.db
        .transaction(() => {
          const now = isoNow();
          for (const p of batch) results.push(this.write(p, now, woken, freshRows));
          crashPoint('mid_group_commit');
        })
        .immediate();
    } catch (err) {
      // The whole batch failed (disk full, database closed): every caller gets the error, nothing was acked.
      for (const p of batch) p.reject(err);
      return;
    }
    this.counters.groupCommits++;
    crashPoint('after_inbox_commit');
    for (let i = 0; i < batch.length; i++) {
      const r = results[i]!;
      if (r.status === 'accepted' && !r.shed) {
        this.backlog.set(r.conversationId, (this.backlog.get(r.conversationId) ?? 0) + 1);
        this.backlogTotal++;
        this.keepFresh(r.conversationId, freshRows[i]!);
      }
      batch[i].resolve(r);
    }
    for (const [conv, inst] of woken) for (const l of this.listeners) l(conv, inst);
  }

  private write(p: Pending, now: string, woken: Map<string, string>, freshRows: Array<InboxRow | null>): IngestOutcome {
    const m = p.msg;
    const conversationId = conversationIdFor(m.instanceId, m.chat);
    this.stmt.upsertConversation.run(
      conversationId,
      m.instanceId,
      chatKey(m.chat),
      JSON.stringify(m.chat),
      m.chat.kind,
      m.chat.kind === 'direct' ? (m.sender.name ?? null) : null,
      now,
      now,
    );
    // Cluster mode: the trace id was chosen (and answered) by the node that took the webhook.
    const id = typeof m.extra?.clusterTraceId === 'string' ? m.extra.clusterTraceId : newId();
    // Per-conversation bound: beyond it the row is kept (terminal, traced) but never reaches the agent.
    const pendingHere = (this.backlog.get(conversationId) ?? 0) + (this.batchCounts.get(conversationId) ?? 0);
    const shed = pendingHere >= this.limits.conversationBacklog;
    const payload = JSON.stringify(m);
    const row = this.stmt.insert.get(
      id,
      m.instanceId,
      m.providerMessageId,
      conversationId,
      p.kind,
      m.sender.id,
      m.sender.name ?? null,
      m.sender.phone ?? null,
      m.text,
      m.contentType,
      payload,
      shed ? 'shed' : 'pending',
      now,
      shed ? now : null,
    ) as { seq: number } | null;
    // The row as `SELECT *` would return it (kept for the actor when accepted).
    freshRows.push(
      row && !shed
        ? {
            seq: row.seq,
            id,
            instance_id: m.instanceId,
            provider_message_id: m.providerMessageId,
            conversation_id: conversationId,
            kind: p.kind,
            sender_id: m.sender.id,
            sender_name: m.sender.name ?? null,
            sender_phone: m.sender.phone ?? null,
            text: m.text,
            content_type: m.contentType,
            payload_json: payload,
            status: 'pending',
            attempts: 0,
            response_text: null,
            error: null,
            channel_success: null,
            possible_duplicate: 0,
            received_at: now,
            completed_at: null,
            duration_ms: null,
          }
        : null,
    );
    if (!row) {
      this.counters.duplicates++;
      const existing = this.db
        .query<{ id: string; seq: number }, [string, string]>(
          'SELECT id, seq FROM inbox WHERE instance_id = ? AND provider_message_id = ?',
        )
        .get(m.instanceId, m.providerMessageId)!;
      return { status: 'duplicate', traceId: existing.id, conversationId, seq: existing.seq, shed: false };
    }
    this.stmt.step.run(id, 0, 'webhook_received', 'success', now, null, null);
    this.stmt.step.run(id, 1, 'instance_validated', 'success', now, null, null);
    if (shed) {
      this.counters.shed++;
      this.stmt.step.run(
        id,
        2,
        'shed',
        'error',
        now,
        null,
        JSON.stringify({ reason: `conversation backlog above ${this.limits.conversationBacklog}` }),
      );
    } else {
      this.counters.accepted++;
      woken.set(conversationId, m.instanceId);
      this.batchCounts.set(conversationId, (this.batchCounts.get(conversationId) ?? 0) + 1);
    }
    return { status: 'accepted', traceId: id, conversationId, seq: row.seq, shed };
  }

  /** Rows accepted per conversation in the batch being written (cleared every flush). */
  private batchCounts = new Map<string, number>();

  /** Conversations with unfinished rows (resumed on start), oldest work first. */
  conversationsWithWork(): Array<{ conversationId: string; instanceId: string }> {
    return this.db
      .query<{ conversationId: string; instanceId: string }, []>(
        `SELECT conversation_id AS conversationId, instance_id AS instanceId, MIN(seq) AS s FROM inbox
         WHERE status IN ('pending','processing') GROUP BY conversation_id ORDER BY s`,
      )
      .all();
  }

  private keepFresh(conversationId: string, row: InboxRow): void {
    const list = this.fresh.get(conversationId);
    if ((list?.length ?? 0) >= FRESH_PER_CONVERSATION || this.freshTotal >= FRESH_TOTAL) {
      this.dropFresh(conversationId); // the actor queries until this conversation catches up
      return;
    }
    if (list) list.push(row);
    else this.fresh.set(conversationId, [row]);
    this.freshTotal++;
  }

  private dropFresh(conversationId: string): void {
    const list = this.fresh.get(conversationId);
    if (!list) return;
    this.freshTotal -= list.length;
    this.fresh.delete(conversationId);
  }

  /** The trace's next step index when known without a query (a row handed out fresh from ingest). */
  knownNextStep(row: InboxRow): number | undefined {
    return this.handedFresh.has(row) ? 2 : undefined;
  }

  /** True when the row came fresh from this process's ingest, so it was never terminal before. */
  isFresh(row: InboxRow): boolean {
    return this.handedFresh.has(row);
  }

  /**
   * The next rows of a conversation, in order (bounded prefetch). Called by the conversation's
   * actor once every row it was handed before is terminal, or after it gave up on some (stop,
   * crash, hand-off), in which case the backlog exceeds the kept rows and the query runs.
   */
  next(conversationId: string, afterSeq: number, limit: number): InboxRow[] {
    const list = this.fresh.get(conversationId);
    if (list && list.length === (this.backlog.get(conversationId) ?? 0) && list[0]!.seq > afterSeq) {
      const rows = list.length <= limit ? list : list.slice(0, limit);
      if (rows === list) this.fresh.delete(conversationId);
      else list.splice(0, limit);
      this.freshTotal -= rows.length;
      for (const r of rows) this.handedFresh.add(r);
      return rows;
    }
    this.dropFresh(conversationId); // the query returns them too; handed out that way they are not fresh
    return this.db
      .query<InboxRow, [string, number, number]>(
        `SELECT * FROM inbox WHERE conversation_id = ? AND seq > ? AND status IN ('pending','processing') ORDER BY seq LIMIT ?`,
      )
      .all(conversationId, afterSeq, limit);
  }

  get(seq: number): InboxRow | null {
    return this.db.query<InboxRow, [number]>('SELECT * FROM inbox WHERE seq = ?').get(seq);
  }

  /** Drops terminal rows older than the dedupe retention. */
  prune(retentionDays: number, now = Date.now()): number {
    const cutoff = new Date(now - retentionDays * 86_400_000).toISOString();
    return this.db
      .query(`DELETE FROM inbox WHERE status NOT IN ('pending','processing') AND received_at < ?`)
      .run(cutoff).changes;
  }
}
