// StreamHub: fans partial agent replies and gateway events out to WebSocket subscribers.
//
// Transport-agnostic (no Elysia): a subscriber is anything with send/close. Frames follow the v2
// envelope `{"type":"event","channel":...,"payload":...}`; turn payloads are AG-UI named events
// carrying `conversationId`, `turnId` and a gap-free per-turn `seq`.
//
// Slow clients: when `send` reports backpressure (-1) or a drop (0) the subscriber is marked
// lagging and gets no more turn frames; on drain it receives one `resync` snapshot per turn it
// missed. Nothing is queued per client — the only per-turn memory is the reply so far, kept while
// the turn runs. A finished turn is kept only if a lagging subscriber missed part of it, until that
// client's resync, for at most `turnGraceMs`, and at most `maxFinishedTurns` of them (oldest go
// first): a client lagging longer than that gets no resync for the turn and must read history.
// Without lagging clients a finished turn costs nothing (a busy gateway finishes thousands of
// turns per second; holding each for the grace period was most of the process's memory).
// Kept whole: one concern (fan-out with per-subscriber buffers, coalescing, resync) over one
// shared state (subscribers and running turns).

import { type Clock, realClock, type Timer } from '../../actors/runtime/clock.ts';

export type StreamChannel = 'events' | 'instances' | 'conversations';
export const STREAM_CHANNELS: readonly StreamChannel[] = ['events', 'instances', 'conversations'];

/** What the hub needs from a socket. Bun's ServerWebSocket fits directly. */
export interface StreamSocket {
  /** Bun semantics: >0 bytes sent, -1 enqueued but backpressured, 0 dropped. */
  send(data: string): number;
  close(code?: number, reason?: string): void;
  getBufferedAmount?(): number;
  /** Protocol-level ping; optional (tests and non-Bun transports may omit it). */
  ping?(): unknown;
}

/** Who is connected: `instanceIds: null` = unrestricted key; otherwise only these instances. */
export interface StreamPrincipal {
  instanceIds: string[] | null;
}

export interface StreamFilters {
  instanceId?: string;
  conversationId?: string;
}

export interface TurnStart {
  instanceId: string;
  conversationId: string;
  turnId: string;
  messageId: string;
}

export type TurnStatus = 'running' | 'finished' | 'error';

export interface TurnSnapshot {
  instanceId: string;
  conversationId: string;
  turnId: string;
  messageId: string;
  /** Last seq whose content is included in `text`; frames with a higher seq follow. */
  seq: number;
  /** The reply so far (several text messages in one turn are joined with a blank line). */
  text: string;
  status: TurnStatus;
  error?: string;
}

export interface SubscriberHandle {
  /** A client message: a raw string, or an already-parsed value (Elysia parses JSON itself). */
  onMessage(message: unknown): void;
  /** The socket can take more data again. */
  onDrain(): void;
  /** A protocol-level pong (or any sign of life) arrived. */
  onPong(): void;
  detach(): void;
}

export interface StreamHubOptions {
  clock?: Clock;
  /** Deltas arriving within this window become one TEXT_MESSAGE_CONTENT frame. 0 = no coalescing. */
  coalesceMs?: number;
  /** Flush early once this many characters are pending, so one frame never grows unbounded. */
  maxFrameChars?: number;
  /** How long a finished turn's snapshot is kept for lagging clients' resync. */
  turnGraceMs?: number;
  /** At most this many finished turns are kept for lagging clients (the oldest are dropped first). */
  maxFinishedTurns?: number;
  /** Ping interval; 0 disables the hub's keepalive sweep. */
  keepaliveMs?: number;
  /** Close sockets with no message/pong for this long. */
  idleTimeoutMs?: number;
}

export interface StreamHubStats {
  clients: number;
  lagging: number;
  resyncsTotal: number;
  framesSent: number;
  framesDropped: number;
  /** Turns whose snapshot is held (running, or finished and awaited by a lagging client). */
  turnsHeld: number;
  /** Of those, finished turns kept for lagging clients' resync. */
  finishedTurnsHeld: number;
  /** Characters of reply text held across all snapshots — the hub's only per-turn buffer. */
  snapshotChars: number;
}

