// One actor per conversation (instance, chat). It pulls the conversation's rows from the
// durable inbox in order (bounded prefetch) and runs ONE turn at a time through
// access → agent → send; the next starts only when the previous reached a terminal state.
// (Kept as one file over 500 lines on purpose: it is one state machine — window, turn, attempt,
// send, finish — whose steps share the turn's state; the pure window rules are in
// conversation-window.ts.)
//
// A turn answers one message (mode `sequential`, the default) or a batch (modes `collect` and
// `interrupt`): the messages that arrived while the conversation waited for quiet (debounceMs,
// capped by maxWaitMs and maxBatch) or while its previous turn ran. The waiting window is never
// kept anywhere but in the inbox rows: it is recomputed from the pending rows and their received
// times (after a restart too), and a batch, once taken, is marked on its rows (batch_id) so a
// restart resumes that batch as it is. The batch's last message (the lead) carries the agent call,
// the reply and its outbox; the others end with it, in the same transaction. In `interrupt` mode a
// message that can join the batch cancels the running agent call — until the reply is committed or
// its first part goes to the channel; after that the turn finishes and the new message waits for
// the next turn (a reply already partly on the platform is never cut off and repeated).

import type { Logger } from 'pino';
import type { InboxStore } from '../db/inbox-store.ts';
import type { MessageWork } from '../db/message-work.ts';
import { AgentError, runAgent } from '../src/agents/index.ts';
import type { AgentClient, AgentRequest, ReplyMedia } from '../src/agents/types.ts';
import { postedViaApi, viaApiAdapter } from '../src/channels/api/index.ts';
import { platformOf, requireChannel } from '../src/channels/registry.ts';
import type { ChannelAdapter } from '../src/channels/types.ts';
import type { AccessDecision, TerminalInfo } from '../src/core/conversation.ts';
import { ChannelError } from '../src/core/errors.ts';
import type { Instance } from '../src/core/instance.ts';
import type { InboundMessage, OutboundMessage } from '../src/core/message.ts';
import type { FifoSemaphore } from '../src/engine/fifo-semaphore.ts';
import type { MediaService, MediaStep, PreparedTurn } from '../src/media/index.ts';
import { crashPoint } from '../src/services/crash.ts';
import { createReplyWriter, type DeliveryContext, sendPart } from '../src/services/delivery.ts';
import type { InboxRow } from '../src/services/inbox.ts';
import { DEFAULT_MESSAGING, type MessagingOptions } from '../src/services/instance-options.ts';
import {
  answeredAlone,
  batchIdempotencyKey,
  batchIdFor,
  idempotencyKeyFor,
  isOpen,
  joinable,
  WINDOW_ROWS,
  windowOf,
} from './conversation-window.ts';
import { backoffDelay } from './runtime/backoff.ts';
import type { Clock } from './runtime/clock.ts';
import type { Actor } from './runtime/supervisor.ts';

/** Live-stream producer (src/stream/hub.ts implements it). */
export interface TurnSink {
  runStarted(s: { instanceId: string; conversationId: string; turnId: string; messageId: string }): void;
  delta(turnId: string, text: string): void;
  messageBreak(turnId: string): void;
  runFinished(turnId: string, finalText: string): void;
  runError(turnId: string, message: string): void;
  turnRestarted(turnId: string, reason: string): void;
}

export interface PipelineObserver {
  agentDone?(instance: Instance, ms: number, ttftMs: number | null, ok: boolean): void;
  sent?(instance: Instance, ms: number, ok: boolean): void;
  retried?(instance: Instance, stage: 'agent' | 'send' | 'media'): void;
  deadLettered?(instance: Instance): void;
  possibleDuplicate?(instance: Instance): void;
  terminal?(
    row: InboxRow,
    status: string,
    instance: Instance | null,
    responseText: string | null,
    info?: TerminalInfo,
  ): void;
}

export interface ConversationDeps {
  /** The inbox store: the conversation's rows, and each message's unit of work (every write goes through it). */
  inbox: InboxStore;
  clock: Clock;
  log: Logger;
  instance(id: string): Instance | null;
  adapter(instanceId: string): ChannelAdapter | null;
  agentFor(instance: Instance): AgentClient;
  access(instance: Instance, msg: InboundMessage): AccessDecision;
  sink: TurnSink;
  agentPermits: FifoSemaphore;
  observer: PipelineObserver;
  policy: {
    maxAttempts: () => number;
    retryBaseMs: number;
    retryMaxMs: number;
    prefetch: number;
    typingDelayMs: number;
  };
  /** Aborted when the gateway shuts down: no new turn starts and retry waits end at once. */
  shuttingDown?: AbortSignal;
  /** Cluster mode: false once this node lost the conversation's shard (stop acting at once). */
  stillOwner?(conversationId: string): boolean;
  /** The conversation mode an instance runs with (its own `messaging`, else the global default); sequential when absent. */
  messaging?(instance: Instance): MessagingOptions;
  /** The media store: inbound media fetched before the agent call, reply media sent after the text. */
  media?: MediaService;
}

