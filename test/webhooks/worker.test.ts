// The delivery worker on its own: an in-memory database, the virtual clock, and receivers that are
// functions (the fetch the worker is given) verifying every request with the standardwebhooks
// library. Backoff schedule, Retry-After, 410, the retry period, order per conversation, a slow
// subscriber next to a fast one, signatures during a secret rotation.
import { describe, expect, test } from 'bun:test';
import { Webhook } from 'standardwebhooks';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import { openDatabase } from '../../db/open.ts';
import { silentLogger } from '../../src/log.ts';
import { DeliveryOutbox } from '../../src/webhooks/outbox.ts';
import { SubscriptionStore } from '../../src/webhooks/subscriptions.ts';
import type { WebhookEvent } from '../../src/webhooks/types.ts';
import { DeliveryWorker, type WorkerOptions } from '../../src/webhooks/worker.ts';

interface Received {
  url: string;
  id: string;
  body: { type: string; timestamp: string; data: Record<string, unknown> };
  at: number;
  signatures: string[];
}

type Answer = (r: Received, signal: AbortSignal) => Response | Promise<Response>;

function setup(opts: Partial<WorkerOptions> = {}, clock = new VirtualClock()) {
  const db = openDatabase(':memory:');
  const subs = new SubscriptionStore(db, clock);
  const outbox = new DeliveryOutbox(db, clock, subs);
  const received: Received[] = [];
  const answers = new Map<string, Answer>();
  const secrets = new Map<string, string[]>();
  const redirectModes: string[] = [];
  const fakeFetch = (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = String(input);
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    const body = String(init.body);
    // Every request must verify with (each of) the subscription's secrets, as a receiver would.
    for (const s of secrets.get(url) ?? []) new Webhook(s).verify(body, headers);
    redirectModes.push(String(init.redirect));
    const r: Received = {
      url,
      id: headers['webhook-id'],
      body: JSON.parse(body),
      at: clock.now() - Date.UTC(2025, 0, 1),
      signatures: headers['webhook-signature'].split(' '),
    };
    received.push(r);
    return (answers.get(url) ?? (() => new Response('ok')))(r, init.signal!);
  }) as typeof fetch;
  const worker = new DeliveryWorker(outbox, subs, fakeFetch, clock, silentLogger, {
    retryPeriodMs: 86_400_000,
    retentionMs: 7 * 86_400_000,
    retryBaseMs: 1000,
    retryMaxMs: 60_000,
    pollMs: 60_000,
    random: () => 0,
    ...opts,
  });
  const subscribe = (url: string, answer?: Answer, events: string[] = []) => {
    const s = subs.create({ url, events });
    secrets.set(url, [s.secret]);
    if (answer) answers.set(url, answer);
    return s;
  };
  let n = 0;
  const record = (orderKey: string, type: WebhookEvent['type'] = 'message.received', data = {}) => {
    const id = `msg_${++n}`;
    db.transaction(() =>
      outbox.record({
        type,
        msgId: id,
        orderKey,
        instanceId: 'inst',
        at: new Date().toISOString(),
        data: { n, ...data },
      }),
    )();
    worker.kick();
    return id;
  };
  /** Lets promises (fake fetch, body reads) and zero-delay virtual timers run. */
  const settle = async () => {
    for (let i = 0; i < 20; i++) {
      await clock.advance(0);
      await Bun.sleep(0);
    }
  };
  const advance = async (ms: number) => {
    await clock.advance(ms);
    await settle();
  };
  return { db, clock, subs, outbox, worker, received, secrets, redirectModes, subscribe, record, settle, advance };
}

