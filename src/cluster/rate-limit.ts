// Cluster-wide API rate limits: one token bucket per (route class, key) in Redis, taken in one
// Lua call (RATE_TAKE) on a connection of its own, so a slow limiter never delays lease renewals
// or the stream reader. Limits come from the replicated settings, like the embedded limiter.
//
// Redis unreachable: fail OPEN to this node's in-memory bucket (per-node limits still hold, so a
// key can get at most nodes × limit while Redis is down) with one warning per 10 s. API rate
// limits must not take the API down with Redis.
import Redis from 'ioredis';
import type { Logger } from 'pino';
import { MemoryRateLimiter, type RateDecision, type RateLimiter, type RouteClass } from '../services/rate-limit.ts';
import { RATE_TAKE } from './lua.ts';

export interface RedisRateLimiterOptions {
  redisUrl: string;
  prefix: string;
  node: string;
  limitOf: (cls: RouteClass) => number;
  log: Logger;
  now?: () => number;
  windowMs?: number;
  /** A take that Redis has not answered in this time falls back to the local bucket. */
  timeoutMs?: number;
}

export class RedisRateLimiter implements RateLimiter {
  private redis: Redis;
  private local: MemoryRateLimiter;
  private lastWarn = 0;
  private readonly windowMs: number;
  readonly counters = { shared: 0, fallback: 0 };

  constructor(private o: RedisRateLimiterOptions) {
    this.windowMs = o.windowMs ?? 60_000;
    this.redis = new Redis(o.redisUrl, {
      lazyConnect: true,
      connectTimeout: 2000,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      commandTimeout: o.timeoutMs ?? 500,
      connectionName: `sb-rate-${o.node}`,
    });
    this.redis.on('error', () => {});
    this.local = new MemoryRateLimiter(o.limitOf, o.now ?? Date.now, this.windowMs);
  }

  async connect(): Promise<void> {
    await this.redis.connect();
  }

  async take(key: string, cls: RouteClass): Promise<RateDecision> {
    const limit = Math.max(1, Math.floor(this.o.limitOf(cls)));
    try {
      const [allowed, remaining, ms] = (await this.redis.eval(
        RATE_TAKE,
        0,
        `${this.o.prefix}rl:${cls}:${key}`,
        limit,
        this.windowMs,
      )) as number[];
      this.counters.shared++;
      return {
        allowed: allowed === 1,
        limit,
        remaining,
        resetSeconds: Math.max(allowed === 1 ? 0 : 1, Math.ceil(ms / 1000)),
      };
    } catch (err) {
      this.counters.fallback++;
      const now = Date.now();
      if (now - this.lastWarn > 10_000) {
        this.lastWarn = now;
        this.o.log.warn(
          { err: String((err as Error).message ?? err) },
          "cluster: shared rate limiter unavailable; using this node's own limits",
        );
      }
      return this.local.take(key, cls);
    }
  }

  close(): void {
    this.redis.disconnect();
  }
}