/** Outbox part numbers of a reply's media (after the text parts; error/access replies are 10 000+). */
const REPLY_MEDIA_PART = 20_000;

export type ConversationMsg = 'wake';

/** Where a failed attempt goes next. */
class Terminal extends Error {
  constructor(
    readonly status: 'failed' | 'dead_lettered',
    message: string,
  ) {
    super(message);
  }
}

/** A URL as traces show it: no credentials or query string (they may carry tokens). */
function safeUrl(url: string | null): string | null {
  if (!url) return url;
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return null;
  }
}

/** One turn answering a batch of messages (modes collect and interrupt). */
interface BatchTurn {
  id: string;
  /** Every message of the batch in order; the last is the lead (its unit of work holds the agent call and the reply). */
  rows: InboxRow[];
  msgs: InboundMessage[];
  /** The unfinished messages other than the lead: they end with it. */
  members: InboxRow[];
  key: string;
  opts: MessagingOptions;
  /** The agent call's signal: a hand-off or an interruption aborts it. */
  signal: AbortSignal;
  controller: AbortController;
  /** Until the reply is committed or its first part goes to the channel. */
  interruptible: boolean;
  interrupted: boolean;
}

/** Why an interrupted turn stops (the agent call's abort reason, and what a send refused for it throws). */
const INTERRUPTED = new AgentError('the turn was interrupted by a newer message', false);

/** A batch's texts in order, the lead's (last) replaced by its prepared text (a transcript) when there is one. */
function batchTexts(batch: BatchTurn, turn: PreparedTurn | null): string[] {
  const texts = batch.msgs.map((m) => m.text);
  if (turn) texts[texts.length - 1] = turn.message.text;
  return texts;
}

function userIdFor(inst: Instance, m: InboundMessage): string {
  return `${platformOf(inst.channel)}:${m.sender.phone ?? m.sender.id}`;
}

export class ConversationActor implements Actor<ConversationMsg> {
  private stopped = false;
  private abort = new AbortController();
  /** Turns announced to the live stream and not yet finished (retries continue the same turn). */
  private openTurns = new Set<string>();
  /** Platform id of reply part 0 when this actor sent it (saves the events a lookup). */
  private partZero: { seq: number; id: string } | null = null;
  /**
   * The waiting window being filled: when the conversation became free for it and the options it
   * runs with (a change of the instance's mode applies from the next window). Only a cache of
   * what the rows say: lost on a restart, the window is recomputed with every waiting row in it.
   */
  private window: { openedAt: number; opts: MessagingOptions } | null = null;
  /** Ends the window's wait early (a message arrived, or the actor stops). */
  private windowWake: (() => void) | null = null;
  /** The batch turn running now. */
  private turn: BatchTurn | null = null;

  constructor(
    readonly conversationId: string,
    private deps: ConversationDeps,
  ) {}

  async receive(): Promise<void> {
    const { inbox, policy } = this.deps;
    for (;;) {
      const rows = inbox.next(this.conversationId, 0, policy.prefetch);
      if (rows.length === 0) return;
      let windowed = false;
      for (const row of rows) {
        if (this.stopped || (this.deps.stillOwner && !this.deps.stillOwner(this.conversationId))) return;
        if (this.collects(row)) {
          windowed = true;
          break;
        }
        try {
          await this.process(row);
        } catch (err) {
          // Not one of the failures process() handles (e.g. a database error): bounded like an
          // attempt, so the row ends `failed` instead of blocking its conversation forever.
          if (!this.failedUnexpectedly(row, err)) throw err; // the supervisor restarts us with backoff
        }
      }
      if (windowed) {
        if (!(await this.runWindow())) return;
        continue;
      }
      // The in-memory backlog says whether anything arrived meanwhile; skip the empty query.
      if (rows.length < policy.prefetch && inbox.conversationBacklog(this.conversationId) === 0) return;
    }
  }

  /**
   * Counts an unexpected failure against the row's attempts; true when the row is (now) terminal.
   * A batch's other messages (`members`) end with their lead.
   */
  private failedUnexpectedly(row: InboxRow, err: unknown, members: InboxRow[] = []): boolean {
    const { inbox, log } = this.deps;
    const message = (err as Error)?.message ?? String(err);
    log.error({ trace: row.id, err: message }, 'unexpected failure while processing a message');
    try {
      const current = inbox.get(row.seq);
      if (!current) return true; // deleted meanwhile (instance deleted)
      if (current.status !== 'pending' && current.status !== 'processing') return true; // it did finish
      const attempts = current.attempts + 1;
      if (attempts < this.deps.policy.maxAttempts()) {
        inbox.recordAttempt(row.seq, attempts);
        return false;
      }
      const inst = this.deps.instance(row.instance_id);
      for (const m of members) {
        inbox.failUnexpectedly(m, attempts, message);
        this.deps.observer.terminal?.(m, 'failed', inst, null);
      }
      inbox.failUnexpectedly(row, attempts, message);
      if (this.openTurns.delete(row.id)) this.deps.sink.runError(row.id, message);
      this.deps.observer.terminal?.(row, 'failed', inst, null);
      return true;
    } catch {
      return false; // the database itself is failing: let the supervisor back off and retry
    }
  }

