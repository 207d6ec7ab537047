// Live partial replies through the whole gateway: a streaming AG-UI agent, the conversation
// actor, the stream hub and a real WebSocket client; and the gateway itself as an AG-UI agent
// driven by @ag-ui/client's HttpAgent.
import { describe, expect, test } from 'bun:test';
import { HttpAgent } from '@ag-ui/client';
import { evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

const REPLY = 'Olá! Here is a streamed answer 🚀 with several words, so it arrives as many deltas.';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-123456' },
  agent: { protocol: 'agui', reply: () => REPLY, deltaChars: 4, deltaDelayMs: 3 },
});

async function serve(env: Record<string, string> = {}) {
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', ...env });
  const created = await t.call('POST', '/api/v2/instances', {
    name: 'stream-bot',
    channel: 'whatsapp-evolution',
    channelConfig: { evolutionUrl: fakes.evo.url, evolutionKey: fakes.evo.apikey },
    agent: { url: fakes.agent.url, type: 'agui', timeoutSeconds: 10 },
  });
  expect(created.status).toBe(201);
  await t.gw.start();
  const server = t.app.listen({ port: 0, hostname: '127.0.0.1' });
  const base = `http://127.0.0.1:${server.server!.port}`;
  const token = new URL(created.body.data.webhookUrl).searchParams.get('token')!;
  const post = (id: string, text: string) =>
    fetch(`${base}/webhook/evolution/stream-bot?token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(evolutionUpsert({ id, text, phone: '15550001111', name: 'Ana' })),
    });
  return {
    ...t,
    base,
    post,
    instanceId: created.body.data.id as string,
    stop: async () => {
      await server.stop(true);
      await t.close();
    },
  };
}

function openWs(base: string, key: string) {
  const frames: any[] = [];
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?apiKey=${key}`);
  ws.onmessage = (e) => frames.push(JSON.parse(String(e.data)));
  const opened = new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error('ws error'));
  });
  return { ws, frames, opened };
}

