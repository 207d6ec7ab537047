// Activates actors by key on demand, feeds each one its messages strictly one at a time, restarts
// a failing actor with backoff (redelivering the failed message first), and passivates idle ones
// (idle timeout and an LRU cap). Durable state belongs to the actors' owners, not to this runtime.
import { backoffDelay } from './backoff.ts';
import type { Clock, Timer } from './clock.ts';
import { Mailbox } from './mailbox.ts';

export type StopReason = 'passivate' | 'shutdown' | 'restart';

export interface Actor<M> {
  receive(msg: M): Promise<void>;
  stop?(reason: StopReason): Promise<void>;
}

export interface RestartPolicy {
  baseMs: number;
  maxMs: number;
  /** Redeliveries of one message after failures; failure number maxRestarts + 1 drops it. */
  maxRestarts: number;
  factor?: number;
  jitter?: number;
}

export type PassivateCause = 'idle' | 'lru' | 'manual';

export type SupervisorEvent<M = unknown> =
  | { type: 'activated'; key: string }
  | { type: 'passivated'; key: string; cause: PassivateCause }
  /** receive (or create) threw; a fresh instance will get the same message after delayMs. */
  | { type: 'failed'; key: string; msg: M; error: unknown; failures: number; delayMs: number }
  | { type: 'restarted'; key: string; failures: number }
  | { type: 'dropped'; key: string; msg: M; error: unknown }
  /** Activation went beyond maxActive because every active actor was busy. */
  | { type: 'over-capacity'; active: number; maxActive: number }
  | { type: 'stop-failed'; key: string; reason: StopReason; error: unknown };

export interface SupervisorOptions<M> {
  create: (key: string) => Actor<M>;
  clock: Clock;
  idleMs: number;
  maxActive: number;
  mailboxCapacity: number;
  restart: RestartPolicy;
  onEvent?: (e: SupervisorEvent<M>) => void;
  /** Jitter source for restart delays (tests pass a fixed one). */
  random?: () => number;
}

export interface SupervisorStats {
  active: number;
  busy: number;
  /** Total passivations since start (idle, LRU and manual). */
  passivated: number;
  /** Total restarts (fresh instance after a failure) since start. */
  restarts: number;
}

// One per active key. Kept small: idle cells hold no timers or promises.
class Cell<M> {
  actor: Actor<M> | null = null;
  /** True while the drain loop runs: processing, or waiting out a restart delay. */
  running = false;
  lastActive: number;
  constructor(
    readonly key: string,
    readonly mailbox: Mailbox<M>,
    now: number,
  ) {
    this.lastActive = now;
  }
}

export class Supervisor<M> {
  // Map iteration order is insertion order; touching a cell re-inserts it, so the first entries
  // are the least recently used and lastActive is non-decreasing along the map.
  private readonly cells = new Map<string, Cell<M>>();
  /** Previous instances still running stop(); a new instance for the key waits for it. */
  private readonly stopping = new Map<string, Promise<void>>();
  private readonly drains = new Set<Promise<void>>();
  private readonly shutdownController = new AbortController();
  private sweeper: Timer | null = null;
  private closed = false;
  private busyCount = 0;
  private passivatedTotal = 0;
  private restartTotal = 0;

  constructor(private readonly opts: SupervisorOptions<M>) {
    if (!(opts.maxActive >= 1)) throw new RangeError('maxActive must be at least 1');
    if (!(opts.idleMs > 0)) throw new RangeError('idleMs must be positive');
  }

  /** Enqueues msg for key, activating it if needed; false when its mailbox is full or after shutdown. */
  tell(key: string, msg: M): boolean {
    if (this.closed) return false;
    let cell = this.cells.get(key);
    const now = this.opts.clock.monotonic();
    if (!cell) {
      cell = new Cell<M>(key, new Mailbox<M>(this.opts.mailboxCapacity), now);
      this.cells.set(key, cell);
      this.enforceCap(cell);
      this.armSweeper();
    } else {
      this.touch(cell, now);
    }
    if (!cell.mailbox.offer(msg)) return false;
    if (!cell.running) this.startDrain(cell);
    return true;
  }

  has(key: string): boolean {
    return this.cells.has(key);
  }

  activeKeys(): string[] {
    return [...this.cells.keys()];
  }

  stats(): SupervisorStats {
    return {
      active: this.cells.size,
      busy: this.busyCount,
      passivated: this.passivatedTotal,
      restarts: this.restartTotal,
    };
  }

  /**
   * Stops one idle actor now. False when the key is not active or is busy (has queued or
   * in-flight messages); true once it has been stopped.
   */
  async passivate(key: string): Promise<boolean> {
    const cell = this.cells.get(key);
    if (!cell) {
      const pending = this.stopping.get(key);
      if (pending) await pending;
      return false;
    }
    if (!this.isIdle(cell)) return false;
    await this.retire(cell, 'manual');
    return true;
  }

  /** Refuses new messages, lets in-flight receives finish (queued ones are not run), stops every actor. */
  async shutdown(): Promise<void> {
    if (this.closed) {
      await Promise.all([...this.drains]);
      await Promise.all([...this.stopping.values()]);
      return;
    }
    this.closed = true;
    this.sweeper?.cancel();
    this.sweeper = null;
    // Wakes drain loops waiting out a restart delay.
    this.shutdownController.abort(new Error('supervisor shut down'));
    await Promise.all([...this.drains]);
    const stops: Promise<void>[] = [];
    for (const cell of this.cells.values()) {
      cell.mailbox.close();
      const actor = cell.actor;
      cell.actor = null;
      if (actor) stops.push(this.stopActor(cell.key, actor, 'shutdown'));
    }
    this.cells.clear();
    await Promise.all([...stops, ...this.stopping.values()]);
  }

