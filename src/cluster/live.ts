// Live deltas across nodes. The producer-side calls on the local StreamHub (runStarted, delta,
// ..., publishEvent) are also published on one pub/sub channel; every other node replays them
// on its own hub, so a WebSocket client on node B sees a reply produced on node A. Pub/sub may
// lose messages: each node numbers what it publishes, and a receiver that sees a gap (or whose
// subscriber connection was re-established) asks the origin for snapshots of its running turns;
// the turn is then restarted for its clients (CUSTOM TURN_RESTARTED, reason "resync") and the
// reply so far is sent again in one piece.
import type Redis from 'ioredis';
import type { StreamHub } from '../stream/hub.ts';

const OPS = [
  'runStarted',
  'delta',
  'messageBreak',
  'runFinished',
  'runError',
  'turnRestarted',
  'publishEvent',
] as const;
type Op = (typeof OPS)[number];

interface TurnStartInfo {
  instanceId: string;
  conversationId: string;
  turnId: string;
  messageId: string;
}

interface EndedTurn extends TurnStartInfo {
  status: 'finished' | 'error';
  text: string;
  error?: string;
}

const RECENTLY_ENDED_CAP = 500;

interface LiveMsg {
  n: string; // origin node
  q: number; // origin sequence
  op: Op | 'snap' | 'resync?';
  a: unknown[];
}

export class LiveRelay {
  private seq = 0;
  private lastSeen = new Map<string, number>();
  private originals: Record<string, (...a: unknown[]) => void> = {};
  /** Turns replayed from each origin that may still be running. */
  private foreignTurns = new Map<string, Set<string>>();
  /** Turns this node produces that are running (answers resync requests). */
  private ownTurns = new Set<string>();
  /** Start of each running own turn (the hub forgets finished turns at once). */
  private ownStarts = new Map<string, TurnStartInfo>();
  /**
   * Own turns that ended recently, with their final text: a receiver whose subscription broke
   * while the turn ended gets its end in the resync instead of waiting for it forever. Bounded.
   */
  private recentlyEnded = new Map<string, EndedTurn>();
  readonly counters = { published: 0, received: 0, gaps: 0, resyncs: 0 };

  constructor(
    private hub: StreamHub,
    private pub: Redis,
    private channel: string,
    private node: string,
  ) {
    const target = hub as unknown as Record<string, (...a: unknown[]) => void>;
    for (const op of OPS) {
      const orig = target[op].bind(hub);
      this.originals[op] = orig;
      target[op] = (...a: unknown[]) => {
        orig(...a);
        if (op === 'runStarted') {
          const start = a[0] as TurnStartInfo;
          this.ownTurns.add(start.turnId);
          this.ownStarts.set(start.turnId, start);
        }
        if (op === 'runFinished' || op === 'runError')
          this.ended(
            a[0] as string,
            op === 'runFinished'
              ? { status: 'finished', text: a[1] as string }
              : { status: 'error', text: '', error: a[1] as string },
          );
        this.send(op, a);
      };
    }
  }

  private ended(turnId: string, end: Pick<EndedTurn, 'status' | 'text' | 'error'>): void {
    this.ownTurns.delete(turnId);
    const start = this.ownStarts.get(turnId);
    this.ownStarts.delete(turnId);
    if (!start) return;
    this.recentlyEnded.set(turnId, { ...start, ...end });
    if (this.recentlyEnded.size > RECENTLY_ENDED_CAP)
      this.recentlyEnded.delete(this.recentlyEnded.keys().next().value!);
  }

  private send(op: LiveMsg['op'], a: unknown[]): void {
    const msg: LiveMsg = { n: this.node, q: ++this.seq, op, a };
    this.counters.published++;
    this.pub.publish(this.channel, JSON.stringify(msg)).catch(() => {
      /* lost: receivers detect the gap by sequence */
    });
  }

  /**
   * Every subscriber (re)connection may have missed messages: ask all origins for snapshots, and
   * send our own (the others' subscriptions broke too, e.g. a Redis restart). Whichever node
   * re-subscribes last, one of the two reaches the other.
   */
  resubscribed(): void {
    this.lastSeen.clear();
    this.send('resync?', ['*']);
    this.sendSnapshots();
  }

  private sendSnapshots(): void {
    // The hub's snapshot leaves out text still being coalesced locally, but every delta was
    // already published raw: the receiver's restart must carry ALL text produced so far.
    const turns = (this.hub as unknown as { turns?: Map<string, { pending?: string }> }).turns;
    for (const turnId of this.ownTurns) {
      const s = this.hub.snapshot(turnId);
      if (s && s.status === 'running')
        this.send('snap', [{ ...s, text: s.text + (turns?.get(turnId)?.pending ?? '') }]);
    }
    for (const e of this.recentlyEnded.values()) this.send('snap', [e]);
  }

  receive(raw: string): void {
    let m: LiveMsg;
    try {
      m = JSON.parse(raw) as LiveMsg;
    } catch {
      return;
    }
    if (m.n === this.node) return;
    this.counters.received++;
    const last = this.lastSeen.get(m.n);
    this.lastSeen.set(m.n, m.q);
    if (last !== undefined && m.q !== last + 1) {
      this.counters.gaps++;
      this.send('resync?', [m.n]);
    }
    if (m.op === 'resync?') {
      if (m.a[0] === '*' || m.a[0] === this.node) this.sendSnapshots();
      return;
    }
    if (m.op === 'snap') {
      const s = m.a[0] as TurnStartInfo & { text: string; status?: 'running' | 'finished' | 'error'; error?: string };
      if (s.status === 'finished' || s.status === 'error') {
        // Only a turn seen starting here and not seen ending: its clients are still waiting.
        const running = this.foreignTurns.get(m.n);
        if (!running?.has(s.turnId)) return;
        running.delete(s.turnId);
        this.counters.resyncs++;
        if (!this.hub.snapshot(s.turnId))
          this.originals.runStarted({
            instanceId: s.instanceId,
            conversationId: s.conversationId,
            turnId: s.turnId,
            messageId: s.messageId,
          });
        this.originals.turnRestarted(s.turnId, 'resync');
        if (s.text) this.originals.delta(s.turnId, s.text);
        if (s.status === 'finished') this.originals.runFinished(s.turnId, s.text);
        else this.originals.runError(s.turnId, s.error ?? 'the reply failed');
        return;
      }
      this.counters.resyncs++;
      if (!this.hub.snapshot(s.turnId))
        this.originals.runStarted({
          instanceId: s.instanceId,
          conversationId: s.conversationId,
          turnId: s.turnId,
          messageId: s.messageId,
        });
      this.originals.turnRestarted(s.turnId, 'resync');
      if (s.text) this.originals.delta(s.turnId, s.text);
      return;
    }
    if (m.op === 'runStarted') {
      const set = this.foreignTurns.get(m.n) ?? new Set();
      set.add((m.a[0] as { turnId: string }).turnId);
      this.foreignTurns.set(m.n, set);
    } else if (m.op === 'runFinished' || m.op === 'runError') {
      this.foreignTurns.get(m.n)?.delete(m.a[0] as string);
    }
    this.originals[m.op]?.(...m.a);
  }
}