describe('live stream of a reply', () => {
  test('a WebSocket subscriber receives ordered deltas whose concatenation equals the sent reply', async () => {
    const s = await serve();
    const { ws, frames, opened } = openWs(s.base, ADMIN_KEY);
    await opened;
    ws.send(JSON.stringify({ type: 'subscribe', channels: ['conversations'], filters: { instanceId: s.instanceId } }));
    await until(() => frames.some((f) => f.type === 'subscribed'), 8000, 'subscribed frame');
    expect((await s.post('s-1', 'tell me')).status).toBe(200);
    await until(() => frames.some((f) => f.payload?.type === 'RUN_FINISHED'), 8000, 'RUN_FINISHED frame');
    await fakes.evo.waitForSent(1);
    const turn = frames.filter((f) => f.type === 'event' && f.channel === 'conversations').map((f) => f.payload);
    expect(turn.map((p) => p.seq)).toEqual(turn.map((_, i) => i + 1)); // gap-free
    expect(turn[0].type).toBe('RUN_STARTED');
    const text = turn
      .filter((p) => p.type === 'TEXT_MESSAGE_CONTENT')
      .map((p) => p.delta)
      .join('');
    expect(text).toBe(REPLY);
    expect(fakes.evo.sent.at(-1)!.text).toBe(REPLY);
    ws.close();
    await s.stop();
  });

  test('a stream cut mid-way is retried with the same Idempotency-Key; subscribers are told the turn restarted; one reply is sent', async () => {
    const s = await serve();
    fakes.evo.reset();
    let calls = 0;
    fakes.agent.plan(() => (++calls === 1 ? { cutAfterDeltas: 3 } : undefined));
    const { ws, frames, opened } = openWs(s.base, ADMIN_KEY);
    await opened;
    ws.send(JSON.stringify({ type: 'subscribe', channels: ['conversations'] }));
    await until(() => frames.some((f) => f.type === 'subscribed'), 8000, 'subscribed frame');
    await s.post('cut-1', 'again');
    await until(() => frames.some((f) => f.payload?.type === 'RUN_FINISHED'), 8000, 'RUN_FINISHED frame');
    await fakes.evo.waitForSent(1);
    fakes.agent.plan(null);
    const keys = fakes.agent.requests.filter((r) => r.message === 'again').map((r) => r.idempotencyKey);
    expect(keys.length).toBe(2);
    expect(keys[0]).toBe(keys[1]);
    const payloads = frames.filter((f) => f.type === 'event').map((f) => f.payload);
    expect(payloads.some((p) => p.type === 'CUSTOM' && p.name === 'TURN_RESTARTED')).toBe(true);
    expect(payloads.find((p) => p.type === 'RUN_FINISHED').result.text).toBe(REPLY);
    await Bun.sleep(50);
    expect(fakes.evo.sent.map((m) => m.text)).toEqual([REPLY]);
    ws.close();
    await s.stop();
  });

  test('@ag-ui/client HttpAgent chats through /api/v2/agui/{instance} and gets the streamed reply', async () => {
    const s = await serve();
    const client = new HttpAgent({
      url: `${s.base}/api/v2/agui/stream-bot`,
      headers: { 'x-api-key': ADMIN_KEY },
      threadId: 'thread-1',
    });
    client.addMessage({ id: 'u1', role: 'user', content: 'hello over AG-UI' });
    const deltas: string[] = [];
    const result = await client.runAgent(
      { runId: 'run-1' },
      { onTextMessageContentEvent: ({ event }) => void deltas.push(event.delta) },
    );
    const assistant = result.newMessages.find((m) => m.role === 'assistant');
    expect(assistant?.content).toBe(REPLY);
    expect(deltas.join('')).toBe(REPLY);
    expect(fakes.agent.requests.at(-1)!.message).toBe('hello over AG-UI');
    // Nothing went to WhatsApp: API conversations answer on the stream.
    expect(fakes.evo.sent.some((m) => m.text === REPLY && m.number.startsWith('agui'))).toBe(false);
    // The same runId again returns the stored reply without a second agent run.
    const before = fakes.agent.requests.length;
    const again = new HttpAgent({
      url: `${s.base}/api/v2/agui/stream-bot`,
      headers: { 'x-api-key': ADMIN_KEY },
      threadId: 'thread-1',
    });
    again.addMessage({ id: 'u1', role: 'user', content: 'hello over AG-UI' });
    const r2 = await again.runAgent({ runId: 'run-1' });
    expect(r2.newMessages.find((m) => m.role === 'assistant')?.content).toBe(REPLY);
    expect(fakes.agent.requests.length).toBe(before);
    await s.stop();
  });

  test('the AG-UI endpoint rejects a run without a user message and unknown instances', async () => {
    const s = await serve();
    const bad = await s.call('POST', '/api/v2/agui/stream-bot', { threadId: 't', runId: 'r', messages: [] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_ERROR');
    const missing = await s.call('POST', '/api/v2/agui/nope', {
      threadId: 't',
      runId: 'r',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(missing.status).toBe(404);
    await s.stop();
  });
});

describe('progressive delivery failures', () => {
  test('a channel failure while blocks stream does not crash the gateway: the agent run is kept, the send is retried, every block arrives once', async () => {
    const s = await serve();
    fakes.evo.reset();
    expect((await s.call('PATCH', '/api/v2/instances/stream-bot', { settings: { replyMode: 'blocks' } })).status).toBe(
      200,
    );
    const paragraphs = [
      'First paragraph of the answer.',
      'Second paragraph, still streaming.',
      'Third and last paragraph.',
    ];
    fakes.agent.setBehaviour({ reply: () => paragraphs.join('\n\n'), deltaChars: 5, deltaDelayMs: 4 });
    fakes.evo.fail('sendText', 503, 1); // the first block's send fails while the agent is still writing
    const before = fakes.agent.requests.length;
    expect((await s.post('blk-1', 'write three paragraphs')).status).toBe(200);
    await fakes.evo.waitForSent(3, 8000);
    await Bun.sleep(100);
    expect(fakes.evo.sent.map((m) => m.text)).toEqual(paragraphs);
    expect(fakes.agent.requests.length - before).toBe(1); // the agent ran once; only the send was retried
    fakes.agent.setBehaviour({ reply: () => REPLY, deltaChars: 4, deltaDelayMs: 3 });
    await s.stop();
  });
});

describe('AG-UI endpoint under backpressure', () => {
  test('a run on a thread whose backlog is full is refused with 429 at once, not left hanging', async () => {
    const s = await serve({ CONVERSATION_BACKLOG_LIMIT: '1' });
    fakes.agent.setBehaviour({ deltaDelayMs: 40 });
    const run = (runId: string) =>
      fetch(`${s.base}/api/v2/agui/stream-bot`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY },
        body: JSON.stringify({
          threadId: 'busy',
          runId,
          messages: [{ id: runId, role: 'user', content: `hi ${runId}` }],
        }),
      });
    const first = await run('r1'); // streams while the agent writes slowly
    expect(first.status).toBe(200);
    const second = await run('r2');
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('5');
    expect((await second.json()).error.code).toBe('RATE_LIMITED');
    await first.text();
    fakes.agent.setBehaviour({ deltaDelayMs: 3 });
    await s.stop();
  });
});

describe('/ws scopes', () => {
  test('a key without messages:read or events:read cannot open the live stream', async () => {
    const s = await serve();
    const { key: sendOnly } = s.gw.keys.create({ name: 'sender', scopes: ['messages:send'] });
    const { key: reader } = s.gw.keys.create({ name: 'reader', scopes: ['events:read'] });
    const closeCode = (key: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`${s.base.replace('http', 'ws')}/ws?apiKey=${key}`);
        ws.onclose = (e) => resolve(e.code);
        ws.onopen = () => setTimeout(() => ws.close(1000), 150);
      });
    expect(await closeCode(sendOnly)).toBe(4401);
    expect(await closeCode(reader)).toBe(1000);
    await s.stop();
  });
});