  /** Messages that came through the API are answered on the live stream, never on the platform. */
  private adapterFor(inst: Instance, msg: InboundMessage): ChannelAdapter | null {
    return postedViaApi(msg) ? viaApiAdapter : this.deps.adapter(inst.id);
  }

  /** A retry wait; false when the gateway started shutting down (or `also` fired) meanwhile. */
  private async wait(ms: number, also?: AbortSignal): Promise<boolean> {
    // A hand-off (cancel: the shard was lost) ends every wait too: a retry that woke up after it
    // would run the turn again, and send it if this node got the shard back meanwhile.
    const signals = [this.abort.signal];
    if (this.deps.shuttingDown) signals.push(this.deps.shuttingDown);
    if (also) signals.push(also);
    const signal = AbortSignal.any(signals);
    if (signal.aborted) return false;
    try {
      await this.deps.clock.sleep(ms, signal);
      return true;
    } catch {
      return false;
    }
  }

  async stop(reason: string): Promise<void> {
    if (reason === 'passivate') crashPoint('during_passivation');
    this.stopped = true;
    this.windowWake?.(); // a window's wait ends; its rows stay pending and the window is recomputed
    if (reason === 'shutdown') return; // let the turn in flight finish (the supervisor awaits it)
  }

  /** Aborts an in-flight agent call (cluster self-fence). */
  cancel(): void {
    this.stopped = true;
    this.abort.abort(new Error('conversation handed off'));
  }

  /**
   * Rows arrived for this conversation (the engine calls this on every wake-up). A waiting window
   * is recomputed; in `interrupt` mode a message that can join the running batch cancels its
   * agent call, and the next turn answers the batch together with it.
   */
  newWork(): void {
    this.windowWake?.();
    const t = this.turn;
    if (t?.opts.mode !== 'interrupt' || !t.interruptible || t.interrupted) return;
    if (t.rows.length >= t.opts.maxBatch) return; // it could not join: the batch is full
    const lead = t.rows[t.rows.length - 1]!;
    const newest = this.deps.inbox.lastOpen(this.conversationId);
    if (!newest || newest.seq <= lead.seq || !joinable(lead, newest)) return;
    t.interrupted = true;
    t.controller.abort(INTERRUPTED);
  }

  // ── conversation modes: the waiting window and batches ───────────────────────────────────

  /** Whether a row is answered through the window (a batch) rather than on its own. */
  private collects(row: InboxRow): boolean {
    if (row.batch_id) return true; // a batch taken before (restart, replay): resumed as it is
    if (!this.deps.messaging || row.kind !== 'inbound') return false;
    if (!this.window) {
      const inst = this.deps.instance(row.instance_id);
      if (!inst || this.deps.messaging(inst).mode === 'sequential') return false;
    }
    return !answeredAlone(JSON.parse(row.payload_json) as InboundMessage);
  }

  /**
   * Waits while the window at the head of the conversation is open, then answers it as one batch.
   * False when the actor must stop (shutdown, hand-off): the rows stay pending as they are.
   */
  private async runWindow(): Promise<boolean> {
    const { inbox, clock } = this.deps;
    for (;;) {
      if (this.stopped || this.deps.shuttingDown?.aborted) return false;
      if (this.deps.stillOwner && !this.deps.stillOwner(this.conversationId)) return false;
      const rows = inbox.next(this.conversationId, 0, WINDOW_ROWS);
      const head = rows[0];
      if (head?.batch_id) {
        this.window = null;
        await this.resumeBatch(head.batch_id);
        return true;
      }
      if (!head || !this.collects(head)) {
        this.window = null; // nothing waits, or the head is answered on its own
        return true;
      }
      const inst = this.deps.instance(head.instance_id);
      if (!inst) {
        this.window = null;
        return true;
      }
      const now = clock.now();
      this.window ??= { openedAt: now, opts: { ...this.deps.messaging!(inst) } }; // a copy: changes apply next time
      const { openedAt, opts } = this.window;
      const w = windowOf(rows, openedAt, opts);
      if (!w.closed && now < w.deadline) {
        // Quiet wait: no typing indicator (the agent is not working yet).
        await this.waitWindow(w.deadline - now);
        continue;
      }
      this.window = null;
      await this.takeBatch(inst, w.members, opts);
      return true;
    }
  }

