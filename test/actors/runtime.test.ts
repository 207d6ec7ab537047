import { describe, expect, test } from 'bun:test';
import {
  type Actor,
  Backoff,
  backoffDelay,
  Mailbox,
  MailboxClosedError,
  type StopReason,
  Supervisor,
  type SupervisorEvent,
  type SupervisorOptions,
  VirtualClock,
} from '../../actors/runtime/index.ts';

function deferred() {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// Small seeded PRNG so "random" latencies are reproducible.
function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Records what every actor instance saw; behaviour per message is supplied by the test. */
function harness<M>(
  behaviour: (key: string, msg: M, instance: number) => Promise<void>,
  overrides: Partial<SupervisorOptions<M>> = {},
) {
  const clock = (overrides.clock as VirtualClock | undefined) ?? new VirtualClock();
  const received: Array<{ key: string; msg: M; instance: number; at: number }> = [];
  const stops: Array<{ key: string; instance: number; reason: StopReason; at: number }> = [];
  const events: SupervisorEvent<M>[] = [];
  let instances = 0;
  const created: string[] = [];
  const sup = new Supervisor<M>({
    clock,
    idleMs: 1000,
    maxActive: 100,
    mailboxCapacity: 100,
    restart: { baseMs: 100, maxMs: 10_000, maxRestarts: 3 },
    random: () => 0, // no jitter: restart delays are exactly base·2^n
    onEvent: (e) => events.push(e),
    ...overrides,
    create: (key): Actor<M> => {
      const instance = ++instances;
      created.push(key);
      return {
        async receive(msg) {
          received.push({ key, msg, instance, at: clock.monotonic() });
          await behaviour(key, msg, instance);
        },
        async stop(reason) {
          stops.push({ key, instance, reason, at: clock.monotonic() });
        },
      };
    },
  });
  return { sup, clock, received, stops, events, created };
}

describe('VirtualClock', () => {
  test('fires timers in due order and runs async code chained on sleep', async () => {
    const clock = new VirtualClock(1_000_000);
    const log: string[] = [];
    clock.setTimeout(() => log.push('b@20'), 20);
    clock.setTimeout(() => log.push('a@10'), 10);
    const cancelled = clock.setTimeout(() => log.push('never'), 15);
    cancelled.cancel();
    (async () => {
      await clock.sleep(5);
      log.push(`chain1@${clock.monotonic()}`);
      await clock.sleep(10); // due at 15, registered while advancing
      log.push(`chain2@${clock.monotonic()}`);
    })();
    await clock.advance(12);
    expect(log).toEqual(['chain1@5', 'a@10']);
    expect(clock.now()).toBe(1_000_012);
    await clock.advance(10);
    expect(log).toEqual(['chain1@5', 'a@10', 'chain2@15', 'b@20']);
    expect(clock.pending()).toBe(0);
  });

  test('sleep rejects with the abort reason and its timer is removed', async () => {
    const clock = new VirtualClock();
    const ac = new AbortController();
    const p = clock.sleep(1000, ac.signal);
    expect(clock.pending()).toBe(1);
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
    expect(clock.pending()).toBe(0);
    const already = new AbortController();
    already.abort(new Error('early'));
    await expect(clock.sleep(1, already.signal)).rejects.toThrow('early');
  });

  test('runAll drains chains of timers and refuses to spin forever', async () => {
    const clock = new VirtualClock();
    let n = 0;
    (async () => {
      for (let i = 0; i < 5; i++) {
        await clock.sleep(100);
        n++;
      }
    })();
    await clock.runAll();
    expect(n).toBe(5);
    expect(clock.monotonic()).toBe(500);
    const rearm = () => clock.setTimeout(rearm, 1);
    rearm();
    await expect(clock.runAll(50)).rejects.toThrow('more than 50');
  });
});

describe('backoffDelay', () => {
  const opts = { baseMs: 100, maxMs: 5000, factor: 2, jitter: 0.2 };

  test('stays within [(1-jitter)·d, d] with d = min(max, base·factor^n), for any random value', () => {
    const rnd = seeded(7);
    for (let attempt = 0; attempt < 40; attempt++) {
      const d = Math.min(5000, 100 * 2 ** attempt);
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelay(attempt, opts, rnd);
        expect(delay).toBeGreaterThanOrEqual(0.8 * d);
        expect(delay).toBeLessThanOrEqual(d);
      }
      expect(backoffDelay(attempt, opts, () => 0)).toBe(d);
      expect(backoffDelay(attempt, opts, () => 1)).toBeCloseTo(0.8 * d, 9);
    }
  });

  test('grows exponentially until the cap and never exceeds it', () => {
    const none = { baseMs: 50, maxMs: 1000, jitter: 0 };
    expect([0, 1, 2, 3, 4, 5, 6, 1000].map((a) => backoffDelay(a, none))).toEqual([
      50, 100, 200, 400, 800, 1000, 1000, 1000,
    ]);
    // Worst-case jitter on attempt n+1 still beats the best case of attempt n (factor 2, jitter 0.2).
    expect(backoffDelay(3, opts, () => 1)).toBeGreaterThan(backoffDelay(2, opts, () => 0));
  });

  test('jitter spreads delays (defaults: factor 2, jitter 0.2)', () => {
    const values = new Set<number>();
    const rnd = seeded(42);
    for (let i = 0; i < 100; i++) values.add(Math.round(backoffDelay(4, { baseMs: 100, maxMs: 1e6 }, rnd)));
    expect(values.size).toBeGreaterThan(50);
    for (const v of values) {
      expect(v).toBeGreaterThanOrEqual(1280);
      expect(v).toBeLessThanOrEqual(1600);
    }
  });

  test('Backoff counts attempts and resets', () => {
    const b = new Backoff({ baseMs: 10, maxMs: 100, jitter: 0 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 20, 40]);
    expect(b.attempt).toBe(3);
    b.reset();
    expect(b.next()).toBe(10);
  });
});

