// A Clock whose time moves only when a test says so. Timers fire in due order; between firings
// pending promise continuations run, so code chained on sleep() makes progress as it would live.
import type { Clock, Timer } from './clock.ts';

interface ScheduledTimer {
  due: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** Lets queued microtasks (and anything they schedule with setImmediate) run. */
async function flushMicrotasks(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

export class VirtualClock implements Clock {
  private elapsed = 0;
  private seq = 0;
  // Kept sorted by (due, seq) so equal-due timers fire in registration order.
  private timers: ScheduledTimer[] = [];

  constructor(private readonly epochMs = Date.UTC(2025, 0, 1)) {}

  now(): number {
    return this.epochMs + this.elapsed;
  }

  monotonic(): number {
    return this.elapsed;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const timer: ScheduledTimer = {
      due: this.elapsed + Math.max(0, Number.isFinite(ms) ? ms : 0),
      seq: this.seq++,
      fn,
      cancelled: false,
    };
    this.insert(timer);
    return {
      cancel: () => {
        if (timer.cancelled) return;
        timer.cancelled = true;
        const i = this.timers.indexOf(timer);
        if (i >= 0) this.timers.splice(i, 1);
      },
    };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        timer.cancel();
        reject(signal!.reason);
      };
      const timer = this.setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Number of timers not yet fired or cancelled. */
  pending(): number {
    return this.timers.length;
  }

  /** Monotonic time of the next timer, or undefined when none is pending. */
  nextDue(): number | undefined {
    return this.timers[0]?.due;
  }

  /** Runs pending continuations without moving time. */
  async flush(): Promise<void> {
    await flushMicrotasks();
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new RangeError('cannot move a clock backwards');
    const target = this.elapsed + ms;
    await flushMicrotasks();
    for (;;) {
      const next = this.timers[0];
      if (!next || next.due > target) break;
      this.timers.shift();
      this.elapsed = next.due;
      next.cancelled = true;
      next.fn();
      await flushMicrotasks();
    }
    this.elapsed = target;
    await flushMicrotasks();
  }

  /**
   * Fires timers until none is left (including timers scheduled by fired ones).
   * Throws after `maxTimers` firings so a self-rearming timer cannot hang a test.
   */
  async runAll(maxTimers = 10_000): Promise<void> {
    for (let fired = 0; ; fired++) {
      await flushMicrotasks();
      const next = this.timers[0];
      if (!next) return;
      if (fired >= maxTimers) throw new Error(`VirtualClock.runAll: more than ${maxTimers} timers fired`);
      await this.advance(next.due - this.elapsed);
    }
  }

  private insert(timer: ScheduledTimer): void {
    // Binary search for the first timer due strictly later; equal dues keep FIFO order.
    let lo = 0;
    let hi = this.timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.timers[mid].due <= timer.due) lo = mid + 1;
      else hi = mid;
    }
    this.timers.splice(lo, 0, timer);
  }
}