  private async waitWindow(ms: number): Promise<void> {
    const wake = new AbortController();
    this.windowWake = () => wake.abort();
    const signals = [wake.signal, this.abort.signal];
    if (this.deps.shuttingDown) signals.push(this.deps.shuttingDown);
    try {
      await this.deps.clock.sleep(ms, AbortSignal.any(signals));
    } catch {
      // woken early: the caller looks at the rows again
    } finally {
      this.windowWake = null;
    }
  }

  /**
   * The window closed: each message's access is decided in order (a refused one ends on its own,
   * as in sequential mode), the others become one batch, marked on their rows, and run.
   */
  private async takeBatch(inst: Instance, candidates: InboxRow[], opts: MessagingOptions): Promise<void> {
    const allowed: Array<{ row: InboxRow; decision: AccessDecision }> = [];
    for (const row of candidates) {
      const decision = this.deps.access(inst, JSON.parse(row.payload_json) as InboundMessage);
      if (decision.allowed) {
        allowed.push({ row, decision });
        continue;
      }
      try {
        await this.process(row, null, decision);
      } catch (err) {
        if (!this.failedUnexpectedly(row, err)) throw err;
      }
    }
    if (!allowed.length) return;
    const rows = allowed.map((a) => a.row);
    const id = batchIdFor(rows.map((r) => r.id));
    const lead = rows[rows.length - 1]!;
    this.deps.inbox.takeBatch(
      id,
      allowed.map(({ row, decision }, i) => ({
        row,
        steps: [
          {
            step: 'access_control_checked',
            status: 'success',
            details: { user_allowed: true, reason: decision.reason, rule_id: decision.ruleId ?? null },
          },
          {
            step: 'batched',
            status: 'success',
            details: { batch_id: id, mode: opts.mode, position: i + 1, size: rows.length, answered_by: lead.id },
          },
        ],
      })),
    );
    await this.runBatch(inst, id, rows, opts);
  }

  /** A batch taken before (a restart, a replay): answered as it is, with the messages it had. */
  private async resumeBatch(batchId: string): Promise<void> {
    const rows = this.deps.inbox.batchRows(batchId);
    const lead = rows[rows.length - 1];
    const inst = lead ? this.deps.instance(lead.instance_id) : null;
    if (!lead || !isOpen(lead) || !inst) {
      // Its lead ended (or the instance is gone): whatever is left is answered afresh.
      this.deps.inbox.releaseBatch(batchId);
      return;
    }
    await this.runBatch(inst, batchId, rows, this.deps.messaging?.(inst) ?? DEFAULT_MESSAGING);
  }

  private async runBatch(inst: Instance, id: string, rows: InboxRow[], opts: MessagingOptions): Promise<void> {
    const lead = rows[rows.length - 1]!;
    const controller = new AbortController();
    const turn: BatchTurn = {
      id,
      rows,
      msgs: rows.map((r) => JSON.parse(r.payload_json) as InboundMessage),
      members: rows.filter((r) => r !== lead && isOpen(r)),
      key: batchIdempotencyKey(
        inst.id,
        rows.map((r) => r.provider_message_id),
      ),
      opts,
      controller,
      signal: AbortSignal.any([this.abort.signal, controller.signal]),
      interruptible: lead.response_text === null,
      interrupted: false,
    };
    this.turn = turn;
    try {
      await this.process(lead, turn);
    } catch (err) {
      if (!this.failedUnexpectedly(lead, err, turn.members)) throw err;
    } finally {
      this.turn = null;
    }
  }

  /** An interrupted batch: the cancelled attempt is recorded and the batch goes back to the window. */
  private async interrupted(turn: BatchTurn, trace: MessageWork, stage: 'agent call' | 'retry wait'): Promise<void> {
    trace.step('agent_cancelled', 'skipped', {
      batch_id: turn.id,
      reason: 'a newer message arrived (interrupt mode); the next turn answers this batch together with it',
      during: stage,
    });
    await trace.commit();
    this.deps.inbox.releaseBatch(turn.id);
    const turnId = trace.traceId;
    if (this.openTurns.delete(turnId))
      this.deps.sink.runError(turnId, 'interrupted by a newer message; the next turn answers both');
  }

