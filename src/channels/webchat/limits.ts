// Per-visitor and per-IP request budgets of the public web chat routes: a token bucket per key
// (burst = the per-minute budget, refilled continuously). Each key has its own bucket, so one
// visitor's flood is refused (429) without touching anyone else's budget, and refused requests
// cost nothing further (no database work). In memory, per process: in a cluster each node counts
// its own share.
import type { Clock } from '../../../actors/runtime/clock.ts';

interface Bucket {
  tokens: number;
  at: number;
  perMinute: number;
}

export interface Take {
  allowed: boolean;
  /** Seconds until one request is allowed again (when refused). */
  retryAfterSeconds: number;
}

/** Buckets beyond this are pruned (full ones first: they carry no state worth keeping). */
const MAX_BUCKETS = 100_000;

export class Buckets {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly clock: Clock) {}

  take(key: string, perMinute: number): Take {
    const now = this.clock.monotonic();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= MAX_BUCKETS) this.prune(now);
      b = { tokens: perMinute, at: now, perMinute };
      this.buckets.set(key, b);
    } else {
      b.perMinute = perMinute;
      b.tokens = Math.min(perMinute, b.tokens + ((now - b.at) * perMinute) / 60_000);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, retryAfterSeconds: 0 };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(((1 - b.tokens) * 60) / perMinute)) };
  }

  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * b.perMinute) / 60_000 >= b.perMinute) this.buckets.delete(k);
    }
    // Still full of active keys: drop the oldest half rather than grow without bound.
    if (this.buckets.size >= MAX_BUCKETS) {
      let n = this.buckets.size / 2;
      for (const k of this.buckets.keys()) {
        if (n-- <= 0) break;
        this.buckets.delete(k);
      }
    }
  }
}
