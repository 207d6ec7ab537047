// The inbox store: the one owner of the message tables — `inbox` (each row is also the message's
// trace), `trace_steps`, `outbox` and `dead_letters` — and of the in-memory counts kept beside them
// (backlog per conversation, rows fresh from ingest, ingest outcomes). Nothing else writes those
// tables, so the counts cannot drift from the rows.
//
// Ingress writes are group-committed: every write requested in the same event-loop turn shares one
// transaction, and each caller is answered only after that commit. A message being processed is
// written through its unit of work (begin() → MessageWork, db/message-work.ts).
import type { Database, Statement } from 'bun:sqlite';
import { Overloaded } from '../src/core/errors.ts';
import type { DeliveryStatus, InboundMessage } from '../src/core/message.ts';
import { crashPoint } from '../src/services/crash.ts';
import { isoNow, newId } from '../src/services/ids.ts';
import {
  chatKey,
  conversationIdFor,
  type InboxLimits,
  type InboxRow,
  type IngestOutcome,
} from '../src/services/inbox.ts';
import type { TraceStep } from '../src/services/traces.ts';
import { GroupCommitter } from './group-commit.ts';
import { MessageWork, prepareWorkStatements, type WorkStatements, writeTerminal } from './message-work.ts';

interface Pending {
  msg: InboundMessage;
  kind: 'inbound' | 'send';
  resolve: (r: IngestOutcome) => void;
  reject: (e: unknown) => void;
}

/** A dead letter with its message's trace id and text. */
export interface DeadLetterRecord {
  id: string;
  inbox_seq: number;
  instance_id: string;
  conversation_id: string;
  reason: string;
  attempts: number;
  created_at: string;
  trace_id: string;
  text: string;
}

/** Receipts only move forward; failed is final. */
const RECEIPT_RANK: Record<string, number> = { sent: 1, delivered: 2, read: 3, failed: 4 };

/** A trace step written with a batch being taken (see takeBatch). */
export interface BatchStep {
  step: string;
  status: TraceStep['status'];
  details: Record<string, unknown> | null;
}

/** Bounds on the rows kept in memory for conversation actors (beyond them actors query). */
const FRESH_PER_CONVERSATION = 64;
const FRESH_TOTAL = 10_000;

export class InboxStore {
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
  /** Rows accepted per conversation in the batch being written (cleared every flush). */
  private batchCounts = new Map<string, number>();
  private stmt: {
    upsertConversation: Statement;
    insert: Statement;
    step: Statement;
  };
  private work: WorkStatements;
  /** Group commit for the writes of messages being processed (shared by every conversation). */
  private committer: GroupCommitter;
  /** Counters for metrics. */
  readonly counters = { accepted: 0, duplicates: 0, shed: 0, overloaded: 0, groupCommits: 0 };