  /**
   * One turn: a message on its own, or (`batch`) the lead of a batch, whose access was decided when
   * the batch was taken. `decided`: the access decision made already (a message refused while its
   * window was taken).
   */
  private async process(row: InboxRow, batch: BatchTurn | null = null, decided?: AccessDecision): Promise<void> {
    const { log } = this.deps;
    const inst = this.deps.instance(row.instance_id);
    const msg = JSON.parse(row.payload_json) as InboundMessage;
    const trace = this.deps.inbox.begin(row);
    if (!inst) {
      await this.finish(row, trace, 'failed', null, { error: 'instance no longer exists' }, null, batch);
      return;
    }

    // API sends (POST /api/v2/messages) skip access and agent: they only need ordered delivery.
    if (row.kind === 'send') return this.deliverSend(row, trace, inst, msg);
    // Kept for the record only (e.g. an edited message): no keyword, pause or agent side effects.
    if (msg.recordOnly) {
      trace.step('recorded_only', 'success', { reason: msg.recordOnly });
      await this.finish(row, trace, 'completed', inst, {});
      return;
    }

    // Media first (fetched by the gateway, stored, transcribed): access rules and the agent see the
    // result. Not again once the agent's reply is committed. In a batch, the lead's media (the
    // batch's access was decided when it was taken).
    let turn: PreparedTurn | null = null;
    if (row.response_text === null && msg.media?.length && this.deps.media) {
      turn = await this.prepareMedia(row, trace, inst, msg, this.deps.media);
      if (!turn) return; // shutting down or handed off: the row stays pending and resumes
      // The recorded events carry the transcript as the message's text (search finds it).
      if (turn.transcribed) row.text = turn.message.text;
      crashPoint('after_media_before_agent');
    }

    if (row.response_text === null && !batch) {
      const decision = decided ?? this.deps.access(inst, turn?.message ?? msg);
      trace.step('access_control_checked', decision.allowed ? 'success' : 'error', {
        user_allowed: decision.allowed,
        reason: decision.reason,
        rule_id: decision.ruleId ?? null,
      });
      if (!decision.allowed) {
        if (decision.reply) await this.trySend(row, trace, inst, msg, 'access_reply', decision.reply);
        await this.finish(row, trace, 'blocked', inst, { error: decision.reason });
        return;
      }
    }

    let attempts = row.attempts;
    let responseText = row.response_text;
    const max = this.deps.policy.maxAttempts();
    for (;;) {
      try {
        responseText = await this.attempt(row, trace, inst, msg, responseText, batch, turn);
        await this.finish(row, trace, 'completed', inst, { channelSuccess: true }, responseText, batch);
        return;
      } catch (err) {
        if (batch?.interrupted && responseText === null) return this.interrupted(batch, trace, 'agent call');
        if (this.stopped && this.abort.signal.aborted) {
          await trace.commit(); // handed off: keep what happened; the new owner resumes
          // End the live turn here: the new owner starts its own, and subscribers must not wait on this one.
          if (this.openTurns.delete(row.id))
            this.deps.sink.runError(row.id, 'the conversation moved to another node; the reply continues there');
          return;
        }
        attempts++;
        trace.recordAttempt(attempts);
        const retryable =
          err instanceof AgentError || err instanceof ChannelError ? err.retryable : !(err instanceof Terminal);
        const stage = responseText === null ? 'agent' : 'send';
        const message = (err as Error).message ?? String(err);
        log.warn({ trace: row.id, attempt: attempts, stage, err: message }, 'message attempt failed');
        if (retryable && attempts < max) {
          this.deps.observer.retried?.(inst, stage);
          const hinted = err instanceof ChannelError ? err.retryAfterMs : undefined;
          const delay = Math.max(
            hinted ?? 0,
            backoffDelay(attempts - 1, { baseMs: this.deps.policy.retryBaseMs, maxMs: this.deps.policy.retryMaxMs }),
          );
          trace.step('retry_scheduled', 'error', {
            attempt: attempts,
            stage,
            error: message,
            delay_ms: Math.round(delay),
          });
          await trace.commit();
          if (this.openTurns.has(row.id))
            this.deps.sink.turnRestarted(row.id, `attempt ${attempts} failed: ${message}`);
          if (!(await this.wait(delay, batch?.signal))) {
            if (batch?.interrupted) return this.interrupted(batch, trace, 'retry wait');
            return; // shutting down: the row stays pending and resumes on start
          }
          if (responseText === null) responseText = this.deps.inbox.get(row.seq)?.response_text ?? null;
          continue;
        }
        if (this.openTurns.delete(row.id)) this.deps.sink.runError(row.id, message);
        await this.deadLetter(row, trace, inst, msg, message, attempts, retryable, batch);
        return;
      }
    }
  }