describe('/ws follows its key', () => {
  test('revoking, narrowing or an expired key closes the streams opened with it (4401); others stay open', async () => {
    const s = await serve();
    const mk = (name: string, extra: Record<string, unknown> = {}) =>
      s.gw.keys.create({ name, scopes: ['messages:read'], ...extra });
    const revoked = mk('to-revoke');
    const narrowed = mk('to-narrow');
    const kept = mk('kept');
    const open = (key: string) => {
      const ws = new WebSocket(`${s.base.replace('http', 'ws')}/ws?apiKey=${key}`);
      const closed = new Promise<{ code: number; reason: string }>(
        (resolve) => (ws.onclose = (e) => resolve({ code: e.code, reason: e.reason })),
      );
      const opened = new Promise<void>((resolve) => (ws.onopen = () => resolve()));
      return { ws, closed, opened };
    };
    const a = open(revoked.key);
    const b = open(narrowed.key);
    const c = open(kept.key);
    await Promise.all([a.opened, b.opened, c.opened]);

    const res = await s.call('POST', `/api/v2/keys/${revoked.view.id}/revoke`);
    expect(res.status).toBe(200);
    expect(await a.closed).toEqual({ code: 4401, reason: 'key revoked, expired or changed' });

    s.gw.keys.update(narrowed.view.id, { instanceIds: [s.instanceId] });
    expect((await b.closed).code).toBe(4401);

    // Expiry is found by the next check (a key change here; once a minute otherwise).
    const expiring = mk('expiring', { expiresAt: new Date(Date.now() + 400).toISOString() });
    const d = open(expiring.key);
    await d.opened;
    await Bun.sleep(450);
    mk('any-change');
    expect((await d.closed).code).toBe(4401);

    let cClosed = false;
    void c.closed.then(() => (cClosed = true));
    await Bun.sleep(50);
    expect(cClosed).toBe(false); // an unrelated key change leaves it alone
    c.ws.close(1000);
    await s.stop();
  });
});

describe('/ws admission', () => {
  test('a key revoked while its stream is being admitted gets 4401, not a stream', async () => {
    const s = await serve();
    const { key, view } = s.gw.keys.create({ name: 'slow-admit', scopes: ['messages:read'] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const limiter = s.gw.rateLimiter;
    // A limiter that takes its time (Redis in cluster mode): the revocation lands meanwhile.
    s.gw.rateLimiter = { take: async (k, cls) => (await gate, limiter.take(k, cls)) };
    const ws = new WebSocket(`${s.base.replace('http', 'ws')}/ws?apiKey=${key}`);
    const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));
    await new Promise((r) => (ws.onopen = r));
    s.gw.keys.revoke(view.id);
    release();
    expect(await closed).toBe(4401);
    await s.stop();
  });

  test('a client that floods messages while its stream is being admitted is closed (1008), nothing is kept without bound', async () => {
    const s = await serve();
    const { key } = s.gw.keys.create({ name: 'flooder', scopes: ['messages:read'] });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const limiter = s.gw.rateLimiter;
    s.gw.rateLimiter = { take: async (k, cls) => (await gate, limiter.take(k, cls)) };
    const ws = new WebSocket(`${s.base.replace('http', 'ws')}/ws?apiKey=${key}`);
    const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));
    await new Promise((r) => (ws.onopen = r));
    for (let i = 0; i < 40; i++) ws.send(JSON.stringify({ type: 'subscribe', channels: ['conversations'] }));
    expect(await closed).toBe(1008);
    release();
    await s.stop();
  });

  test("opening a stream is audited and counts against the key's general rate limit (4429 beyond it); a subscribe sent at once is honoured", async () => {
    const s = await serve();
    expect((await s.call('PATCH', '/api/v2/settings', { 'rateLimit.generalPerMinute': 2 })).status).toBe(200);
    const { key, view } = s.gw.keys.create({ name: 'watcher', scopes: ['messages:read'] });
    const open = () => {
      const ws = new WebSocket(`${s.base.replace('http', 'ws')}/ws?apiKey=${key}`);
      const frames: any[] = [];
      ws.onmessage = (e) => frames.push(JSON.parse(String(e.data)));
      ws.onopen = () => ws.send(JSON.stringify({ type: 'subscribe', channels: ['conversations'] }));
      const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));
      return { ws, frames, closed };
    };
    const a = open();
    const b = open();
    await until(() => a.frames.length > 0 && b.frames.length > 0);
    expect(a.frames[0]).toMatchObject({ type: 'subscribed', channels: ['conversations'] });
    expect(b.frames[0]).toMatchObject({ type: 'subscribed' });
    const c = open();
    expect(await c.closed).toBe(4429);
    await until(() => s.gw.audit.list(view.id).length >= 3);
    expect(
      s.gw.audit
        .list(view.id)
        .map((r) => `${r.method} ${r.path} ${r.status}`)
        .sort(),
    ).toEqual(['GET /ws 101', 'GET /ws 101', 'GET /ws 429']);
    a.ws.close();
    b.ws.close();
    await s.stop();
  });
});
