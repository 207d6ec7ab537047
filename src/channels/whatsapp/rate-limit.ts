// Token bucket for outgoing messages: `ratePerSecond` sustained, up to `burst` at once.
// reserve() hands out tokens in call order and returns how long the caller must wait first,
// so concurrent sends queue up instead of all waking at the same instant.
import type { Clock } from '../../../actors/runtime/clock.ts';

export class TokenBucket {
  private tokens: number;
  private lastRefill: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly clock: Clock,
  ) {
    this.tokens = burst;
    this.lastRefill = clock.monotonic();
  }

  /** Takes one token; returns the wait in ms before using it (0 when one was available). */
  reserve(): number {
    const now = this.clock.monotonic();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.lastRefill) / 1000) * this.ratePerSecond);
    this.lastRefill = now;
    this.tokens -= 1;
    // A negative balance is a debt paid back at ratePerSecond.
    return this.tokens >= 0 ? 0 : (-this.tokens / this.ratePerSecond) * 1000;
  }
}