describe('Mailbox', () => {
  test('is FIFO, bounded, and hands items to a waiting taker', async () => {
    const mb = new Mailbox<number>(3);
    expect([mb.offer(1), mb.offer(2), mb.offer(3), mb.offer(4)]).toEqual([true, true, true, false]);
    expect(mb.size).toBe(3);
    expect(await mb.take()).toBe(1);
    expect(mb.offer(5)).toBe(true);
    expect([await mb.take(), await mb.take(), await mb.take()]).toEqual([2, 3, 5]);
    const waiting = mb.take();
    mb.offer(9);
    expect(await waiting).toBe(9);
    expect(mb.size).toBe(0);
  });

  test('keeps order across many offers/polls (head compaction)', () => {
    const mb = new Mailbox<number>(5000);
    const out: number[] = [];
    for (let i = 0; i < 5000; i++) {
      expect(mb.offer(i)).toBe(true);
      if (i % 3 !== 0) out.push(mb.poll()!);
    }
    while (mb.size) out.push(mb.poll()!);
    expect(out).toEqual(Array.from({ length: 5000 }, (_, i) => i));
  });

  test('close refuses offers, rejects waiters, still yields queued items; take honours abort', async () => {
    const mb = new Mailbox<string>(2);
    const waiter = mb.take();
    mb.close();
    await expect(waiter).rejects.toBeInstanceOf(MailboxClosedError);
    expect(mb.offer('x')).toBe(false);

    const mb2 = new Mailbox<string>(2);
    mb2.offer('a');
    mb2.close();
    expect(await mb2.take()).toBe('a');
    await expect(mb2.take()).rejects.toBeInstanceOf(MailboxClosedError);

    const mb3 = new Mailbox<string>(2);
    const ac = new AbortController();
    const aborted = mb3.take(ac.signal);
    ac.abort(new Error('gone'));
    await expect(aborted).rejects.toThrow('gone');
    expect(mb3.offer('b')).toBe(true); // the aborted taker did not swallow it
    expect(mb3.size).toBe(1);
  });
});