  /**
   * One attempt: the agent (unless its reply is already committed), then delivery. For a batch the
   * agent gets every message (joined text, and the list) and the reply quotes the last one.
   */
  private async attempt(
    row: InboxRow,
    trace: MessageWork,
    inst: Instance,
    msg: InboundMessage,
    committed: string | null,
    batch: BatchTurn | null = null,
    turn: PreparedTurn | null = null,
  ): Promise<string> {
    const { sink, clock } = this.deps;
    const adapter = this.adapterFor(inst, msg);
    if (!adapter) throw new ChannelError(`instance '${inst.name}' is not running (inactive or still starting)`, true);
    const ctx = this.deliveryContext(row, trace, inst, msg, adapter, batch);
    const writer = createReplyWriter(ctx);
    const turnId = `${row.id}`;
    let text = committed;
    let storedReplyMedia = false;
    if (text === null) {
      const req: AgentRequest = {
        userId: userIdFor(inst, msg),
        sessionId: this.conversationId,
        // A batch joins its messages' texts; the lead's is its transcript when it had a voice note.
        message: batch ? batchTexts(batch, turn).join('\n') : (turn?.message.text ?? msg.text),
        context: {
          channel: platformOf(inst.channel),
          instance: inst.name,
          source: requireChannel(inst.channel).agentSource ?? inst.channel,
        },
        sessionOrigin: platformOf(inst.channel),
        idempotencyKey: batch ? batch.key : idempotencyKeyFor(inst.id, row.provider_message_id),
        messageId: row.id,
        senderName: msg.sender.name,
        ...(turn?.media.length ? { media: turn.media } : {}),
        ...(turn?.transcribed ? { transcribed: true } : {}),
      };
      if (batch)
        req.messages = batch.rows.map((r, i) => ({ id: r.id, text: batchTexts(batch, turn)[i]!, time: r.received_at }));
      // One live turn per message across retries: a retry is announced with turnRestarted.
      if (!this.openTurns.has(turnId)) {
        this.openTurns.add(turnId);
        sink.runStarted({ instanceId: inst.id, conversationId: this.conversationId, turnId, messageId: row.id });
      }
      const release = await this.deps.agentPermits.acquire();
      const started = clock.monotonic();
      let firstDeltaAt: number | null = null;
      let sofar = '';
      let pending: Promise<void> = Promise.resolve();
      let deliveryError: unknown = null;
      let replyMedia: ReplyMedia[] = [];
      const typing = this.typingIndicator(adapter, ctx, msg);
      try {
        crashPoint('agent_before_first_delta');
        text = await runAgent(this.deps.agentFor(inst), req, batch ? batch.signal : this.abort.signal, (ev) => {
          if (ev.type === 'delta') {
            if (firstDeltaAt === null) firstDeltaAt = clock.monotonic();
            else crashPoint('agent_mid_stream');
            sofar += ev.text;
            sink.delta(turnId, ev.text);
            const snapshot = sofar;
            // Progressive delivery runs behind the stream; its first failure is kept (never left
            // as an unhandled rejection) and fails the attempt once the agent call returns.
            pending = pending
              .then(() => (deliveryError === null && !batch?.interrupted ? writer.onText(snapshot) : undefined))
              .catch((err) => {
                deliveryError ??= err;
              });
          } else if (ev.type === 'message_break') {
            sofar += '\n\n';
            sink.messageBreak(turnId);
          } else if (ev.type === 'final' && ev.media) replyMedia = ev.media;
        });
        if (batch) {
          // Interrupted between the agent's last event and here: the reply is dropped, as if cut.
          if (batch.interrupted) throw INTERRUPTED;
          batch.interruptible = false;
        }
        await pending;
        const ms = clock.monotonic() - started;
        this.deps.observer.agentDone?.(inst, ms, firstDeltaAt === null ? null : firstDeltaAt - started, true);
        // Commit the agent run (with the steps so far): from here on a retry or a restart never calls the agent again.
        const reply = text;
        trace.step(
          'agent_called',
          'success',
          {
            agent_url: safeUrl(inst.agent.url),
            response_preview: reply.slice(0, 120),
            // Stored so the overview's time-to-first-token survives a restart (null: nothing streamed).
            first_token_ms: firstDeltaAt === null ? null : Math.round(firstDeltaAt - started),
          },
          Math.round(ms),
        );
        // The reply's media is fetched and stored before the reply commits: a retry sends it from the store.
        if (replyMedia.length && this.deps.media) {
          await this.deps.media.storeReply(inst, row.id, replyMedia, this.stepOf(trace), this.abort.signal);
          storedReplyMedia = true;
        }
        await trace.commitReply(reply);
        this.openTurns.delete(turnId);
        sink.runFinished(turnId, reply);
      } catch (err) {
        await pending.catch(() => {});
        if (batch?.interrupted) throw err; // a cancelled attempt: process() records it
        const ms = clock.monotonic() - started;
        this.deps.observer.agentDone?.(inst, ms, null, false);
        trace.step(
          'agent_called',
          'error',
          { agent_url: safeUrl(inst.agent.url), error: (err as Error).message },
          Math.round(ms),
        );
        throw err;
      } finally {
        release();
        typing.stop();
      }
      crashPoint('after_agent_before_send');
      // The agent run is committed; a progressive send that failed is retried as a send.
      if (deliveryError !== null) throw deliveryError;
    }
    // Media of the reply this attempt produced, or (retry, restart) one committed earlier; a fresh
    // text-only reply costs no lookup.
    const media =
      this.deps.media && (committed !== null || storedReplyMedia) ? await this.deps.media.replyMedia(row.id) : [];
    if (!text.trim() && media.length === 0) throw new Terminal('failed', 'agent returned an empty reply');
    const sendStart = clock.monotonic();
    const sentStep = requireChannel(inst.channel).traceSteps.sent;
    try {
      // The reply's last part tells the channel nothing follows (cluster: its hand-off entry goes then).
      let parts = text.trim() ? await writer.finish(text, media.length > 0) : 0;
      parts += await this.sendReplyMedia(ctx, trace, adapter, media);
      this.deps.observer.sent?.(inst, clock.monotonic() - sendStart, true);
      trace.step(sentStep, 'success', { message_sent: true, parts }, Math.round(clock.monotonic() - sendStart));
    } catch (err) {
      this.deps.observer.sent?.(inst, clock.monotonic() - sendStart, false);
      trace.step(sentStep, 'error', { message_sent: false, error: (err as Error).message });
      throw err;
    }
    return text;
  }