  constructor(
    private db: Database,
    private limits: InboxLimits,
    /** Wall-clock time of ingest (received_at); the conversation windows are measured against it. */
    private now: () => number = Date.now,
  ) {
    this.stmt = {
      upsertConversation: db.query(
        `INSERT INTO conversations (id, instance_id, chat_key, chat_json, kind, title, created_at, last_activity_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET last_activity_at = excluded.last_activity_at`,
      ),
      insert: db.query(
        `INSERT INTO inbox (id, instance_id, provider_message_id, conversation_id, kind, sender_id, sender_name, sender_phone, text, content_type, payload_json, status, received_at, completed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance_id, provider_message_id) DO NOTHING RETURNING seq`,
      ),
      step: db.query(
        'INSERT INTO trace_steps (trace_id, idx, step, status, at, duration_ms, details_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
    };
    this.work = prepareWorkStatements(db);
    this.committer = new GroupCommitter(db);
    this.recount();
  }

  // ── counts ────────────────────────────────────────────────────────────────────────────────

  /** Called after each commit with the conversations that got new work (ingest, replay). */
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
   * A row reached a terminal state: it no longer counts against the bounds. With `seq` the row is
   * one an actor was handed; without it the row may be one of the kept fresh rows, so they are
   * dropped.
   */
  private settled(conversationId: string, seq?: number): void {
    if (seq === undefined) this.dropFresh(conversationId);
    const n = (this.backlog.get(conversationId) ?? 0) - 1;
    if (n <= 0) this.backlog.delete(conversationId);
    else this.backlog.set(conversationId, n);
    this.backlogTotal = Math.max(0, this.backlogTotal - 1);
  }

  /** Rebuilds the backlog counts from the database (after rows were deleted by a cascade, e.g. an instance delete). */
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
  private reopened(conversationId: string): void {
    this.dropFresh(conversationId);
    this.backlog.set(conversationId, (this.backlog.get(conversationId) ?? 0) + 1);
    this.backlogTotal++;
  }

  // ── ingest ────────────────────────────────────────────────────────────────────────────────

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
          const now = isoNow(this.now());
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
            batch_id: null,
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

  // ── the pipeline's reads ──────────────────────────────────────────────────────────────────

  /** Conversations with unfinished rows (resumed on start), oldest work first. */
  conversationsWithWork(): Array<{ conversationId: string; instanceId: string }> {
    return this.db
      .query<{ conversationId: string; instanceId: string }, []>(
        `SELECT conversation_id AS conversationId, instance_id AS instanceId, MIN(seq) AS s FROM inbox
         WHERE status IN ('pending','processing') GROUP BY conversation_id ORDER BY s`,
      )
      .all();
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

  /** The newest unfinished row of a conversation (does a message that just arrived join the running batch?). */
  lastOpen(conversationId: string): InboxRow | null {
    return this.db
      .query<InboxRow, [string]>(
        `SELECT * FROM inbox WHERE conversation_id = ? AND status IN ('pending','processing') ORDER BY seq DESC LIMIT 1`,
      )
      .get(conversationId);
  }

  /** Every row of a batch, finished or not, in inbox order. */
  batchRows(batchId: string): InboxRow[] {
    return this.db.query<InboxRow, [string]>('SELECT * FROM inbox WHERE batch_id = ? ORDER BY seq').all(batchId);
  }

  /** Every unfinished row, in inbox order (cluster catch-up). */
  openRows(): InboxRow[] {
    return this.db
      .query<InboxRow, []>("SELECT * FROM inbox WHERE status IN ('pending','processing') ORDER BY seq")
      .all();
  }

  // ── one message's writes ──────────────────────────────────────────────────────────────────

  /** The unit of work for processing a row the actor was handed by next(). */
  begin(row: InboxRow): MessageWork {
    return new MessageWork(this.work, this.committer, row, this.handedFresh.has(row), (conv, seq) =>
      this.settled(conv, seq),
    );
  }

  // ── batches (conversation modes collect and interrupt) ─────────────────────────────────────

  /**
   * A waiting window closed: its rows become one batch, answered by one turn. In one transaction
   * every row gets the batch id and its steps (the access decision, its place in the batch). From
   * here on a restart resumes this batch as it is instead of recomputing the window. The rows given
   * are the objects the caller goes on with: they are no longer "fresh" (their traces grew).
   */
  takeBatch(batchId: string, members: Array<{ row: InboxRow; steps: BatchStep[] }>): void {
    const now = isoNow();
    this.db.transaction(() => {
      for (const { row, steps } of members) {
        this.db
          .query("UPDATE inbox SET batch_id = ? WHERE seq = ? AND status IN ('pending','processing')")
          .run(batchId, row.seq);
        let idx = this.work.nextStep.get(row.id)!.n;
        for (const s of steps)
          this.work.insertStep.run(
            row.id,
            idx++,
            s.step,
            s.status,
            now,
            null,
            s.details ? JSON.stringify(s.details) : null,
          );
      }
    })();
    for (const { row } of members) {
      row.batch_id = batchId;
      this.handedFresh.delete(row);
    }
  }

  /** An interrupted batch goes back to the waiting window (its unfinished rows lose the batch id). */
  releaseBatch(batchId: string): void {
    this.db
      .query("UPDATE inbox SET batch_id = NULL WHERE batch_id = ? AND status IN ('pending','processing')")
      .run(batchId);
  }

  /** The attempts made so far, written at once (outside any unit of work). */
  recordAttempt(seq: number, attempts: number): void {
    this.work.attempts.run(attempts, seq);
  }

  /**
   * A failure the pipeline does not handle (e.g. a database error) used the row's last attempt:
   * `failed` with a `failed_unexpectedly` step, in one transaction of its own.
   */
  failUnexpectedly(row: InboxRow, attempts: number, error: string): void {
    this.db.transaction(() => {
      this.work.attempts.run(attempts, row.seq);
      this.addStep(row.id, 'failed_unexpectedly', 'error', { error, attempts });
      writeTerminal(this.work, row.seq, 'failed', { error, channelSuccess: false, receivedAt: row.received_at });
    })();
    this.settled(row.conversation_id, row.seq);
  }

  /**
   * Cluster catch-up: another owner finished this row while this node did not own its shard, so it
   * is closed `completed` here (with a `handled_by_other_node` step) and leaves the backlog.
   */
  closeHandledElsewhere(row: InboxRow): void {
    this.db.transaction(() => {
      this.db.query("UPDATE inbox SET status = 'completed', completed_at = ? WHERE seq = ?").run(isoNow(), row.seq);
      this.addStep(row.id, 'handled_by_other_node', 'success', {
        reason: 'another owner finished this message while this node did not own its shard',
      });
    })();
    this.settled(row.conversation_id);
  }

  /** One trace step written at once, after the trace's last (API actions such as a replay; the pipeline uses begin()). */
  addStep(
    traceId: string,
    step: string,
    status: TraceStep['status'],
    details?: Record<string, unknown> | null,
    durationMs?: number | null,
  ): void {
    this.work.insertStep.run(
      traceId,
      this.work.nextStep.get(traceId)!.n,
      step,
      status,
      isoNow(),
      durationMs ?? null,
      details ? JSON.stringify(details) : null,
    );
  }

  // ── delivery receipts ─────────────────────────────────────────────────────────────────────

  /**
   * A platform's receipt for a part we sent: the outbox row keeps the furthest state (a receipt
   * that arrives late or twice changes nothing) and the message's trace gets a `delivery_<status>`
   * step, numbered apart from the steps of its unit of work (RECEIPT_STEP_BASE): the message may
   * still be in processing. Returns the trace id, or null when no part of
   * this instance was sent with that id (or the receipt adds nothing).
   */
  recordDeliveryStatus(instanceId: string, s: DeliveryStatus): { traceId: string; conversationId: string } | null {
    return this.db.transaction(() => {
      const row = this.db
        .query<
          { id: string; part: number; delivery_status: string | null; trace_id: string; conversation_id: string },
          [string, string]
        >(
          `SELECT o.id, o.part, o.delivery_status, i.id AS trace_id, i.conversation_id FROM outbox o
           JOIN inbox i ON i.seq = o.inbox_seq WHERE o.platform_message_id = ? AND i.instance_id = ? LIMIT 1`,
        )
        .get(s.platformMessageId, instanceId);
      if (!row) return null;
      if ((RECEIPT_RANK[row.delivery_status ?? ''] ?? 0) >= RECEIPT_RANK[s.status]) return null;
      const at = new Date(s.timestamp).toISOString();
      this.db
        .query('UPDATE outbox SET delivery_status = ?, delivery_status_at = ? WHERE id = ?')
        .run(s.status, at, row.id);
      this.work.insertStep.run(
        row.trace_id,
        this.work.nextReceiptStep.get(row.trace_id)!.n,
        `delivery_${s.status}`,
        s.status === 'failed' ? 'error' : 'success',
        at,
        null,
        JSON.stringify({
          platform_message_id: s.platformMessageId,
          part: row.part,
          ...(s.error ? { error_code: s.error.code, error: s.error.reason } : {}),
        }),
      );
      return { traceId: row.trace_id, conversationId: row.conversation_id };
    })();
  }

  // ── dead letters ──────────────────────────────────────────────────────────────────────────

  deadLetter(id: string): DeadLetterRecord | null {
    return this.db
      .query<DeadLetterRecord, [string]>(
        'SELECT d.*, i.id AS trace_id, i.text FROM dead_letters d JOIN inbox i ON i.seq = d.inbox_seq WHERE d.id = ?',
      )
      .get(id);
  }

  /**
   * The dead-lettered message re-enters its conversation, ahead of newer ones (inbox order); a
   * committed agent reply is kept. False when the message has not finished dead-lettering yet (it
   * may still be sending its error reply): nothing changed.
   */
  replayDeadLetter(
    d: Pick<DeadLetterRecord, 'id' | 'inbox_seq' | 'instance_id' | 'conversation_id' | 'trace_id'>,
  ): boolean {
    const reopen = (seq: number) =>
      this.db
        .query(
          "UPDATE inbox SET status = 'pending', attempts = 0, error = NULL, completed_at = NULL, duration_ms = NULL WHERE seq = ? AND status = 'dead_lettered'",
        )
        .run(seq).changes > 0;
    const reopened = this.db.transaction(() => {
      if (!reopen(d.inbox_seq)) return null;
      this.db.query('DELETE FROM dead_letters WHERE id = ?').run(d.id);
      // A batch's dead letter is its lead's: the batch is replayed whole (the fragments ended with it).
      const batchId = this.db
        .query<{ b: string | null }, [number]>('SELECT batch_id AS b FROM inbox WHERE seq = ?')
        .get(d.inbox_seq)?.b;
      const members = batchId
        ? this.batchRows(batchId).filter((r) => r.seq !== d.inbox_seq && r.status === 'dead_lettered')
        : [];
      return members.filter((r) => reopen(r.seq));
    })();
    if (!reopened) return false;
    for (const m of reopened) {
      this.addStep(m.id, 'replayed', 'success', { dead_letter_id: d.id, batch_id: m.batch_id });
      this.reopened(d.conversation_id);
    }
    this.addStep(d.trace_id, 'replayed', 'success', { dead_letter_id: d.id });
    this.reopened(d.conversation_id);
    for (const l of this.listeners) l(d.conversation_id, d.instance_id);
    return true;
  }

  /** Forgets a dead letter (its trace stays). */
  deleteDeadLetter(id: string): void {
    this.db.query('DELETE FROM dead_letters WHERE id = ?').run(id);
  }

  // ── retention ─────────────────────────────────────────────────────────────────────────────

  /** Drops terminal rows older than the retention (their steps, outbox parts and dead letters cascade). */
  prune(retentionDays: number, now = Date.now()): number {
    const cutoff = new Date(now - retentionDays * 86_400_000).toISOString();
    return this.db
      .query(`DELETE FROM inbox WHERE status NOT IN ('pending','processing') AND received_at < ?`)
      .run(cutoff).changes;
  }
}