export const WS_CLOSE_UNAUTHORIZED = 4401;
export const WS_CLOSE_IDLE = 4408;

interface TurnState extends TurnStart {
  seq: number;
  /** Committed text: everything already sent up to `seq`. */
  text: string;
  /** Deltas received but not yet flushed into a frame. */
  pending: string;
  /** Index of the current text message (0 = `messageId`, n = `${messageId}.${n}`). */
  messageIndex: number;
  messageOpen: boolean;
  status: TurnStatus;
  error?: string;
  flushTimer: Timer | null;
  /** Monotonic time the turn finished (0 while running). */
  finishedAt: number;
}

interface Subscriber {
  sock: StreamSocket;
  principal: StreamPrincipal;
  subscriptions: Map<StreamChannel, StreamFilters>;
  lagging: boolean;
  /** Turn ids whose frames were withheld while lagging. Bounded by the turns the hub holds. */
  missedTurns: Set<string>;
  lastSeenAt: number;
}

interface Scope {
  instanceId?: string;
  conversationId?: string;
}

export class StreamHub {
  private readonly clock: Clock;
  private readonly coalesceMs: number;
  private readonly maxFrameChars: number;
  private readonly turnGraceMs: number;
  private readonly maxFinishedTurns: number;
  private readonly keepaliveMs: number;
  private readonly idleTimeoutMs: number;

  private readonly subscribers = new Set<Subscriber>();
  private readonly laggingSubscribers = new Set<Subscriber>();
  private readonly turns = new Map<string, TurnState>();
  /** Finished turns awaited by lagging clients, in finish order (the first is the oldest). */
  private readonly finished = new Map<string, TurnState>();
  /** One timer for all finished turns: fires when the oldest one's grace ends. */
  private finishedSweep: Timer | null = null;
  private keepaliveTimer: Timer | null = null;
  private closed = false;

  private resyncsTotal = 0;
  private framesSent = 0;
  private framesDropped = 0;

  constructor(opts: StreamHubOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.coalesceMs = opts.coalesceMs ?? 30;
    this.maxFrameChars = opts.maxFrameChars ?? 16_384;
    this.turnGraceMs = opts.turnGraceMs ?? 30_000;
    this.maxFinishedTurns = Math.max(0, opts.maxFinishedTurns ?? 2_000);
    this.keepaliveMs = opts.keepaliveMs ?? 25_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
  }

  // ---------------------------------------------------------------- producer side

  runStarted(start: TurnStart): void {
    const previous = this.turns.get(start.turnId);
    if (previous) this.dropTurn(previous);
    const turn: TurnState = {
      ...start,
      seq: 0,
      text: '',
      pending: '',
      messageIndex: 0,
      messageOpen: false,
      status: 'running',
      flushTimer: null,
      finishedAt: 0,
    };
    this.turns.set(start.turnId, turn);
    this.emitTurn(turn, { type: 'RUN_STARTED', threadId: turn.conversationId, runId: turn.turnId });
  }

  delta(turnId: string, text: string): void {
    const turn = this.turns.get(turnId);
    if (turn?.status !== 'running' || text === '') return;
    if (!turn.messageOpen) {
      // A new text message inside the turn: separate it from the previous one in the snapshot.
      if (turn.text !== '') turn.text += '\n\n';
      turn.messageOpen = true;
      this.emitTurn(turn, { type: 'TEXT_MESSAGE_START', messageId: currentMessageId(turn), role: 'assistant' });
    }
    turn.pending += text;
    // Nobody listening: nothing to coalesce, so no timer (the snapshot text is all that matters).
    if (this.coalesceMs <= 0 || this.subscribers.size === 0 || turn.pending.length >= this.maxFrameChars) {
      this.flush(turn);
    } else if (!turn.flushTimer) {
      turn.flushTimer = this.clock.setTimeout(() => {
        turn.flushTimer = null;
        this.flush(turn);
      }, this.coalesceMs);
    }
  }

  /** The agent finished one text message and may start another in the same turn. */
  messageBreak(turnId: string): void {
    const turn = this.turns.get(turnId);
    if (turn?.status !== 'running' || !turn.messageOpen) return;
    this.closeMessage(turn);
    turn.messageIndex++;
  }

