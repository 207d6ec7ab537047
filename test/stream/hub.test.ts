import { afterEach, describe, expect, test } from 'bun:test';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Elysia } from 'elysia';
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import { StreamHub, type StreamPrincipal, type StreamSocket, WS_CLOSE_IDLE } from '../../src/stream/hub.ts';
import { wsRoutes } from '../../src/stream/ws.ts';

// ---------------------------------------------------------------- helpers

/** Time moves only when the test says so. */
class ManualClock implements Clock {
  private t = 0;
  private timers: { at: number; fn: () => void; cancelled: boolean }[] = [];
  now() {
    return 1_700_000_000_000 + this.t;
  }
  monotonic() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const timer = { at: this.t + ms, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => void (timer.cancelled = true) };
  }
  async sleep(ms: number) {
    await new Promise<void>((r) => this.setTimeout(r, ms));
  }
  advance(ms: number) {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => !x.cancelled && x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.t = due.at;
      due.cancelled = true;
      due.fn();
    }
    this.t = end;
    this.timers = this.timers.filter((x) => !x.cancelled);
  }
}

/** A socket whose send result the test controls (Bun: -1 = backpressured, 0 = dropped). */
class FakeSocket implements StreamSocket {
  frames: any[] = [];
  sendResult = 100;
  closed: { code?: number; reason?: string } | null = null;
  pings = 0;
  send(data: string) {
    this.frames.push(JSON.parse(data));
    return this.sendResult;
  }
  close(code?: number, reason?: string) {
    this.closed = { code, reason };
  }
  ping() {
    this.pings++;
  }
  events() {
    return this.frames.filter((f) => f.type === 'event').map((f) => f.payload);
  }
}

const ALL: StreamPrincipal = { instanceIds: null };
const turnA = { instanceId: 'inst-a', conversationId: 'conv-a', turnId: 'turn-a1', messageId: 'msg-a1' };
const turnB = { instanceId: 'inst-b', conversationId: 'conv-b', turnId: 'turn-b1', messageId: 'msg-b1' };

function subscribe(handle: { onMessage(m: unknown): void }, filters: Record<string, string> = {}) {
  handle.onMessage(JSON.stringify({ type: 'subscribe', channels: ['conversations', 'events'], filters }));
}

function expectGapFree(payloads: { seq: number }[]) {
  const seqs = payloads.map((p) => p.seq);
  expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
}

const servers: { stop(force?: boolean): unknown }[] = [];
const hubs: StreamHub[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
  for (const h of hubs.splice(0)) h.close();
});

const KEYS: Record<string, StreamPrincipal> = {
  'sk-admin': { instanceIds: null },
  'sk-only-a': { instanceIds: ['inst-a'] },
};

function startServer(hubOpts: ConstructorParameters<typeof StreamHub>[0] = {}) {
  const hub = new StreamHub({ keepaliveMs: 0, ...hubOpts });
  hubs.push(hub);
  const app = new Elysia()
    .use(wsRoutes({ hub, authenticate: (key) => (key ? (KEYS[key] ?? null) : null) }))
    .listen({ port: 0, hostname: '127.0.0.1' });
  servers.push(app.server!);
  return { hub, url: `ws://127.0.0.1:${app.server!.port}/ws` };
}