  /** Fetches, stores and transcribes the message's media; retries a failed download with backoff. */
  private async prepareMedia(
    row: InboxRow,
    trace: MessageWork,
    inst: Instance,
    msg: InboundMessage,
    media: MediaService,
  ): Promise<PreparedTurn | null> {
    const max = this.deps.policy.maxAttempts();
    for (let tries = 1; ; tries++) {
      const turn = await media.prepare(inst, row.id, msg, {
        adapter: this.adapterFor(inst, msg),
        step: this.stepOf(trace),
        lastTry: tries >= max,
        signal: this.abort.signal,
      });
      if (this.stopped && this.abort.signal.aborted) {
        await trace.commit();
        return null;
      }
      await trace.commit();
      if (turn.retry === undefined) return turn;
      this.deps.observer.retried?.(inst, 'media');
      const delay = backoffDelay(tries - 1, {
        baseMs: this.deps.policy.retryBaseMs,
        maxMs: this.deps.policy.retryMaxMs,
      });
      trace.step('retry_scheduled', 'error', {
        attempt: tries,
        stage: 'media',
        error: turn.retry,
        delay_ms: Math.round(delay),
      });
      await trace.commit();
      if (!(await this.wait(delay))) return null;
    }
  }

  private stepOf(trace: MessageWork): MediaStep {
    return (name, status, details, ms) => trace.step(name, status, details, ms);
  }

  /** Each media item of the reply as its own outbox part, in the channel's native way; returns the parts sent. */
  private async sendReplyMedia(
    ctx: DeliveryContext,
    trace: MessageWork,
    adapter: ChannelAdapter,
    media: Array<NonNullable<OutboundMessage['media']>>,
  ): Promise<number> {
    let sent = 0;
    for (let i = 0; i < media.length; i++) {
      const m = media[i]!;
      if (!adapter.capabilities.media.includes(m.mediaType)) {
        trace.step('reply_media_skipped', 'error', { index: i, reason: `the channel does not send ${m.mediaType}` });
        continue;
      }
      // No text of its own: the caption travels in the media (each adapter puts it where its platform does).
      await sendPart(ctx, REPLY_MEDIA_PART + i, '', undefined, { media: m }, i === media.length - 1);
      sent++;
    }
    return sent;
  }

  /**
   * "Typing…" while the agent works, shown only when the agent takes longer than the delay: an
   * instant reply needs no indicator (and saves the channel two calls).
   */
  private typingIndicator(adapter: ChannelAdapter, ctx: DeliveryContext, msg: InboundMessage): { stop(): void } {
    if (!adapter.capabilities.typing || !adapter.typing) return { stop() {} };
    const typing = adapter.typing.bind(adapter);
    let shown = false;
    const show = () => {
      shown = true;
      void typing(ctx.chat, true, msg).catch(() => {});
    };
    const delay = this.deps.policy.typingDelayMs;
    const timer = delay > 0 ? this.deps.clock.setTimeout(show, delay) : (show(), null);
    return {
      stop() {
        timer?.cancel();
        if (shown) void typing(ctx.chat, false, msg).catch(() => {});
      },
    };
  }

  private deliveryContext(
    row: InboxRow,
    trace: MessageWork,
    inst: Instance,
    msg: InboundMessage,
    adapter: ChannelAdapter,
    batch: BatchTurn | null = null,
  ): DeliveryContext {
    return {
      clock: this.deps.clock,
      adapter,
      instance: inst,
      chat: msg.chat,
      inbound: msg,
      idempotencyKey: batch ? batch.key : idempotencyKeyFor(inst.id, row.provider_message_id),
      work: trace,
      // From the first part on the platform, a batch is no longer interrupted (see the top of the file).
      onSending: batch
        ? () => {
            if (batch.interrupted) throw INTERRUPTED;
            batch.interruptible = false;
          }
        : undefined,
      onSent: (part, platformMessageId) => {
        if (part === 0) this.partZero = { seq: row.seq, id: platformMessageId };
      },
      onPossibleDuplicate: () => {
        trace.markPossibleDuplicate();
        trace.step('possible_duplicate_send', 'error', { reason: 'resent a part whose earlier send was interrupted' });
        this.deps.observer.possibleDuplicate?.(inst);
      },
    };
  }