  runFinished(turnId: string, finalText: string): void {
    const turn = this.turns.get(turnId);
    if (turn?.status !== 'running') return;
    if (turn.messageOpen) this.closeMessage(turn);
    turn.status = 'finished';
    turn.text = finalText;
    this.emitTurn(turn, {
      type: 'RUN_FINISHED',
      threadId: turn.conversationId,
      runId: turn.turnId,
      result: { text: finalText },
    });
    this.turnEnded(turn);
  }

  runError(turnId: string, message: string): void {
    const turn = this.turns.get(turnId);
    if (turn?.status !== 'running') return;
    if (turn.messageOpen) this.closeMessage(turn);
    turn.status = 'error';
    turn.error = message;
    this.emitTurn(turn, { type: 'RUN_ERROR', message });
    this.turnEnded(turn);
  }

  /** A retried agent call: what was streamed so far is void; clients start the reply over. */
  turnRestarted(turnId: string, reason: string): void {
    const turn = this.turns.get(turnId);
    if (turn?.status !== 'running') return;
    this.cancelFlush(turn);
    turn.pending = '';
    turn.text = '';
    if (turn.messageOpen) {
      turn.messageOpen = false;
      turn.messageIndex++;
    }
    // AG-UI has no restart event; CUSTOM is its extension point.
    this.emitTurn(turn, { type: 'CUSTOM', name: 'TURN_RESTARTED', value: { reason } });
  }

  /** Non-delta events (instance status, message events). */
  publishEvent(channel: StreamChannel, payload: unknown, scope: Scope = {}): void {
    let frame: string | null = null; // serialized only when someone receives it
    for (const sub of this.subscribers) {
      if (!this.wants(sub, channel, scope)) continue;
      frame ??= JSON.stringify({ type: 'event', channel, payload });
      // Low-volume events are still offered to lagging sockets: Bun enqueues on -1.
      const result = this.sendRaw(sub, frame);
      if (result === -1) this.markLagging(sub);
    }
  }

  /** Current snapshot of a held turn (running, or finished and awaited by a lagging client), or null. */
  snapshot(turnId: string): TurnSnapshot | null {
    const turn = this.turns.get(turnId);
    return turn ? toSnapshot(turn) : null;
  }

  // ---------------------------------------------------------------- subscriber side

  attach(sock: StreamSocket, principal: StreamPrincipal): SubscriberHandle {
    const sub: Subscriber = {
      sock,
      principal,
      subscriptions: new Map(),
      lagging: false,
      missedTurns: new Set(),
      lastSeenAt: this.clock.monotonic(),
    };
    this.subscribers.add(sub);
    this.ensureKeepalive();
    return {
      onMessage: (message) => {
        if (!this.subscribers.has(sub)) return;
        sub.lastSeenAt = this.clock.monotonic();
        this.handleClientMessage(sub, message);
      },
      onDrain: () => {
        if (this.subscribers.has(sub)) this.drain(sub);
      },
      onPong: () => {
        sub.lastSeenAt = this.clock.monotonic();
      },
      detach: () => this.removeSubscriber(sub),
    };
  }

  stats(): StreamHubStats {
    let snapshotChars = 0;
    for (const turn of this.turns.values()) snapshotChars += turn.text.length + turn.pending.length;
    return {
      clients: this.subscribers.size,
      lagging: this.laggingSubscribers.size,
      resyncsTotal: this.resyncsTotal,
      framesSent: this.framesSent,
      framesDropped: this.framesDropped,
      turnsHeld: this.turns.size,
      finishedTurnsHeld: this.finished.size,
      snapshotChars,
    };
  }

  /** Stops timers and forgets everything (sockets are not closed; the server does that). */
  /** True once disconnectAll ran: sockets still opening are to be closed, not attached. */
  disconnecting = false;

