// The unit of work of one message being processed (created by the inbox store, db/inbox-store.ts).
// Trace steps and row changes are queued and written together with the stage's own change (agent
// reply, outbox `sending`, terminal state) in the next group commit, so a message costs a few
// transactions instead of one per step.
import type { Database } from 'bun:sqlite';
import { isoNow, newId } from '../src/services/ids.ts';
import type { InboxStatus } from '../src/services/inbox.ts';
import type { TraceStep } from '../src/services/traces.ts';
import type { GroupCommitter } from './group-commit.ts';

/** One numbered part of a reply in the outbox. */
export interface OutboxPart {
  id: string;
  part: number;
  text: string;
  status: 'pending' | 'sending' | 'sent' | 'failed';
  platform_message_id: string | null;
}

/**
 * Trace steps of delivery receipts (which may arrive while the message is still being processed)
 * are numbered from here, so they never take a number its unit of work is about to use.
 */
export const RECEIPT_STEP_BASE = 1_000_000;

/** The statements a message's writes use, prepared once per store (db.query would look each up by its SQL text). */
export function prepareWorkStatements(db: Database) {
  return {
    insertStep: db.query<unknown, [string, number, string, string, string, number | null, string | null]>(
      'INSERT INTO trace_steps (trace_id, idx, step, status, at, duration_ms, details_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    // Below RECEIPT_STEP_BASE: the steps numbered from there up are delivery receipts (inbox-store.ts).
    nextStep: db.query<{ n: number }, [string]>(
      `SELECT COALESCE(MAX(idx), -1) + 1 AS n FROM trace_steps WHERE trace_id = ? AND idx < ${RECEIPT_STEP_BASE}`,
    ),
    nextReceiptStep: db.query<{ n: number }, [string]>(
      `SELECT COALESCE(MAX(idx) + 1, ${RECEIPT_STEP_BASE}) AS n FROM trace_steps WHERE trace_id = ? AND idx >= ${RECEIPT_STEP_BASE}`,
    ),
    attempts: db.query<unknown, [number, number]>('UPDATE inbox SET attempts = ? WHERE seq = ?'),
    response: db.query<unknown, [string, number]>('UPDATE inbox SET response_text = ? WHERE seq = ?'),
    possibleDuplicate: db.query<unknown, [number]>(
      'UPDATE inbox SET possible_duplicate = possible_duplicate + 1 WHERE seq = ?',
    ),
    finish: db.query<unknown, [string, string | null, number | null, string, number, number]>(
      'UPDATE inbox SET status = ?, error = COALESCE(?, error), channel_success = COALESCE(?, channel_success), completed_at = ?, duration_ms = ? WHERE seq = ?',
    ),
    deadLetter: db.query<unknown, [string, number, string, string, string, number, string]>(
      'INSERT OR REPLACE INTO dead_letters (id, inbox_seq, instance_id, conversation_id, reason, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    outboxPart: db.query<OutboxPart, [number, number]>(
      'SELECT id, part, text, status, platform_message_id FROM outbox WHERE inbox_seq = ? AND part = ?',
    ),
    outboxResend: db.query<unknown, [string, string]>(
      "UPDATE outbox SET status = 'sending', text = ?, attempts = attempts + 1 WHERE id = ?",
    ),
    outboxInsert: db.query<unknown, [string, number, number, string, string]>(
      "INSERT INTO outbox (id, inbox_seq, part, text, status, attempts, created_at) VALUES (?, ?, ?, ?, 'sending', 1, ?)",
    ),
    outboxSent: db.query<unknown, [string, string, number, number]>(
      "UPDATE outbox SET status = 'sent', platform_message_id = ?, sent_at = ? WHERE inbox_seq = ? AND part = ?",
    ),
    outboxText: db.query<unknown, [string, number, number]>(
      'UPDATE outbox SET text = ? WHERE inbox_seq = ? AND part = ?',
    ),
    sentParts: db.query<{ part: number; text: string; platform_message_id: string }, [number]>(
      "SELECT part, text, platform_message_id FROM outbox WHERE inbox_seq = ? AND status = 'sent' ORDER BY part",
    ),
  };
}

export type WorkStatements = ReturnType<typeof prepareWorkStatements>;

/** Writes a terminal state (shared with the store's own one-transaction closes). */
export function writeTerminal(
  s: WorkStatements,
  seq: number,
  status: InboxStatus,
  f: { error?: string | null; channelSuccess?: boolean | null; receivedAt: string },
): void {
  const now = Date.now();
  s.finish.run(
    status,
    f.error ?? null,
    f.channelSuccess == null ? null : f.channelSuccess ? 1 : 0,
    isoNow(now),
    Math.max(0, now - Date.parse(f.receivedAt)),
    seq,
  );
}

/** The row a unit of work is about (the fields it needs of an inbox row). */
export interface WorkRow {
  seq: number;
  id: string;
  conversation_id: string;
  received_at: string;
}

export class MessageWork {
  private ops: Array<() => void> = [];
  private nextIdx: number;
  /**
   * For a row fresh from this process's ingest: the outbox parts this processing has written. Any
   * other part has no outbox row, so its lookup is skipped.
   */
  private partsWritten: Set<number> | undefined;

  /**
   * `fresh`: the row came from this process's ingest and was never handed out before (its trace
   * has exactly steps 0..1 and it was never terminal). `settle` updates the store's counters once
   * the row is terminal.
   */
  constructor(
    private s: WorkStatements,
    private committer: GroupCommitter,
    readonly row: WorkRow,
    readonly fresh: boolean,
    private settle: (conversationId: string, seq: number) => void,
  ) {
    this.nextIdx = fresh ? 2 : s.nextStep.get(row.id)!.n;
    if (fresh) this.partsWritten = new Set();
  }

  get traceId(): string {
    return this.row.id;
  }

  /** Appends a trace step (written with the next commit). */
  step(
    step: string,
    status: TraceStep['status'],
    details?: Record<string, unknown> | null,
    durationMs?: number | null,
  ): void {
    const idx = this.nextIdx++;
    const at = isoNow();
    this.ops.push(() =>
      this.s.insertStep.run(
        this.row.id,
        idx,
        step,
        status,
        at,
        durationMs ?? null,
        details ? JSON.stringify(details) : null,
      ),
    );
  }

  /** The attempts made so far (written with the next commit). */
  recordAttempt(attempts: number): void {
    this.ops.push(() => this.s.attempts.run(attempts, this.row.seq));
  }

  /** A part was resent after an interrupted send (written with the next commit). */
  markPossibleDuplicate(): void {
    this.ops.push(() => this.s.possibleDuplicate.run(this.row.seq));
  }

  /** The message failed every attempt (written with the next commit; the terminal state follows). */
  deadLetter(d: { instanceId: string; reason: string; attempts: number }): void {
    this.ops.push(() =>
      this.s.deadLetter.run(
        newId(),
        this.row.seq,
        d.instanceId,
        this.row.conversation_id,
        d.reason,
        d.attempts,
        isoNow(),
      ),
    );
  }

  /** Commits the queued writes in the next group commit; resolves once durable. */
  commit(): Promise<void> {
    return this.commitWith();
  }

  /** Commits the agent's reply with the queued writes: from here on a retry or restart never calls the agent again. */
  commitReply(text: string): Promise<void> {
    return this.commitWith(() => this.s.response.run(text, this.row.seq));
  }

  /**
   * The terminal state, in one transaction with everything still queued; then the row leaves the
   * backlog. For a batch's lead, the other fragments of the batch end in the same transaction with
   * the same state and an `answered_in_batch` step naming the lead (whose trace has the agent call
   * and the reply).
   */
  async finish(
    status: 'completed' | 'failed' | 'blocked' | 'dead_lettered',
    f: { error?: string | null; channelSuccess?: boolean | null },
    batch?: { id: string; members: WorkRow[] },
  ): Promise<void> {
    const members = batch?.members ?? [];
    await this.commitWith(() => {
      writeTerminal(this.s, this.row.seq, status, { ...f, receivedAt: this.row.received_at });
      const at = isoNow();
      for (const m of members) {
        this.s.insertStep.run(
          m.id,
          this.s.nextStep.get(m.id)!.n,
          'answered_in_batch',
          status === 'completed' ? 'success' : 'error',
          at,
          null,
          JSON.stringify({ batch_id: batch!.id, answered_by: this.row.id, status }),
        );
        writeTerminal(this.s, m.seq, status, { ...f, receivedAt: m.received_at });
      }
    });
    this.settle(this.row.conversation_id, this.row.seq);
    for (const m of members) this.settle(m.conversation_id, m.seq);
  }

  /** A reply part's outbox row, or null when it has none. */
  outboxPart(part: number): OutboxPart | null {
    if (this.partsWritten && !this.partsWritten.has(part)) return null;
    return this.s.outboxPart.get(this.row.seq, part);
  }

  /** Marks a part `sending` (with the queued writes) before the channel call; resolves once durable. */
  commitSending(part: number, text: string, existing: OutboxPart | null): Promise<void> {
    this.partsWritten?.add(part);
    return this.commitWith(() => {
      if (existing) this.s.outboxResend.run(text, existing.id);
      else this.s.outboxInsert.run(newId(), this.row.seq, part, text, isoNow());
    });
  }

  /** The channel accepted the part (written with the next commit). */
  markSent(part: number, platformMessageId: string): void {
    const sentAt = isoNow();
    this.ops.push(() => this.s.outboxSent.run(platformMessageId, sentAt, this.row.seq, part));
  }

  /** A sent part was edited in place (written with the next commit). */
  setPartText(part: number, text: string): void {
    this.ops.push(() => this.s.outboxText.run(text, this.row.seq, part));
  }

  /** The parts already sent, in order. */
  sentParts(): Array<{ part: number; text: string; platformMessageId: string }> {
    return this.s.sentParts
      .all(this.row.seq)
      .map((r) => ({ part: r.part, text: r.text, platformMessageId: r.platform_message_id }));
  }

  private commitWith(also?: () => void): Promise<void> {
    const ops = this.ops;
    this.ops = [];
    if (ops.length === 0 && !also) return Promise.resolve();
    return this.committer.commit(() => {
      for (const op of ops) op();
      also?.();
    });
  }
}