  /** Best-effort extra message (error reply, access reply) through its own outbox part. */
  private async trySend(
    row: InboxRow,
    trace: MessageWork,
    inst: Instance,
    msg: InboundMessage,
    label: string,
    text: string,
  ): Promise<void> {
    const adapter = this.adapterFor(inst, msg);
    if (!adapter) return;
    try {
      await sendPart(
        this.deliveryContext(row, trace, inst, msg, adapter, this.turn?.rows.at(-1) === row ? this.turn : null),
        label === 'error_reply' ? 10_000 : 10_001,
        text,
      );
      trace.step(label, 'success', { text_preview: text.slice(0, 120) });
    } catch (err) {
      trace.step(label, 'error', { error: (err as Error).message });
    }
  }

  private async deliverSend(row: InboxRow, trace: MessageWork, inst: Instance, msg: InboundMessage): Promise<void> {
    let attempts = row.attempts;
    for (;;) {
      try {
        // Looked up on every attempt: a restarted instance has a new adapter, and one still
        // (re)connecting is a reason to retry, as for agent replies.
        const adapter = this.deps.adapter(inst.id);
        if (!adapter)
          throw new ChannelError(`instance '${inst.name}' is not running (inactive or still starting)`, true);
        const out = (msg.extra?.outbound ?? { text: msg.text }) as OutboundMessage;
        // No inbound message here: adapters must not quote or thread under the API request itself.
        const ctx = { ...this.deliveryContext(row, trace, inst, msg, adapter), inbound: undefined };
        // One part, the whole send: the last (cluster: the hand-off entry goes as soon as it is accepted).
        await sendPart(
          ctx,
          0,
          out.text ?? '',
          out.replyTo ?? msg.replyToMessageId,
          { media: out.media, reaction: out.reaction, template: out.template },
          true,
        );
        trace.step('channel_sent', 'success', { message_sent: true });
        await this.finish(row, trace, 'completed', inst, { channelSuccess: true }, null);
        return;
      } catch (err) {
        attempts++;
        const retryable = err instanceof ChannelError ? err.retryable : true;
        trace.recordAttempt(attempts);
        if (retryable && attempts < this.deps.policy.maxAttempts()) {
          await trace.commit();
          if (
            !(await this.wait(
              backoffDelay(attempts - 1, { baseMs: this.deps.policy.retryBaseMs, maxMs: this.deps.policy.retryMaxMs }),
            ))
          )
            return;
          continue;
        }
        trace.step('channel_sent', 'error', { message_sent: false, error: (err as Error).message });
        await this.finish(row, trace, 'failed', inst, { error: (err as Error).message, channelSuccess: false });
        return;
      }
    }
  }

  private async deadLetter(
    row: InboxRow,
    trace: MessageWork,
    inst: Instance,
    msg: InboundMessage,
    reason: string,
    attempts: number,
    retryable: boolean,
    batch: BatchTurn | null = null,
  ): Promise<void> {
    trace.deadLetter({ instanceId: inst.id, reason, attempts });
    trace.step('dead_lettered', 'error', { reason, attempts, retryable, ...(batch ? { batch_id: batch.id } : {}) });
    this.deps.observer.deadLettered?.(inst);
    if (inst.settings.errorReply) await this.trySend(row, trace, inst, msg, 'error_reply', inst.settings.errorReply);
    await this.finish(row, trace, 'dead_lettered', inst, { error: reason, channelSuccess: false }, null, batch);
  }

  /**
   * The terminal state, in one transaction with everything still queued for this message (and, for
   * a batch's lead, with the batch's other messages, which end in the same state without a reply).
   */
  private async finish(
    row: InboxRow,
    trace: MessageWork,
    status: 'completed' | 'failed' | 'blocked' | 'dead_lettered',
    inst: Instance | null,
    f: { error?: string; channelSuccess?: boolean },
    responseText: string | null = null,
    batch: BatchTurn | null = null,
  ): Promise<void> {
    const members = batch?.members ?? [];
    await trace.finish(
      status,
      { error: f.error ?? null, channelSuccess: f.channelSuccess ?? null },
      members.length ? { id: batch!.id, members } : undefined,
    );
    const info: TerminalInfo = {
      firstTerminal: trace.fresh,
      firstPartId: this.partZero?.seq === row.seq ? this.partZero.id : undefined,
    };
    this.partZero = null;
    for (const m of members) this.deps.observer.terminal?.(m, status, inst, null, { firstTerminal: false });
    this.deps.observer.terminal?.(row, status, inst, responseText, info);
  }
}