  /** Closes every subscriber's socket (shutdown: 1001 "going away"; clients reconnect elsewhere or later). */
  disconnectAll(code = 1001, reason = 'server shutting down'): void {
    this.disconnecting = true;
    for (const sub of [...this.subscribers]) {
      try {
        sub.sock.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  close(): void {
    this.closed = true;
    this.keepaliveTimer?.cancel();
    this.keepaliveTimer = null;
    this.finishedSweep?.cancel();
    this.finishedSweep = null;
    for (const turn of [...this.turns.values()]) this.dropTurn(turn);
    this.subscribers.clear();
    this.laggingSubscribers.clear();
  }

  // ---------------------------------------------------------------- internals

  private flush(turn: TurnState): void {
    this.cancelFlush(turn);
    if (turn.pending === '') return;
    const delta = turn.pending;
    turn.pending = '';
    turn.text += delta;
    this.emitTurn(turn, { type: 'TEXT_MESSAGE_CONTENT', messageId: currentMessageId(turn), delta });
  }

  private closeMessage(turn: TurnState): void {
    this.flush(turn);
    turn.messageOpen = false;
    this.emitTurn(turn, { type: 'TEXT_MESSAGE_END', messageId: currentMessageId(turn) });
  }

  private cancelFlush(turn: TurnState): void {
    turn.flushTimer?.cancel();
    turn.flushTimer = null;
  }

  /**
   * Assigns the next seq and sends to every interested, non-lagging subscriber. The frame is
   * serialized once, and only when someone will receive it (most turns have no subscriber).
   */
  private emitTurn(turn: TurnState, event: Record<string, unknown>): void {
    turn.seq++;
    let frame: string | null = null;
    for (const sub of this.subscribers) {
      if (!this.wants(sub, 'conversations', turn)) continue;
      if (sub.lagging) {
        sub.missedTurns.add(turn.turnId);
        continue;
      }
      frame ??= JSON.stringify({ type: 'event', channel: 'conversations', payload: turnPayload(turn, event) });
      const result = this.sendRaw(sub, frame);
      if (result === -1 || result === 0) {
        // -1: this frame is queued in the socket but later ones would pile up; 0: it was lost.
        // Either way the resync snapshot on drain will bring the client up to date.
        this.markLagging(sub);
        sub.missedTurns.add(turn.turnId);
      }
    }
  }

  private sendRaw(sub: Subscriber, frame: string): number {
    let result: number;
    try {
      result = sub.sock.send(frame);
    } catch {
      result = 0;
    }
    if (result === 0) this.framesDropped++;
    else this.framesSent++;
    return result;
  }

  private markLagging(sub: Subscriber): void {
    if (sub.lagging) return;
    sub.lagging = true;
    this.laggingSubscribers.add(sub);
  }

  private drain(sub: Subscriber): void {
    if (!sub.lagging) return;
    sub.lagging = false;
    this.laggingSubscribers.delete(sub);
    const missed = [...sub.missedTurns];
    sub.missedTurns.clear();
    for (const turnId of missed) {
      const turn = this.turns.get(turnId);
      if (!turn) continue; // dropped (grace or cap exceeded): the client must fetch history instead
      const result = this.sendResync(sub, turn);
      if (result === 0) {
        sub.missedTurns.add(turnId);
        this.markLagging(sub);
      } else if (result === -1) {
        this.markLagging(sub); // the resync is queued; further deltas wait for the next drain
      }
    }
    this.releaseFinished(missed);
  }

  private sendResync(sub: Subscriber, turn: TurnState): number {
    this.resyncsTotal++;
    return this.sendRaw(sub, JSON.stringify({ type: 'resync', snapshot: toSnapshot(turn) }));
  }

  private wants(sub: Subscriber, channel: StreamChannel, scope: Scope): boolean {
    const filters = sub.subscriptions.get(channel);
    if (!filters) return false;
    const allowed = sub.principal.instanceIds;
    if (allowed !== null && (scope.instanceId === undefined || !allowed.includes(scope.instanceId))) return false;
    if (filters.instanceId !== undefined && filters.instanceId !== scope.instanceId) return false;
    if (filters.conversationId !== undefined && filters.conversationId !== scope.conversationId) return false;
    return true;
  }

  private handleClientMessage(sub: Subscriber, message: unknown): void {
    let msg: unknown = message;
    if (typeof message === 'string') {
      try {
        msg = JSON.parse(message);
      } catch {
        return this.sendError(sub, 'VALIDATION_ERROR', 'message is not valid JSON');
      }
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      return this.sendError(sub, 'VALIDATION_ERROR', 'message must be a JSON object with a "type"');
    }
    const m = msg as Record<string, unknown>;
    switch (m.type) {
      case 'ping':
        this.sendRaw(sub, JSON.stringify({ type: 'pong' }));
        return;
      case 'subscribe':
        return this.subscribe(sub, m);
      case 'unsubscribe':
        return this.unsubscribe(sub, m);
      default:
        return this.sendError(sub, 'VALIDATION_ERROR', `unknown message type: ${String(m.type)}`);
    }
  }

  private subscribe(sub: Subscriber, m: Record<string, unknown>): void {
    const channels = parseChannels(m.channels);
    if (typeof channels === 'string') return this.sendError(sub, 'VALIDATION_ERROR', channels);
    const filters = parseFilters(m.filters);
    if (typeof filters === 'string') return this.sendError(sub, 'VALIDATION_ERROR', filters);
    const allowed = sub.principal.instanceIds;
    if (allowed !== null && filters.instanceId !== undefined && !allowed.includes(filters.instanceId)) {
      return this.sendError(sub, 'FORBIDDEN', `this key has no access to instance ${filters.instanceId}`);
    }
    const runningBefore = new Set(this.runningTurnsFor(sub));
    for (const channel of channels) sub.subscriptions.set(channel, filters);
    this.sendRaw(sub, JSON.stringify({ type: 'subscribed', channels, filters }));
    // Joining mid-turn: the snapshot comes first, then live frames with a higher seq.
    for (const turn of this.runningTurnsFor(sub)) {
      if (runningBefore.has(turn)) continue; // already following this turn
      if (sub.lagging) {
        sub.missedTurns.add(turn.turnId);
        continue;
      }
      const result = this.sendResync(sub, turn);
      if (result === -1) this.markLagging(sub);
      if (result === 0) {
        this.markLagging(sub);
        sub.missedTurns.add(turn.turnId);
      }
    }
  }

  private *runningTurnsFor(sub: Subscriber): Iterable<TurnState> {
    for (const turn of this.turns.values()) {
      if (turn.status === 'running' && this.wants(sub, 'conversations', turn)) yield turn;
    }
  }

  private unsubscribe(sub: Subscriber, m: Record<string, unknown>): void {
    const channels = m.channels === undefined ? [...STREAM_CHANNELS] : parseChannels(m.channels);
    if (typeof channels === 'string') return this.sendError(sub, 'VALIDATION_ERROR', channels);
    for (const channel of channels) sub.subscriptions.delete(channel);
    if (!sub.subscriptions.has('conversations')) {
      const missed = [...sub.missedTurns];
      sub.missedTurns.clear();
      this.releaseFinished(missed);
    }
    this.sendRaw(sub, JSON.stringify({ type: 'unsubscribed', channels }));
  }

  private sendError(sub: Subscriber, code: 'VALIDATION_ERROR' | 'FORBIDDEN', message: string): void {
    this.sendRaw(sub, JSON.stringify({ type: 'error', error: { code, message } }));
  }

  private removeSubscriber(sub: Subscriber): void {
    this.subscribers.delete(sub);
    this.laggingSubscribers.delete(sub);
    const missed = [...sub.missedTurns];
    sub.missedTurns.clear();
    this.releaseFinished(missed);
    if (this.subscribers.size === 0) {
      this.keepaliveTimer?.cancel();
      this.keepaliveTimer = null;
    }
  }

  /** A turn finished or failed: keep it only while a lagging client still needs its resync. */
  private turnEnded(turn: TurnState): void {
    this.cancelFlush(turn);
    if (!this.awaitedByLagging(turn.turnId) || this.maxFinishedTurns === 0) {
      this.dropTurn(turn);
      return;
    }
    turn.finishedAt = this.clock.monotonic();
    this.finished.set(turn.turnId, turn);
    for (const oldest of this.finished.values()) {
      if (this.finished.size <= this.maxFinishedTurns) break;
      this.dropTurn(oldest);
    }
    this.armFinishedSweep();
  }

  private awaitedByLagging(turnId: string): boolean {
    for (const sub of this.laggingSubscribers) if (sub.missedTurns.has(turnId)) return true;
    return false;
  }

  /** Drops finished turns among `turnIds` that no lagging client awaits any more. */
  private releaseFinished(turnIds: Iterable<string>): void {
    for (const turnId of turnIds) {
      const turn = this.finished.get(turnId);
      if (turn && !this.awaitedByLagging(turnId)) this.dropTurn(turn);
    }
  }

  private armFinishedSweep(): void {
    if (this.finishedSweep || this.closed) return;
    const oldest = this.finished.values().next().value;
    if (!oldest) return;
    const wait = Math.max(0, oldest.finishedAt + this.turnGraceMs - this.clock.monotonic());
    this.finishedSweep = this.clock.setTimeout(() => {
      this.finishedSweep = null;
      const cutoff = this.clock.monotonic() - this.turnGraceMs;
      for (const turn of this.finished.values()) {
        if (turn.finishedAt > cutoff) break; // finish order: the rest are younger
        this.dropTurn(turn);
      }
      this.armFinishedSweep();
    }, wait);
  }

  private dropTurn(turn: TurnState): void {
    this.cancelFlush(turn);
    if (this.turns.get(turn.turnId) === turn) this.turns.delete(turn.turnId);
    if (this.finished.get(turn.turnId) === turn) this.finished.delete(turn.turnId);
    for (const sub of this.laggingSubscribers) sub.missedTurns.delete(turn.turnId);
  }

  private ensureKeepalive(): void {
    if (this.closed || this.keepaliveMs <= 0 || this.keepaliveTimer) return;
    this.keepaliveTimer = this.clock.setTimeout(() => {
      this.keepaliveTimer = null;
      this.keepaliveSweep();
      if (this.subscribers.size > 0) this.ensureKeepalive();
    }, this.keepaliveMs);
  }

  private keepaliveSweep(): void {
    const now = this.clock.monotonic();
    for (const sub of [...this.subscribers]) {
      if (now - sub.lastSeenAt >= this.idleTimeoutMs) {
        this.removeSubscriber(sub);
        try {
          sub.sock.close(WS_CLOSE_IDLE, 'idle timeout');
        } catch {
          // already closed
        }
      } else {
        try {
          sub.sock.ping?.();
        } catch {
          // a failing ping will surface as a close event
        }
      }
    }
  }
}

function currentMessageId(turn: TurnState): string {
  return turn.messageIndex === 0 ? turn.messageId : `${turn.messageId}.${turn.messageIndex}`;
}

function turnPayload(turn: TurnState, event: Record<string, unknown>): Record<string, unknown> {
  return {
    ...event,
    instanceId: turn.instanceId,
    conversationId: turn.conversationId,
    turnId: turn.turnId,
    seq: turn.seq,
    ...(event.messageId === undefined ? { messageId: turn.messageId } : {}),
  };
}

function toSnapshot(turn: TurnState): TurnSnapshot {
  return {
    instanceId: turn.instanceId,
    conversationId: turn.conversationId,
    turnId: turn.turnId,
    messageId: turn.messageId,
    seq: turn.seq,
    text: turn.text,
    status: turn.status,
    ...(turn.error !== undefined ? { error: turn.error } : {}),
  };
}

function parseChannels(value: unknown): StreamChannel[] | string {
  if (!Array.isArray(value) || value.length === 0) return '"channels" must be a non-empty array';
  for (const c of value) {
    if (!STREAM_CHANNELS.includes(c as StreamChannel)) {
      return `unknown channel ${JSON.stringify(c)} (expected one of ${STREAM_CHANNELS.join(', ')})`;
    }
  }
  return [...new Set(value as StreamChannel[])];
}

function parseFilters(value: unknown): StreamFilters | string {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) return '"filters" must be an object';
  const f = value as Record<string, unknown>;
  const out: StreamFilters = {};
  for (const key of ['instanceId', 'conversationId'] as const) {
    if (f[key] === undefined || f[key] === null) continue;
    if (typeof f[key] !== 'string') return `filters.${key} must be a string`;
    out[key] = f[key] as string;
  }
  return out;
}