  // ---- internals ----

  private isIdle(cell: Cell<M>): boolean {
    return !cell.running && cell.mailbox.size === 0;
  }

  private touch(cell: Cell<M>, now: number): void {
    cell.lastActive = now;
    this.cells.delete(cell.key);
    this.cells.set(cell.key, cell);
  }

  private startDrain(cell: Cell<M>): void {
    cell.running = true;
    this.busyCount++;
    const done = this.drain(cell).finally(() => {
      cell.running = false;
      this.busyCount--;
      this.drains.delete(done);
      // Idle from now on; moving it to the LRU tail keeps the map ordered by lastActive.
      if (this.cells.get(cell.key) === cell) this.touch(cell, this.opts.clock.monotonic());
    });
    this.drains.add(done);
  }

  private async drain(cell: Cell<M>): Promise<void> {
    const { restart } = this.opts;
    const signal = this.shutdownController.signal;
    // A message that made the actor fail is redelivered before anything else in the mailbox.
    let redeliver: { msg: M } | null = null;
    let failures = 0;
    while (!this.closed) {
      let msg: M;
      if (redeliver) msg = redeliver.msg;
      else if (cell.mailbox.size > 0) msg = cell.mailbox.poll() as M;
      else return;
      try {
        if (!cell.actor) {
          const previous = this.stopping.get(cell.key);
          if (previous) await previous;
          cell.actor = this.opts.create(cell.key);
          if (failures > 0) {
            this.restartTotal++;
            this.emit({ type: 'restarted', key: cell.key, failures });
          } else {
            this.emit({ type: 'activated', key: cell.key });
          }
        }
        await cell.actor.receive(msg);
        failures = 0;
        redeliver = null;
      } catch (error) {
        failures++;
        const broken = cell.actor;
        cell.actor = null;
        if (broken) await this.stopActor(cell.key, broken, 'restart');
        if (failures > restart.maxRestarts) {
          this.emit({ type: 'dropped', key: cell.key, msg, error });
          failures = 0;
          redeliver = null;
          continue;
        }
        redeliver = { msg };
        const delayMs = backoffDelay(failures - 1, restart, this.opts.random);
        this.emit({ type: 'failed', key: cell.key, msg, error, failures, delayMs });
        try {
          await this.opts.clock.sleep(delayMs, signal);
        } catch {
          return; // shutdown during the delay; the message is left to its durable owner
        }
      } finally {
        cell.lastActive = this.opts.clock.monotonic();
      }
    }
  }

  /** Makes room for `fresh` by passivating least-recently-used idle actors. */
  private enforceCap(fresh: Cell<M>): void {
    if (this.cells.size <= this.opts.maxActive) return;
    for (const cell of this.cells.values()) {
      if (this.cells.size <= this.opts.maxActive) return;
      if (cell === fresh || !this.isIdle(cell)) continue;
      void this.retire(cell, 'lru');
    }
    if (this.cells.size > this.opts.maxActive) {
      this.emit({ type: 'over-capacity', active: this.cells.size, maxActive: this.opts.maxActive });
    }
  }

  /** Removes an idle cell and stops its actor; a later tell for the key waits for that stop. */
  private retire(cell: Cell<M>, cause: PassivateCause): Promise<void> {
    this.cells.delete(cell.key);
    cell.mailbox.close();
    this.passivatedTotal++;
    this.emit({ type: 'passivated', key: cell.key, cause });
    const actor = cell.actor;
    cell.actor = null;
    if (!actor) return Promise.resolve();
    const previous = this.stopping.get(cell.key);
    const stopped = (async () => {
      if (previous) await previous;
      await this.stopActor(cell.key, actor, 'passivate');
    })();
    this.stopping.set(cell.key, stopped);
    void stopped.then(() => {
      if (this.stopping.get(cell.key) === stopped) this.stopping.delete(cell.key);
    });
    return stopped;
  }

  private async stopActor(key: string, actor: Actor<M>, reason: StopReason): Promise<void> {
    if (!actor.stop) return;
    try {
      await actor.stop(reason);
    } catch (error) {
      this.emit({ type: 'stop-failed', key, reason, error });
    }
  }

  // One timer for all actors, only while some are active: idle cells cost no timers.
  private armSweeper(): void {
    if (this.sweeper || this.closed) return;
    const interval = Math.max(1, Math.floor(this.opts.idleMs / 2));
    this.sweeper = this.opts.clock.setTimeout(() => {
      this.sweeper = null;
      this.sweep();
      if (this.cells.size > 0) this.armSweeper();
    }, interval);
  }

  private sweep(): void {
    const cutoff = this.opts.clock.monotonic() - this.opts.idleMs;
    for (const cell of this.cells.values()) {
      // Busy cells are skipped (they are moved to the tail when they finish); idle cells are
      // ordered by lastActive, so the first recent idle one ends the scan.
      if (!this.isIdle(cell)) continue;
      if (cell.lastActive > cutoff) break;
      void this.retire(cell, 'idle');
    }
  }

  private emit(e: SupervisorEvent<M>): void {
    if (!this.opts.onEvent) return;
    try {
      this.opts.onEvent(e);
    } catch {
      // an observer must not break message processing
    }
  }
}