describe('Supervisor', () => {
  test('messages to one key are handled one at a time, in order, despite random latency', async () => {
    const rnd = seeded(3);
    const inFlight = new Map<string, number>();
    let overlap = false;
    const { sup, clock, received } = harness<number>(async (key) => {
      const n = (inFlight.get(key) ?? 0) + 1;
      inFlight.set(key, n);
      if (n > 1) overlap = true;
      await clock.sleep(1 + Math.floor(rnd() * 50));
      inFlight.set(key, n - 1);
    });
    for (let i = 0; i < 50; i++) {
      expect(sup.tell('chat-a', i)).toBe(true);
      expect(sup.tell('chat-b', 1000 + i)).toBe(true);
    }
    await clock.runAll();
    expect(overlap).toBe(false);
    expect(received.filter((r) => r.key === 'chat-a').map((r) => r.msg)).toEqual([...Array(50).keys()]);
    expect(received.filter((r) => r.key === 'chat-b').map((r) => r.msg)).toEqual(
      Array.from({ length: 50 }, (_, i) => 1000 + i),
    );
  });

  test('different keys run concurrently', async () => {
    let concurrent = 0;
    let maxConcurrent = 0;
    const done: string[] = [];
    const { sup, clock } = harness<string>(async (key) => {
      maxConcurrent = Math.max(maxConcurrent, ++concurrent);
      await clock.sleep(100);
      concurrent--;
      done.push(key);
    });
    sup.tell('a', 'm');
    sup.tell('b', 'm');
    await clock.advance(0);
    expect(sup.stats().busy).toBe(2);
    await clock.advance(100);
    // Both finished after one latency, not two.
    expect(done.sort()).toEqual(['a', 'b']);
    expect(maxConcurrent).toBe(2);
    expect(sup.stats().busy).toBe(0);
  });

  test('a full mailbox makes tell return false for that key only', async () => {
    const gate = deferred();
    const { sup, clock, received } = harness<number>(
      async (key) => {
        if (key === 'slow') await gate.promise;
      },
      { mailboxCapacity: 2 },
    );
    expect(sup.tell('slow', 1)).toBe(true);
    await clock.advance(0); // 1 is now in flight, the mailbox is empty
    expect(sup.tell('slow', 2)).toBe(true);
    expect(sup.tell('slow', 3)).toBe(true);
    expect(sup.tell('slow', 4)).toBe(false);
    expect(sup.tell('other', 1)).toBe(true);
    gate.resolve();
    await clock.advance(0);
    expect(received.filter((r) => r.key === 'slow').map((r) => r.msg)).toEqual([1, 2, 3]);
    expect(sup.tell('slow', 5)).toBe(true);
  });

  test('an idle actor is passivated after idleMs, a busy one is not, and comes back fresh on demand', async () => {
    const { sup, clock, stops, created, events } = harness<string>(
      async (_key, msg) => {
        if (msg === 'long') await clock.sleep(5000);
      },
      { idleMs: 1000 },
    );
    sup.tell('idle', 'hi');
    sup.tell('busy', 'long');
    await clock.advance(999);
    expect(sup.has('idle')).toBe(true);
    expect(stops).toEqual([]);
    await clock.advance(600); // the sweeper runs every idleMs/2, so by 1.5·idleMs it is gone
    expect(sup.has('idle')).toBe(false);
    expect(stops.map((s) => [s.key, s.instance, s.reason])).toEqual([['idle', 1, 'passivate']]);
    expect(stops[0].at).toBeGreaterThanOrEqual(1000);
    expect(stops[0].at).toBeLessThanOrEqual(1500);
    expect(events).toContainEqual({ type: 'passivated', key: 'idle', cause: 'idle' });
    await clock.advance(3000); // t = 4599
    expect(sup.has('busy')).toBe(true); // still inside its 5 s receive
    await clock.advance(1399); // t = 5998
    expect(sup.has('busy')).toBe(true); // finished at 5000, idle for less than idleMs
    await clock.advance(600); // t = 6598
    expect(sup.has('busy')).toBe(false);
    expect(sup.stats()).toMatchObject({ active: 0, passivated: 2 });
    expect(clock.pending()).toBe(0); // no timers left once nothing is active

    sup.tell('idle', 'again');
    await clock.advance(0);
    expect(created).toEqual(['idle', 'busy', 'idle']);
  });

  test('LRU cap passivates the least recently used idle actor, never a busy one', async () => {
    const gates = new Map<string, ReturnType<typeof deferred>>();
    const { sup, clock, stops, events } = harness<string>(
      async (key, msg) => {
        if (msg === 'block') {
          const g = deferred();
          gates.set(key, g);
          await g.promise;
        }
      },
      { maxActive: 2 },
    );
    sup.tell('a', 'x');
    await clock.advance(10);
    sup.tell('b', 'x');
    await clock.advance(10);
    sup.tell('a', 'x'); // a is now more recent than b
    await clock.advance(10);
    sup.tell('c', 'x');
    await clock.advance(0);
    expect(sup.activeKeys().sort()).toEqual(['a', 'c']);
    expect(stops.map((s) => [s.key, s.reason])).toEqual([['b', 'passivate']]);
    expect(events).toContainEqual({ type: 'passivated', key: 'b', cause: 'lru' });

    // a is least recently used but busy: c (idle) goes instead.
    sup.tell('a', 'block');
    await clock.advance(0);
    sup.tell('d', 'x');
    await clock.advance(0);
    expect(sup.activeKeys().sort()).toEqual(['a', 'd']);
    expect(stops.map((s) => s.key)).toEqual(['b', 'c']);

    // Everyone busy: the cap is exceeded temporarily and reported.
    sup.tell('d', 'block');
    await clock.advance(0);
    sup.tell('e', 'x');
    await clock.advance(0);
    expect(sup.stats().active).toBe(3);
    expect(events).toContainEqual({ type: 'over-capacity', active: 3, maxActive: 2 });
    expect(stops.map((s) => s.key)).toEqual(['b', 'c']);

    gates.get('a')!.resolve();
    gates.get('d')!.resolve();
    await clock.advance(0);
    sup.tell('f', 'x'); // now idle actors exist again and are evicted down to the cap
    await clock.advance(0);
    expect(sup.stats().active).toBe(2);
    expect(sup.has('f')).toBe(true);
  });

  test('a failing actor is restarted after growing backoff delays and gets the same message first', async () => {
    let failuresLeft = 2;
    const { sup, clock, received, stops, created, events } = harness<string>(async (_key, msg) => {
      if (msg === 'x' && failuresLeft > 0) {
        failuresLeft--;
        throw new Error('boom');
      }
    });
    sup.tell('k', 'x');
    sup.tell('k', 'y');
    sup.tell('k', 'z');
    await clock.advance(0);
    expect(created.length).toBe(1);
    expect(stops.map((s) => s.reason)).toEqual(['restart']);
    await clock.advance(99);
    expect(created.length).toBe(1); // first delay is baseMs = 100
    await clock.advance(1);
    expect(created.length).toBe(2);
    await clock.advance(199);
    expect(created.length).toBe(2); // second delay doubles to 200
    await clock.advance(1);
    expect(created.length).toBe(3);
    expect(received.map((r) => [r.msg, r.instance, r.at])).toEqual([
      ['x', 1, 0],
      ['x', 2, 100],
      ['x', 3, 300],
      ['y', 3, 300],
      ['z', 3, 300],
    ]);
    expect(sup.stats().restarts).toBe(2);
    expect(events.filter((e) => e.type === 'failed').map((e) => (e as { delayMs: number }).delayMs)).toEqual([
      100, 200,
    ]);

    // A success reset the count: the next failure waits baseMs again.
    failuresLeft = 1;
    sup.tell('k', 'x');
    await clock.advance(0);
    expect(created.length).toBe(3);
    await clock.advance(100);
    expect(created.length).toBe(4);
  });

  test('after maxRestarts restarts the message is dropped with an event and the next one proceeds', async () => {
    const { sup, clock, received, events } = harness<string>(
      async (_key, msg) => {
        if (msg === 'poison') throw new Error('bad input');
      },
      { restart: { baseMs: 100, maxMs: 150, maxRestarts: 2 } },
    );
    sup.tell('k', 'poison');
    sup.tell('k', 'fine');
    await clock.advance(0);
    await clock.advance(100); // restart 1
    await clock.advance(149);
    expect(received.map((r) => r.msg)).toEqual(['poison', 'poison']);
    await clock.advance(1); // restart 2 (capped at maxMs = 150), fails a third time → dropped
    expect(received.map((r) => r.msg)).toEqual(['poison', 'poison', 'poison', 'fine']);
    const dropped = events.filter((e) => e.type === 'dropped');
    expect(dropped.length).toBe(1);
    expect(dropped[0]).toMatchObject({ type: 'dropped', key: 'k', msg: 'poison' });
    expect((dropped[0] as { error: Error }).error.message).toBe('bad input');
    expect(sup.stats().restarts).toBe(2);
  });

  test('shutdown refuses new messages, waits for the in-flight receive, then stops every actor', async () => {
    const gate = deferred();
    const order: string[] = [];
    const { sup, clock, received, stops } = harness<string>(async (key, msg) => {
      if (key === 'busy' && msg === 'first') {
        await gate.promise;
        order.push('receive finished');
      }
    });
    sup.tell('busy', 'first');
    sup.tell('busy', 'queued');
    sup.tell('idle', 'x');
    await clock.advance(0);
    let shutDown = false;
    const p = sup.shutdown().then(() => {
      shutDown = true;
      order.push('shutdown resolved');
    });
    await clock.advance(0);
    expect(shutDown).toBe(false);
    expect(sup.tell('busy', 'late')).toBe(false);
    expect(stops.find((s) => s.key === 'busy')).toBeUndefined();
    gate.resolve();
    await p;
    expect(order).toEqual(['receive finished', 'shutdown resolved']);
    expect(stops.map((s) => [s.key, s.reason]).sort()).toEqual([
      ['busy', 'shutdown'],
      ['idle', 'shutdown'],
    ]);
    expect(received.map((r) => r.msg)).not.toContain('queued');
    expect(sup.stats().active).toBe(0);
  });

  test('shutdown cuts a restart delay short', async () => {
    const { sup, clock, created } = harness<string>(
      async () => {
        throw new Error('down');
      },
      { restart: { baseMs: 60_000, maxMs: 60_000, maxRestarts: 5 } },
    );
    sup.tell('k', 'm');
    await clock.advance(0);
    await sup.shutdown(); // would hang for a virtual minute if the delay were not aborted
    expect(created.length).toBe(1);
    expect(clock.pending()).toBe(0);
  });

  test('passivate(key) stops an idle actor on demand and refuses a busy one', async () => {
    const gate = deferred();
    const { sup, clock, stops } = harness<string>(async (_key, msg) => {
      if (msg === 'block') await gate.promise;
    });
    sup.tell('idle', 'x');
    sup.tell('busy', 'block');
    await clock.advance(0);
    expect(await sup.passivate('busy')).toBe(false);
    expect(await sup.passivate('idle')).toBe(true);
    expect(await sup.passivate('missing')).toBe(false);
    expect(stops.map((s) => [s.key, s.reason])).toEqual([['idle', 'passivate']]);
    expect(sup.activeKeys()).toEqual(['busy']);
    expect(sup.stats().passivated).toBe(1);
    gate.resolve();
  });

  test('a message for a key whose previous instance is still stopping waits for that stop', async () => {
    const stopGate = deferred();
    const log: string[] = [];
    const clock = new VirtualClock();
    let n = 0;
    const sup = new Supervisor<string>({
      clock,
      idleMs: 1000,
      maxActive: 10,
      mailboxCapacity: 10,
      restart: { baseMs: 10, maxMs: 10, maxRestarts: 1 },
      create: () => {
        const id = ++n;
        return {
          async receive(msg) {
            log.push(`receive ${msg} by #${id}`);
          },
          async stop() {
            log.push(`stop #${id} begins`);
            await stopGate.promise;
            log.push(`stop #${id} done`);
          },
        };
      },
    });
    sup.tell('k', 'one');
    await clock.advance(0);
    const passivated = sup.passivate('k');
    sup.tell('k', 'two');
    await clock.advance(0);
    expect(log).toEqual(['receive one by #1', 'stop #1 begins']);
    stopGate.resolve();
    await passivated;
    await clock.advance(0);
    expect(log).toEqual(['receive one by #1', 'stop #1 begins', 'stop #1 done', 'receive two by #2']);
  });

  test('10,000 idle actors share one sweeper timer and are all passivated', async () => {
    const { sup, clock } = harness<number>(async () => {}, { maxActive: 20_000, idleMs: 1000 });
    for (let i = 0; i < 10_000; i++) sup.tell(`chat-${i}`, i);
    await clock.advance(0);
    expect(sup.stats()).toMatchObject({ active: 10_000, busy: 0 });
    expect(clock.pending()).toBe(1);
    await clock.advance(1500);
    expect(sup.stats()).toMatchObject({ active: 0, passivated: 10_000 });
  });
});