/** A real Bun WebSocket client that records every frame. */
async function connect(url: string, init?: { headers?: Record<string, string> }) {
  const ws = new WebSocket(url, init as any);
  const frames: any[] = [];
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason }));
  });
  ws.addEventListener('message', (e) => frames.push(JSON.parse(String(e.data))));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error('ws error')), { once: true });
  });
  const waitFor = async (pred: (frames: any[]) => boolean, what: string, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (!pred(frames)) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(frames).slice(0, 500)}`);
      await Bun.sleep(2);
    }
  };
  const sendJson = async (msg: unknown, ack: string) => {
    const before = frames.length;
    ws.send(JSON.stringify(msg));
    await waitFor((f) => f.slice(before).some((x) => x.type === ack || x.type === 'error'), ack);
  };
  return {
    ws,
    frames,
    closed,
    waitFor,
    sendJson,
    events: () => frames.filter((f) => f.type === 'event').map((f) => f.payload),
  };
}

// ---------------------------------------------------------------- /ws authentication

describe('/ws authentication', () => {
  test('a wrong or missing key is accepted then closed with 4401', async () => {
    const { url } = startServer();
    const wrong = await connect(`${url}?apiKey=sk-nope`);
    expect((await wrong.closed).code).toBe(4401);
    const missing = await connect(url);
    expect((await missing.closed).code).toBe(4401);
  });

  test('the key is accepted from the x-api-key header and from ?apiKey=', async () => {
    const { hub, url } = startServer();
    const byHeader = await connect(url, { headers: { 'x-api-key': 'sk-admin' } });
    const byQuery = await connect(`${url}?apiKey=sk-only-a`);
    await byHeader.sendJson({ type: 'ping' }, 'pong');
    await byQuery.sendJson({ type: 'ping' }, 'pong');
    expect(hub.stats().clients).toBe(2);
    byHeader.ws.close();
    await byHeader.closed;
    await Bun.sleep(20);
    expect(hub.stats().clients).toBe(1);
    byQuery.ws.close();
  });

  test('bad JSON and unknown channels get a VALIDATION_ERROR frame, the socket stays open', async () => {
    const { url } = startServer();
    const c = await connect(`${url}?apiKey=sk-admin`);
    c.ws.send('{not json');
    await c.waitFor((f) => f.some((x) => x.type === 'error'), 'error');
    expect(c.frames[0]).toEqual({ type: 'error', error: { code: 'VALIDATION_ERROR', message: expect.any(String) } });
    await c.sendJson({ type: 'subscribe', channels: ['weather'] }, 'subscribed');
    expect(c.frames.at(-1).error.code).toBe('VALIDATION_ERROR');
    await c.sendJson({ type: 'ping' }, 'pong');
    c.ws.close();
  });
});

// ---------------------------------------------------------------- live stream through a real socket

describe('live stream over /ws', () => {
  test('ordered AG-UI frames with gap-free seq whose deltas add up to the final reply', async () => {
    const { hub, url } = startServer({ coalesceMs: 5 });
    const c = await connect(`${url}?apiKey=sk-admin`);
    await c.sendJson(
      { type: 'subscribe', channels: ['conversations'], filters: { conversationId: 'conv-a' } },
      'subscribed',
    );

    const words = Array.from({ length: 300 }, (_, i) => `word${i} `);
    const finalText = words.join('');
    hub.runStarted(turnA);
    for (let i = 0; i < words.length; i++) {
      hub.delta(turnA.turnId, words[i]!);
      if (i % 20 === 0) await Bun.sleep(8); // let some coalescing windows close mid-stream
    }
    hub.runFinished(turnA.turnId, finalText);
    await c.waitFor((f) => f.some((x) => x.payload?.type === 'RUN_FINISHED'), 'RUN_FINISHED');

    const events = c.events();
    expect(c.frames.filter((f) => f.type === 'event').every((f) => f.channel === 'conversations')).toBe(true);
    expect(events[0]).toMatchObject({
      type: 'RUN_STARTED',
      conversationId: 'conv-a',
      turnId: 'turn-a1',
      instanceId: 'inst-a',
      seq: 1,
    });
    expect(events[1]).toMatchObject({ type: 'TEXT_MESSAGE_START', messageId: 'msg-a1', role: 'assistant' });
    expect(events.at(-2)).toMatchObject({ type: 'TEXT_MESSAGE_END', messageId: 'msg-a1' });
    expect(events.at(-1)).toMatchObject({ type: 'RUN_FINISHED', result: { text: finalText } });
    expectGapFree(events);
    const content = events.filter((e) => e.type === 'TEXT_MESSAGE_CONTENT');
    expect(content.map((e) => e.delta).join('')).toBe(finalText);
    // Coalescing: 300 deltas arrive in far fewer frames.
    expect(content.length).toBeLessThan(words.length / 5);
    c.ws.close();
  });

  test('an instance-bound key never sees another instance and cannot filter for it', async () => {
    const { hub, url } = startServer({ coalesceMs: 0 });
    const bound = await connect(`${url}?apiKey=sk-only-a`);
    const admin = await connect(`${url}?apiKey=sk-admin`);
    await bound.sendJson(
      { type: 'subscribe', channels: ['conversations', 'instances'], filters: { instanceId: 'inst-b' } },
      'subscribed',
    );
    expect(bound.frames.at(-1)).toMatchObject({ type: 'error', error: { code: 'FORBIDDEN' } });
    await bound.sendJson({ type: 'subscribe', channels: ['conversations', 'instances'] }, 'subscribed');
    await admin.sendJson({ type: 'subscribe', channels: ['conversations', 'instances'] }, 'subscribed');

    for (const t of [turnB, turnA]) {
      hub.runStarted(t);
      hub.delta(t.turnId, `secret of ${t.instanceId}`);
      hub.runFinished(t.turnId, `secret of ${t.instanceId}`);
    }
    hub.publishEvent('instances', { instanceId: 'inst-b', status: 'connected' }, { instanceId: 'inst-b' });
    hub.publishEvent('instances', { instanceId: 'inst-a', status: 'connected' }, { instanceId: 'inst-a' });
    await admin.waitFor((f) => f.filter((x) => x.channel === 'instances').length === 2, 'both instance events');
    await bound.waitFor((f) => f.some((x) => x.channel === 'instances'), 'own instance event');
    await Bun.sleep(20);

    expect(bound.events().map((e) => e.instanceId)).toEqual(bound.events().map(() => 'inst-a'));
    expect(JSON.stringify(bound.frames.filter((f) => f.type !== 'error'))).not.toContain('inst-b');
    expect(bound.events().filter((e) => e.type === 'RUN_FINISHED')).toHaveLength(1);
    expect(admin.events().filter((e) => e.type === 'RUN_FINISHED')).toHaveLength(2);
    bound.ws.close();
    admin.ws.close();
  });

  test('a client that subscribes mid-turn gets the snapshot first, then live frames after it', async () => {
    const { hub, url } = startServer({ coalesceMs: 0 });
    hub.runStarted(turnA);
    hub.delta(turnA.turnId, 'Hello, ');
    hub.delta(turnA.turnId, 'world');
    const c = await connect(`${url}?apiKey=sk-admin`);
    await c.sendJson({ type: 'subscribe', channels: ['conversations'] }, 'subscribed');
    await c.waitFor((f) => f.some((x) => x.type === 'resync'), 'resync');
    hub.delta(turnA.turnId, '!');
    hub.runFinished(turnA.turnId, 'Hello, world!');
    await c.waitFor((f) => f.some((x) => x.payload?.type === 'RUN_FINISHED'), 'RUN_FINISHED');

    const afterAck = c.frames.slice(c.frames.findIndex((f) => f.type === 'subscribed') + 1);
    expect(afterAck[0]).toEqual({
      type: 'resync',
      snapshot: {
        instanceId: 'inst-a',
        conversationId: 'conv-a',
        turnId: 'turn-a1',
        messageId: 'msg-a1',
        seq: 4,
        text: 'Hello, world',
        status: 'running',
      },
    });
    const live = afterAck.slice(1).map((f) => f.payload);
    expect(live.map((e) => e.type)).toEqual(['TEXT_MESSAGE_CONTENT', 'TEXT_MESSAGE_END', 'RUN_FINISHED']);
    expect(live[0]).toMatchObject({ seq: 5, delta: '!' });
    expectGapFree(live);
    c.ws.close();
  });

  test('a real client that stops reading is skipped, then gets one resync with the text so far', async () => {
    const { hub, url } = startServer({ coalesceMs: 0 });
    const slow = await RawWsClient.connect(url.replace('/ws', '/ws?apiKey=sk-admin'));
    slow.sendText(JSON.stringify({ type: 'subscribe', channels: ['conversations'] }));
    await slow.waitFor((f) => f.some((x) => x.type === 'subscribed'), 'subscribed');
    slow.pause();

    hub.runStarted(turnA);
    const chunk = 'x'.repeat(64 * 1024);
    let sent = 0;
    // Fill the kernel buffers until Bun reports backpressure (-1) for this socket.
    while (hub.stats().lagging === 0 && sent < 2000) {
      hub.delta(turnA.turnId, chunk);
      sent++;
      if (sent % 16 === 0) await Bun.sleep(1);
    }
    expect(hub.stats().lagging).toBe(1);
    const framesSentWhenLagging = hub.stats().framesSent;
    for (let i = 0; i < 50; i++) hub.delta(turnA.turnId, 'y');
    // Nothing more was sent or queued for the lagging client.
    expect(hub.stats().framesSent).toBe(framesSentWhenLagging);
    const expectedText = chunk.repeat(sent) + 'y'.repeat(50);

    slow.resume();
    await slow.waitFor((f) => f.some((x) => x.type === 'resync'), 'resync', 15_000);
    expect(hub.stats().lagging).toBe(0);
    hub.delta(turnA.turnId, 'z');
    hub.runFinished(turnA.turnId, `${expectedText}z`);
    await slow.waitFor((f) => f.some((x) => x.payload?.type === 'RUN_FINISHED'), 'RUN_FINISHED');

    const resyncs = slow.frames.filter((f) => f.type === 'resync');
    expect(resyncs).toHaveLength(1);
    expect(resyncs[0].snapshot.text).toBe(expectedText);
    expect(resyncs[0].snapshot.status).toBe('running');
    // Rebuild the reply the way a client would: frames up to the snapshot, the snapshot, then the rest.
    const after = slow.frames.slice(slow.frames.indexOf(resyncs[0]) + 1).map((f) => f.payload);
    expect(after[0]).toMatchObject({ type: 'TEXT_MESSAGE_CONTENT', delta: 'z', seq: resyncs[0].snapshot.seq + 1 });
    expect(resyncs[0].snapshot.text + after[0].delta).toBe(`${expectedText}z`);
    slow.close();
  });
});

// ---------------------------------------------------------------- hub behaviour (fake sockets, manual clock)

describe('StreamHub', () => {
  test('coalesces a burst of deltas into one frame per window', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 30, keepaliveMs: 0 });
    const sock = new FakeSocket();
    subscribe(hub.attach(sock, ALL));
    hub.runStarted(turnA);
    for (let i = 0; i < 100; i++) hub.delta(turnA.turnId, 'a');
    expect(sock.events().filter((e) => e.type === 'TEXT_MESSAGE_CONTENT')).toHaveLength(0);
    clock.advance(30);
    for (let i = 0; i < 50; i++) hub.delta(turnA.turnId, 'b');
    clock.advance(30);
    const content = sock.events().filter((e) => e.type === 'TEXT_MESSAGE_CONTENT');
    expect(content.map((e) => e.delta)).toEqual(['a'.repeat(100), 'b'.repeat(50)]);

    const eager = new StreamHub({ clock, coalesceMs: 0, keepaliveMs: 0 });
    const sock2 = new FakeSocket();
    subscribe(eager.attach(sock2, ALL));
    eager.runStarted(turnA);
    for (let i = 0; i < 100; i++) eager.delta(turnA.turnId, 'a');
    expect(sock2.events().filter((e) => e.type === 'TEXT_MESSAGE_CONTENT')).toHaveLength(100);
  });

  test('RUN_FINISHED flushes pending text before ending the message', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 30, keepaliveMs: 0 });
    const sock = new FakeSocket();
    subscribe(hub.attach(sock, ALL));
    hub.runStarted(turnA);
    hub.delta(turnA.turnId, 'partial');
    hub.runFinished(turnA.turnId, 'partial');
    expect(sock.events().map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_FINISHED',
    ]);
    clock.advance(100); // the cancelled flush timer must not emit anything late
    expect(sock.events()).toHaveLength(5);
  });

  test('a backpressured client gets no deltas, no queue, and one resync per missed turn on drain', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 0, keepaliveMs: 0 });
    const fast = new FakeSocket();
    const slow = new FakeSocket();
    subscribe(hub.attach(fast, ALL));
    const slowHandle = hub.attach(slow, ALL);
    subscribe(slowHandle);

    hub.runStarted(turnA);
    hub.delta(turnA.turnId, 'one ');
    slow.sendResult = -1; // Bun: enqueued, but the socket is backed up
    hub.delta(turnA.turnId, 'two ');
    const slowFramesAtLag = slow.frames.length;
    expect(hub.stats().lagging).toBe(1);

    hub.runStarted(turnB);
    for (let i = 0; i < 1000; i++) {
      hub.delta(turnA.turnId, 'a');
      hub.delta(turnB.turnId, 'b');
    }
    hub.runFinished(turnB.turnId, 'b'.repeat(1000));
    expect(slow.frames.length).toBe(slowFramesAtLag); // nothing sent or buffered for it
    expect(fast.events().filter((e) => e.type === 'TEXT_MESSAGE_CONTENT')).toHaveLength(2002);

    slow.sendResult = 100;
    slowHandle.onDrain();
    const resyncs = slow.frames.slice(slowFramesAtLag);
    expect(resyncs).toHaveLength(2);
    const byTurn = Object.fromEntries(resyncs.map((r) => [r.snapshot.turnId, r.snapshot]));
    expect(byTurn['turn-a1']).toMatchObject({ text: `one two ${'a'.repeat(1000)}`, status: 'running', seq: 1004 });
    expect(byTurn['turn-b1']).toMatchObject({ text: 'b'.repeat(1000), status: 'finished' });
    expect(hub.stats()).toMatchObject({ lagging: 0, resyncsTotal: 2 });

    hub.delta(turnA.turnId, '!');
    expect(slow.frames.at(-1).payload).toMatchObject({ type: 'TEXT_MESSAGE_CONTENT', delta: '!', seq: 1005 });
    slowHandle.onDrain(); // not lagging: nothing to resend
    expect(hub.stats().resyncsTotal).toBe(2);
  });

  test('a dropped frame (send returns 0) is recovered by resync', () => {
    const hub = new StreamHub({ clock: new ManualClock(), coalesceMs: 0, keepaliveMs: 0 });
    const sock = new FakeSocket();
    const handle = hub.attach(sock, ALL);
    subscribe(handle);
    hub.runStarted(turnA);
    sock.sendResult = 0;
    hub.delta(turnA.turnId, 'lost');
    sock.sendResult = 100;
    handle.onDrain();
    expect(sock.frames.at(-1)).toMatchObject({ type: 'resync', snapshot: { text: 'lost', seq: 3 } });
    expect(hub.stats().framesDropped).toBe(1);
  });

  test('turnRestarted tells subscribers and resets the snapshot', () => {
    const hub = new StreamHub({ clock: new ManualClock(), coalesceMs: 0, keepaliveMs: 0 });
    const sock = new FakeSocket();
    subscribe(hub.attach(sock, ALL));
    hub.runStarted(turnA);
    hub.delta(turnA.turnId, 'half an ans');
    hub.turnRestarted(turnA.turnId, 'stream cut');
    expect(hub.snapshot(turnA.turnId)).toMatchObject({ text: '', status: 'running' });
    hub.delta(turnA.turnId, 'Full answer');
    hub.runFinished(turnA.turnId, 'Full answer');

    const events = sock.events();
    expectGapFree(events);
    expect(events.map((e) => e.type)).toEqual([
      'RUN_STARTED',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'CUSTOM',
      'TEXT_MESSAGE_START',
      'TEXT_MESSAGE_CONTENT',
      'TEXT_MESSAGE_END',
      'RUN_FINISHED',
    ]);
    expect(events[3]).toMatchObject({ name: 'TURN_RESTARTED', value: { reason: 'stream cut' }, turnId: 'turn-a1' });
    // The retried reply is a new AG-UI message so clients do not append to the abandoned one.
    expect(events[4].messageId).not.toBe(events[1].messageId);
    expect(sock.events().at(-1)).toMatchObject({ type: 'RUN_FINISHED', result: { text: 'Full answer' } });

    // A late subscriber after the restart sees only the new text.
    hub.runStarted(turnB);
    hub.delta(turnB.turnId, 'old');
    hub.turnRestarted(turnB.turnId, 'retry');
    hub.delta(turnB.turnId, 'new');
    const late = new FakeSocket();
    subscribe(hub.attach(late, ALL));
    expect(late.frames.find((f) => f.type === 'resync').snapshot.text).toBe('new');
  });

  test('several text messages in one turn: snapshot joins them with a blank line', () => {
    const hub = new StreamHub({ clock: new ManualClock(), coalesceMs: 0, keepaliveMs: 0 });
    const sock = new FakeSocket();
    subscribe(hub.attach(sock, ALL));
    hub.runStarted(turnA);
    hub.delta(turnA.turnId, 'First.');
    hub.messageBreak(turnA.turnId);
    hub.delta(turnA.turnId, 'Second.');
    expect(hub.snapshot(turnA.turnId)?.text).toBe('First.\n\nSecond.');
    const starts = sock.events().filter((e) => e.type === 'TEXT_MESSAGE_START');
    expect(starts.map((e) => e.messageId)).toEqual(['msg-a1', 'msg-a1.1']);
  });

  test('memory: a finished turn nobody lags behind is forgotten at once; unsubscribed clients get nothing', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 30, turnGraceMs: 5_000, keepaliveMs: 0 });
    const sock = new FakeSocket();
    const handle = hub.attach(sock, ALL);
    subscribe(handle);
    hub.runStarted(turnA);
    hub.delta(turnA.turnId, 'x'.repeat(10_000));
    expect(hub.stats().snapshotChars).toBe(10_000);
    hub.runError(turnA.turnId, 'agent exploded');
    expect(sock.events().at(-1)).toMatchObject({ type: 'RUN_ERROR', message: 'agent exploded' });
    // The only subscriber got every frame: nothing is kept for a resync.
    expect(hub.snapshot(turnA.turnId)).toBeNull();
    expect(hub.stats()).toMatchObject({ turnsHeld: 0, finishedTurnsHeld: 0, snapshotChars: 0 });

    // Thousands of answered turns with no subscriber at all leave nothing behind.
    for (let i = 0; i < 5_000; i++) {
      const t = { ...turnB, turnId: `bulk-${i}` };
      hub.runStarted(t);
      hub.delta(t.turnId, 'reply');
      hub.runFinished(t.turnId, 'reply');
    }
    expect(hub.stats()).toMatchObject({ turnsHeld: 0, snapshotChars: 0 });

    handle.onMessage({ type: 'unsubscribe', channels: ['conversations'] });
    const before = sock.frames.length;
    hub.runStarted(turnB);
    hub.delta(turnB.turnId, 'hidden');
    expect(sock.frames.length).toBe(before);
    hub.publishEvent('events', { type: 'message.received' }, { instanceId: 'inst-b' });
    expect(sock.frames.at(-1)).toEqual({ type: 'event', channel: 'events', payload: { type: 'message.received' } });
  });

  test('a turn that finishes while a client lags is kept for its resync, then released', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 0, turnGraceMs: 5_000, keepaliveMs: 0 });
    const slow = new FakeSocket();
    const slowHandle = hub.attach(slow, ALL);
    subscribe(slowHandle);
    hub.runStarted(turnA);
    slow.sendResult = -1;
    hub.delta(turnA.turnId, 'Full ');
    hub.delta(turnA.turnId, 'answer');
    hub.runFinished(turnA.turnId, 'Full answer');
    expect(hub.stats()).toMatchObject({ lagging: 1, finishedTurnsHeld: 1 });
    expect(hub.snapshot(turnA.turnId)).toMatchObject({ status: 'finished', text: 'Full answer' });

    clock.advance(4_999);
    slow.sendResult = 100;
    slowHandle.onDrain();
    expect(slow.frames.at(-1)).toMatchObject({
      type: 'resync',
      snapshot: { turnId: 'turn-a1', status: 'finished', text: 'Full answer' },
    });
    // Delivered: the snapshot is released without waiting for the grace period.
    expect(hub.stats()).toMatchObject({ turnsHeld: 0, finishedTurnsHeld: 0 });
  });

  test('finished turns awaited by a lagging client: dropped after the grace period and beyond the cap', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 0, turnGraceMs: 5_000, maxFinishedTurns: 3, keepaliveMs: 0 });
    const slow = new FakeSocket();
    const slowHandle = hub.attach(slow, ALL);
    subscribe(slowHandle);
    slow.sendResult = -1;
    hub.publishEvent('events', { type: 'backlog' }); // makes the client lag before any turn
    const finish = (i: number) => {
      const t = { ...turnA, turnId: `t${i}` };
      hub.runStarted(t);
      hub.delta(t.turnId, `reply ${i}`);
      hub.runFinished(t.turnId, `reply ${i}`);
    };
    for (let i = 1; i <= 5; i++) {
      finish(i);
      clock.advance(1_000);
    }
    // The cap keeps the 3 most recent; t1 and t2 are gone.
    expect(hub.stats().finishedTurnsHeld).toBe(3);
    expect(hub.snapshot('t1')).toBeNull();
    expect(hub.snapshot('t3')?.text).toBe('reply 3');
    // t3 finished at 2 s; at 7 s its grace is over, t4 and t5 remain.
    clock.advance(2_000);
    expect(hub.snapshot('t3')).toBeNull();
    expect(hub.stats().finishedTurnsHeld).toBe(2);

    slow.sendResult = 100;
    const before = slow.frames.length;
    slowHandle.onDrain();
    const resyncs = slow.frames.slice(before);
    expect(resyncs.map((f) => f.snapshot.turnId).sort()).toEqual(['t4', 't5']);
    expect(hub.stats()).toMatchObject({ lagging: 0, turnsHeld: 0, finishedTurnsHeld: 0 });
    clock.advance(10_000); // the sweep timer finds nothing left and stops
    expect(hub.stats().finishedTurnsHeld).toBe(0);
  });

  test('a lagging client that disconnects releases the finished turns kept for it', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, coalesceMs: 0, keepaliveMs: 0 });
    const slow = new FakeSocket();
    const slowHandle = hub.attach(slow, ALL);
    subscribe(slowHandle);
    hub.runStarted(turnA);
    slow.sendResult = 0;
    hub.delta(turnA.turnId, 'lost');
    hub.runFinished(turnA.turnId, 'lost');
    expect(hub.stats().finishedTurnsHeld).toBe(1);
    slowHandle.detach();
    expect(hub.stats()).toMatchObject({ clients: 0, turnsHeld: 0, finishedTurnsHeld: 0 });
  });

  test('keepalive pings live sockets and closes idle ones', () => {
    const clock = new ManualClock();
    const hub = new StreamHub({ clock, keepaliveMs: 10_000, idleTimeoutMs: 25_000 });
    const idle = new FakeSocket();
    const alive = new FakeSocket();
    hub.attach(idle, ALL);
    const aliveHandle = hub.attach(alive, ALL);
    for (let i = 0; i < 3; i++) {
      clock.advance(10_000);
      aliveHandle.onPong();
    }
    expect(alive.pings).toBe(3);
    expect(alive.closed).toBeNull();
    expect(idle.closed).toEqual({ code: WS_CLOSE_IDLE, reason: 'idle timeout' });
    expect(hub.stats().clients).toBe(1);
    hub.close();
  });
});

// ---------------------------------------------------------------- a minimal WebSocket client over TCP
// Bun's WebSocket reads eagerly; to make a client that truly stops reading we speak the protocol
// over a node:net socket that can be paused.

class RawWsClient {
  frames: any[] = [];
  private buf = Buffer.alloc(0);
  private constructor(private sock: net.Socket) {}

  static async connect(url: string): Promise<RawWsClient> {
    const u = new URL(url);
    const sock = net.connect(Number(u.port), u.hostname);
    await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
    const key = randomBytes(16).toString('base64');
    sock.write(
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    const client = new RawWsClient(sock);
    let handshakeDone = false;
    await new Promise<void>((resolve, reject) => {
      sock.on('data', (chunk: Buffer) => {
        client.buf = Buffer.concat([client.buf, chunk]);
        if (!handshakeDone) {
          const end = client.buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = client.buf.subarray(0, end).toString();
          if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(head));
          client.buf = client.buf.subarray(end + 4);
          handshakeDone = true;
          resolve();
        }
        client.parse();
      });
    });
    return client;
  }

  private parse() {
    for (;;) {
      if (this.buf.length < 2) return;
      const opcode = this.buf[0]! & 0x0f;
      let len = this.buf[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) return;
      const body = this.buf.subarray(off, off + len);
      this.buf = this.buf.subarray(off + len);
      if (opcode === 1) this.frames.push(JSON.parse(body.toString('utf8')));
    }
  }

  sendText(text: string) {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    const header =
      payload.length < 126
        ? Buffer.from([0x81, 0x80 | payload.length])
        : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
    this.sock.write(Buffer.concat([header, mask, masked]));
  }

  pause() {
    this.sock.pause();
  }
  resume() {
    this.sock.resume();
  }
  close() {
    this.sock.destroy();
  }

  async waitFor(pred: (frames: any[]) => boolean, what: string, ms = 5000) {
    const deadline = Date.now() + ms;
    while (!pred(this.frames)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Bun.sleep(5);
    }
  }
}
