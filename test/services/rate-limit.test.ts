// Rate limits per key and route class: headers on every /api answer, 429 RATE_LIMITED with
// Retry-After, refill over (virtual) time, settings-driven limits, and a swappable limiter.
import { describe, expect, test } from 'bun:test';
import type { Clock } from '../../actors/runtime/clock.ts';
import { MemoryRateLimiter, type RateLimiter } from '../../src/services/rate-limit.ts';
import { createTestGateway } from '../helpers.ts';

function fakeClock(start = Date.parse('2025-06-01T00:00:00Z')) {
  const c = { t: start } as { t: number } & Clock;
  Object.assign(c, {
    now: () => c.t,
    monotonic: () => c.t,
    setTimeout: () => ({ cancel() {} }),
    sleep: async () => {},
  });
  return c;
}

describe('MemoryRateLimiter', () => {
  test('a bucket of N per minute allows N at once, then refills one every 60/N seconds', () => {
    let now = 0;
    const rl = new MemoryRateLimiter(
      () => 60,
      () => now,
    );
    for (let i = 0; i < 60; i++)
      expect(rl.take('k', 'messages.send')).toMatchObject({ allowed: true, limit: 60, remaining: 59 - i });
    const refused = rl.take('k', 'messages.send');
    expect(refused).toEqual({ allowed: false, limit: 60, remaining: 0, resetSeconds: 1 });
    now += 1000;
    expect(rl.take('k', 'messages.send').allowed).toBe(true);
    expect(rl.take('k', 'messages.send').allowed).toBe(false);
    // Other keys and other classes have their own buckets.
    expect(rl.take('other', 'messages.send').allowed).toBe(true);
    expect(rl.take('k', 'general').allowed).toBe(true);
  });

  test('idle full buckets are forgotten (memory stays bounded)', () => {
    let now = 0;
    const rl = new MemoryRateLimiter(
      () => 10,
      () => now,
    );
    for (let i = 0; i < 2000; i++) rl.take(`key-${i}`, 'general');
    now += 120_000;
    for (let i = 0; i < 100; i++) rl.take('live', 'general');
    expect(rl.size).toBeLessThan(1100);
  });
});

describe('over HTTP', () => {
  test('headers on every /api response; the 31st instance write in a minute gets 429 with Retry-After', async () => {
    const clock = fakeClock();
    const t = createTestGateway({}, { clock });
    const ok = await t.call('GET', '/api/v2/instances');
    expect(ok.headers.get('x-ratelimit-limit')).toBe('1000');
    expect(ok.headers.get('x-ratelimit-remaining')).toBe('999');
    expect(Number(ok.headers.get('x-ratelimit-reset'))).toBeGreaterThanOrEqual(Math.floor(clock.t / 1000));
    // Errors from handlers carry them too.
    const nf = await t.call('GET', '/api/v2/instances/nope');
    expect(nf.status).toBe(404);
    expect(nf.headers.get('x-ratelimit-remaining')).toBe('998');
    for (let i = 0; i < 30; i++) {
      const r = await t.call('POST', '/api/v2/instances', { name: `i-${i}`, channel: 'api' });
      expect(r.status).toBe(201);
      expect(r.headers.get('x-ratelimit-limit')).toBe('30');
    }
    const limited = await t.call('POST', '/api/v2/instances', { name: 'one-too-many', channel: 'api' });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('RATE_LIMITED');
    expect(limited.headers.get('retry-after')).toBe('2');
    expect(limited.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(t.gw.instances.getByName('one-too-many')).toBeNull();
    // Reads are another class and still pass; so does another key.
    expect((await t.call('GET', '/api/v2/instances')).status).toBe(200);
    const other = t.gw.keys.create({ name: 'other', scopes: ['instances:*'] }).key;
    expect(
      (await t.call('POST', '/api/v2/instances', { name: 'by-other', channel: 'api' }, { 'x-api-key': other })).status,
    ).toBe(201);
    clock.t += 2000;
    expect((await t.call('POST', '/api/v2/instances', { name: 'after-wait', channel: 'api' })).status).toBe(201);
    await t.close();
  });

  test('limits come from settings and apply at once', async () => {
    const clock = fakeClock();
    const t = createTestGateway({}, { clock });
    const set = await t.call('PATCH', '/api/v2/settings', { 'rateLimit.generalPerMinute': 3 });
    expect(set.status).toBe(200);
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await t.call('GET', '/api/v2/settings')).status);
    // The bucket shrinks to the new limit: three more requests this minute, then 429.
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect((await t.call('PATCH', '/api/v2/settings', { 'rateLimit.generalPerMinute': 0 })).status).toBe(429);
    clock.t += 60_000;
    expect((await t.call('PATCH', '/api/v2/settings', { 'rateLimit.generalPerMinute': 0 })).status).toBe(400);
    await t.close();
  });

  test('the limiter is swappable (cluster mode replaces gw.rateLimiter), including async ones', async () => {
    const t = createTestGateway();
    const seen: string[] = [];
    const custom: RateLimiter = {
      async take(key, cls) {
        seen.push(`${key}:${cls}`);
        return { allowed: false, limit: 7, remaining: 0, resetSeconds: 42 };
      },
    };
    t.gw.rateLimiter = custom;
    const r = await t.call('GET', '/api/v2/instances');
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('42');
    expect(r.headers.get('x-ratelimit-limit')).toBe('7');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toEndWith(':general');
    await t.close();
  });
});
