// Per-key rate limits by route class. The in-memory token bucket serves one node; the cluster
// mode can replace it with a shared implementation of the same RateLimiter interface
// (gw.rateLimiter), so the server never knows which one it talks to.
import type { SettingsService } from './settings.ts';

export type RouteClass = 'messages.send' | 'events.list' | 'instances.write' | 'general';

export interface RateDecision {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** Allowed: seconds until the bucket is full again. Refused: seconds until a request may pass. */
  resetSeconds: number;
}

export interface RateLimiter {
  take(key: string, cls: RouteClass): RateDecision | Promise<RateDecision>;
}

/** Settings keys holding the per-minute limit of each class. */
export const RATE_LIMIT_SETTINGS: Record<RouteClass, string> = {
  'messages.send': 'rateLimit.messagesSendPerMinute',
  'events.list': 'rateLimit.eventsListPerMinute',
  'instances.write': 'rateLimit.instancesWritePerMinute',
  general: 'rateLimit.generalPerMinute',
};

export const DEFAULT_LIMITS: Record<RouteClass, number> = {
  'messages.send': 60,
  'events.list': 100,
  'instances.write': 30,
  general: 1000,
};

export function limitsFromSettings(settings: Pick<SettingsService, 'value'>): (cls: RouteClass) => number {
  return (cls) => {
    try {
      return settings.value<number>(RATE_LIMIT_SETTINGS[cls]);
    } catch {
      return DEFAULT_LIMITS[cls];
    }
  };
}

interface Bucket {
  tokens: number;
  at: number;
}

/** Token bucket per (key, class): capacity = the per-minute limit, refilled continuously. */
export class MemoryRateLimiter implements RateLimiter {
  private buckets = new Map<string, Bucket>();
  private takes = 0;

  constructor(
    private limitOf: (cls: RouteClass) => number = (cls) => DEFAULT_LIMITS[cls],
    private now: () => number = Date.now,
    private windowMs = 60_000,
  ) {}

  take(key: string, cls: RouteClass): RateDecision {
    const limit = Math.max(1, Math.floor(this.limitOf(cls)));
    const perMs = limit / this.windowMs;
    const now = this.now();
    const id = `${cls}\u0000${key}`;
    let b = this.buckets.get(id);
    if (!b) {
      b = { tokens: limit, at: now };
      this.buckets.set(id, b);
    } else {
      b.tokens = Math.min(limit, b.tokens + Math.max(0, now - b.at) * perMs);
      b.at = now;
    }
    if (++this.takes % 1024 === 0) this.sweep(now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return {
        allowed: true,
        limit,
        remaining: Math.floor(b.tokens),
        resetSeconds: Math.ceil((limit - b.tokens) / perMs / 1000),
      };
    }
    return { allowed: false, limit, remaining: 0, resetSeconds: Math.max(1, Math.ceil((1 - b.tokens) / perMs / 1000)) };
  }

  /** Forgets full buckets (a full bucket is the same as none), keeping memory bounded. */
  private sweep(now: number): void {
    for (const [id, b] of this.buckets) {
      const cls = id.slice(0, id.indexOf('\u0000')) as RouteClass;
      const limit = Math.max(1, Math.floor(this.limitOf(cls)));
      if (b.tokens + (now - b.at) * (limit / this.windowMs) >= limit) this.buckets.delete(id);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}