describe('delivery worker', () => {
  test('500 then 200: exponential backoff on the clock, the same webhook-id and body every time', async () => {
    const w = setup();
    let calls = 0;
    const sub = w.subscribe(
      'http://receiver.test/hook',
      () => new Response('no', { status: ++calls <= 3 ? 500 : 200 }),
    );
    const id = w.record('conv-1');
    w.worker.start();
    await w.settle();
    for (const step of [1000, 2000, 4000]) await w.advance(step);
    expect(w.received.map((r) => r.at)).toEqual([0, 1000, 3000, 7000]);
    expect(new Set(w.received.map((r) => r.id))).toEqual(new Set([id]));
    expect(new Set(w.received.map((r) => JSON.stringify(r.body))).size).toBe(1);
    const [d] = w.outbox.list(sub.id, { limit: 10 });
    expect(d).toMatchObject({ status: 'delivered', attempts: 4, last_status_code: 200, last_error: null });
    await w.worker.stop();
  });

  test('jitter shortens a retry by at most half of its backoff', async () => {
    const w = setup({ random: () => 1 });
    let calls = 0;
    w.subscribe('http://receiver.test/hook', () => new Response('', { status: ++calls <= 2 ? 503 : 204 }));
    w.record('c');
    w.worker.start();
    await w.settle();
    await w.advance(500); // half of 1000
    await w.advance(1000); // half of 2000
    expect(w.received.map((r) => r.at)).toEqual([0, 500, 1500]);
    await w.worker.stop();
  });

  test('429 with Retry-After: the next attempt waits exactly that long', async () => {
    const w = setup();
    let calls = 0;
    w.subscribe('http://receiver.test/hook', () =>
      ++calls === 1 ? new Response('slow down', { status: 429, headers: { 'retry-after': '7' } }) : new Response('ok'),
    );
    w.record('c');
    w.worker.start();
    await w.settle();
    await w.advance(6999);
    expect(w.received).toHaveLength(1);
    await w.advance(1);
    expect(w.received.map((r) => r.at)).toEqual([0, 7000]);
    await w.worker.stop();
  });

  test('410 Gone disables the subscription; queued events wait, and go out once it is enabled again', async () => {
    const w = setup();
    let gone = true;
    const sub = w.subscribe('http://receiver.test/hook', () => new Response('', { status: gone ? 410 : 200 }));
    w.record('c');
    w.record('c'); // the same conversation: waits behind the first
    w.worker.start();
    await w.settle();
    expect(w.subs.get(sub.id)).toMatchObject({ active: 0, disabled_reason: 'the receiver answered 410 Gone' });
    expect(w.outbox.list(sub.id, { limit: 5 })[1]).toMatchObject({ status: 'failed', last_status_code: 410 });
    // While disabled: the queued second event waits, and new events are not queued for it.
    w.record('e');
    await w.advance(60_000);
    expect(w.received).toHaveLength(1);
    expect(w.outbox.list(sub.id, { limit: 5 })).toHaveLength(2);
    gone = false;
    w.subs.update(sub.id, { active: true });
    w.worker.kick();
    await w.settle();
    expect(w.received).toHaveLength(2);
    expect(w.received[1].body.data.n).toBe(2);
    expect(w.subs.get(sub.id)).toMatchObject({ active: 1, disabled_reason: null });
    await w.worker.stop();
  });

  test('failing for the whole retry period: the delivery is given up and the subscription disabled', async () => {
    const w = setup({ retryPeriodMs: 30_000, retryMaxMs: 8000 });
    const sub = w.subscribe('http://receiver.test/hook', () => new Response('', { status: 500 }));
    w.record('c');
    w.worker.start();
    await w.settle();
    for (let i = 0; i < 10; i++) await w.advance(8000);
    const [d] = w.outbox.list(sub.id, { limit: 5 });
    expect(d.status).toBe('failed');
    // 0, 1, 3, 7, 15, 23, 31 s: the first attempt past the 30 s period is the last one.
    expect(w.received.map((r) => r.at)).toEqual([0, 1000, 3000, 7000, 15_000, 23_000, 31_000]);
    expect(w.subs.get(sub.id)?.active).toBe(0);
    expect(w.subs.get(sub.id)?.disabled_reason).toContain('every delivery failed for the retry period');
    await w.worker.stop();
  });

  test('the retry period runs from the first attempt: an event queued behind a failing one gets its own', async () => {
    const w = setup({ retryPeriodMs: 30_000, retryMaxMs: 8000 });
    let secondTries = 0;
    const sub = w.subscribe('http://receiver.test/hook', (r) => {
      const n = r.body.data.n;
      const ok = n === 3 || (n === 2 && ++secondTries > 1);
      return new Response('', { status: ok ? 200 : 500 });
    });
    w.record('c'); // n = 1: fails for its whole period
    w.record('c'); // n = 2: same conversation, waits behind it; its first attempt fails
    w.record('d'); // n = 3: another conversation, delivered (the subscription stays enabled)
    w.worker.start();
    await w.settle();
    for (let i = 0; i < 20; i++) await w.advance(8000);
    const byN = new Map(w.outbox.list(sub.id, { limit: 5 }).map((d) => [JSON.parse(d.payload_json).data.n, d]));
    // The second was first tried when the first gave up, 31 s after it was written: it is retried, not given up.
    expect([byN.get(1)?.status, byN.get(2)?.status, byN.get(2)?.attempts, byN.get(3)?.status]).toEqual([
      'failed',
      'delivered',
      2,
      'delivered',
    ]);
    await w.worker.stop();
  });

  test('a given-up delivery does not disable a subscription that had successes meanwhile', async () => {
    const w = setup({ retryPeriodMs: 10_000, retryMaxMs: 4000 });
    const sub = w.subscribe(
      'http://receiver.test/hook',
      (r) => new Response('', { status: r.body.data.n === 1 ? 500 : 200 }),
    );
    w.record('a');
    w.worker.start();
    await w.settle();
    w.record('b'); // another conversation: not held up by a's retries, and it succeeds
    await w.settle();
    for (let i = 0; i < 5; i++) await w.advance(4000);
    const rows = w.outbox.list(sub.id, { limit: 5 });
    expect(rows.map((r) => r.status).sort()).toEqual(['delivered', 'failed']);
    expect(w.subs.get(sub.id)?.active).toBe(1);
    await w.worker.stop();
  });

  test('redirects are not followed (the request asks for manual redirects; a 3xx is a failure)', async () => {
    const w = setup();
    const sub = w.subscribe(
      'http://receiver.test/hook',
      () => new Response('', { status: 302, headers: { location: 'http://169.254.169.254/' } }),
    );
    w.record('c');
    w.worker.start();
    await w.settle();
    expect(w.redirectModes).toEqual(['manual']);
    expect(w.outbox.list(sub.id, { limit: 1 })[0]).toMatchObject({
      status: 'pending',
      last_status_code: 302,
      last_error: 'HTTP 302 (redirects are not followed)',
    });
    await w.worker.stop();
  });

  test('no answer within the timeout is a failed attempt, retried', async () => {
    const w = setup();
    const sub = w.subscribe(
      'http://receiver.test/hook',
      (_r, signal) =>
        new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    );
    w.record('c');
    w.worker.start();
    await w.settle();
    await w.advance(10_000);
    expect(w.outbox.list(sub.id, { limit: 1 })[0]).toMatchObject({
      status: 'pending',
      attempts: 1,
      last_error: 'no answer within 10 s',
    });
    await w.worker.stop();
  });

  test('order per conversation under concurrency: a later event waits for the earlier one; conversations do not', async () => {
    const w = setup({ retryBaseMs: 50, retryMaxMs: 200 });
    const delivered = new Map<string, number[]>();
    let inFlight = 0;
    let maxInFlight = 0;
    let calls = 0;
    w.subscribe('http://receiver.test/hook', async (r) => {
      const { conv, i } = r.body.data as { conv: string; i: number };
      // Nothing of a conversation is sent before everything earlier of it was accepted.
      expect(delivered.get(conv) ?? []).toEqual(Array.from({ length: i }, (_, k) => k));
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await w.clock.sleep(1 + (calls % 7) * 3);
      inFlight--;
      if (++calls % 5 === 0) return new Response('', { status: 500 });
      delivered.set(conv, [...(delivered.get(conv) ?? []), i]);
      return new Response('ok');
    });
    const convs = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (let i = 0; i < 8; i++) for (const conv of convs) w.record(conv, 'message.received', { conv, i });
    w.worker.start();
    for (let t = 0; t < 400 && [...delivered.values()].flat().length < 48; t++) await w.advance(10);
    for (const conv of convs) expect(delivered.get(conv)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(maxInFlight).toBeGreaterThanOrEqual(convs.length);
    await w.worker.stop();
  });

  test('a slow subscriber next to a fast one: the fast one gets everything at once', async () => {
    const w = setup({ perSubscription: 4 });
    const slow = w.subscribe(
      'http://slow.test/hook',
      (_r, signal) =>
        new Promise<Response>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
    );
    const fast = w.subscribe('http://fast.test/hook');
    for (let i = 0; i < 30; i++) w.record(`conv-${i}`);
    w.worker.start();
    await w.settle();
    const fastGot = w.received.filter((r) => r.url === 'http://fast.test/hook');
    expect(fastGot).toHaveLength(30);
    expect(w.outbox.list(fast.id, { limit: 50, status: 'delivered' })).toHaveLength(30);
    // The slow one holds only its own share of the slots.
    expect(w.received.filter((r) => r.url === 'http://slow.test/hook')).toHaveLength(4);
    expect(w.worker.busy).toBe(4);
    await w.advance(10_000);
    expect(w.outbox.list(slow.id, { limit: 50 }).filter((d) => d.attempts === 1)).toHaveLength(4);
    await w.worker.stop();
  });

  test('rotation: both secrets sign during the grace period, then only the new one', async () => {
    const w = setup();
    const sub = w.subscribe('http://receiver.test/hook');
    const old = sub.secret;
    const rotated = w.subs.rotate(sub.id, 60_000);
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(old);
    // The receiver must verify with either secret alone.
    w.secrets.set('http://receiver.test/hook', [old, rotated.secret]);
    w.record('c');
    w.worker.start();
    await w.settle();
    expect(w.received[0].signatures).toHaveLength(2);
    await w.advance(60_000);
    w.secrets.set('http://receiver.test/hook', [rotated.secret]);
    w.record('c');
    await w.settle();
    expect(w.received).toHaveLength(2);
    expect(w.received[1].signatures).toHaveLength(1);
    const headers = { 'webhook-id': w.received[1].id, 'webhook-timestamp': '0', 'webhook-signature': '' };
    expect(() => new Webhook(old).verify('{}', headers)).toThrow();
    await w.worker.stop();
  });

  test('event filters and instance filters decide which subscriptions get a row', () => {
    const w = setup();
    const all = w.subscribe('http://all.test/');
    const sent = w.subscribe('http://sent.test/', undefined, ['message.sent']);
    const other = w.subs.create({ url: 'http://other.test/', instanceIds: ['another'] });
    w.record('c', 'message.received');
    w.record('c', 'message.sent');
    expect(w.outbox.list(all.id, { limit: 10 })).toHaveLength(2);
    expect(w.outbox.list(sent.id, { limit: 10 }).map((d) => d.event_type)).toEqual(['message.sent']);
    expect(w.outbox.list(other.id, { limit: 10 })).toHaveLength(0);
  });

  test('finished deliveries past retention are pruned', async () => {
    const w = setup({ retentionMs: 3_600_000 });
    const sub = w.subscribe('http://receiver.test/hook');
    w.record('c');
    w.worker.start();
    await w.settle();
    expect(w.outbox.list(sub.id, { limit: 5 })).toHaveLength(1);
    await w.advance(2 * 3_600_000);
    expect(w.outbox.list(sub.id, { limit: 5 })).toHaveLength(0);
    await w.worker.stop();
  });
});
