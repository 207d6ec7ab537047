// The web chat's visitor API end to end (in-process, real pipeline, built-in echo agent): sessions
// and tokens, origins, size and rate limits, idempotent sends, the visitor's own history, and the
// live stream with the /ws seq and resync rules.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { issueToken, TOKEN_TTL_MS } from '../../../src/channels/webchat/token.ts';
import { WIDGET_CSS } from '../../../src/channels/webchat/widget/style.ts';
import { createTestGateway } from '../../helpers.ts';

let t: ReturnType<typeof createTestGateway>;

beforeAll(async () => {
  t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  await t.gw.start();
});
afterAll(() => t.close());

interface Call {
  body?: unknown;
  token?: string;
  origin?: string;
  headers?: Record<string, string>;
}

async function call(method: string, path: string, o: Call = {}) {
  const headers: Record<string, string> = { ...o.headers };
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  if (o.origin) headers.origin = o.origin;
  const res = await t.app.handle(
    new Request(`http://localhost${path}`, {
      method,
      headers,
      body: o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body),
    }),
  );
  const text = await res.text();
  let json: any = text;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, body: json, headers: res.headers };
}

async function chat(name: string, channelConfig: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const res = await t.call('POST', '/api/v2/instances', {
    name,
    channel: 'webchat',
    agent: { type: 'echo' },
    channelConfig,
    ...extra,
  });
  expect(res.status).toBe(201);
  return res.body.data as { id: string; name: string };
}

interface Session {
  visitorId: string;
  conversationId: string;
  token: string;
}

async function session(name: string, o: Call = {}): Promise<Session> {
  const res = await call('POST', `/webchat/${name}/session`, { body: {}, ...o });
  expect(res.status).toBe(200);
  return res.body;
}

const send = (name: string, s: Session, text: string, clientMessageId: string = crypto.randomUUID(), o: Call = {}) =>
  call('POST', `/webchat/${name}/messages`, { body: { clientMessageId, text }, token: s.token, ...o });

const history = (name: string, s: Session, conversationId = s.conversationId) =>
  call('GET', `/webchat/${name}/conversations/${conversationId}/messages`, { token: s.token });

async function until<T>(fn: () => T | Promise<T>, ms = 8000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error('timed out waiting');
    await Bun.sleep(25);
  }
}

/** An SSE stream; frames are collected as they arrive (or only when `read()` is called, when paused). */
async function openStream(name: string, s: Session, o: { paused?: boolean } = {}) {
  const res = await t.app.handle(
    new Request(`http://localhost/webchat/${name}/conversations/${s.conversationId}/stream`, {
      headers: { authorization: `Bearer ${s.token}` },
    }),
  );
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  const frames: any[] = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let reading = false;
  const pump = async () => {
    if (reading) return;
    reading = true;
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut = buffer.indexOf('\n\n');
      while (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (block.startsWith('data: ')) frames.push(JSON.parse(block.slice(6)));
        cut = buffer.indexOf('\n\n');
      }
    }
  };
  if (!o.paused) void pump();
  return {
    frames,
    read: () => void pump(),
    close: () => reader.cancel(),
    turn: (turnId: string) => frames.filter((f) => f.type === 'event' && f.payload.turnId === turnId),
  };
}

describe('sessions and tokens', () => {
  test('a session resumes with its token: same visitor and conversation, fresh token', async () => {
    await chat('tok');
    const a = await session('tok');
    expect(a.visitorId).toMatch(/^v_/);
    expect(a.conversationId).toMatch(/^c_/);
    const again = await call('POST', '/webchat/tok/session', { body: { token: a.token } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ visitorId: a.visitorId, conversationId: a.conversationId, resumed: true });
    expect(Date.parse(again.body.expiresAt)).toBeGreaterThan(Date.now() + TOKEN_TTL_MS - 60_000);
    // A second visitor is someone else.
    const b = await session('tok');
    expect(b.visitorId).not.toBe(a.visitorId);
    expect(b.conversationId).not.toBe(a.conversationId);
  });

  test('forged, expired, other-instance and revoked tokens are 401 on every route', async () => {
    const inst = await chat('tok2');
    await chat('tok3');
    const s = await session('tok2');
    const [payload, sig] = s.token.split('.');
    const forged = `${payload}.${sig.slice(0, -3)}xyz`;
    const expired = issueToken(t.gw.instances.get(inst.id)!, s.visitorId, Date.now() - TOKEN_TTL_MS - 5000).token;
    const otherInstance = (await session('tok3')).token;
    for (const token of [forged, expired, otherInstance, 'garbage']) {
      const resumed = await call('POST', '/webchat/tok2/session', { body: { token } });
      expect(resumed.status).toBe(401);
      expect(resumed.body.error.code).toBe('UNAUTHORIZED');
      expect((await send('tok2', { ...s, token }, 'hi')).status).toBe(401);
      expect((await history('tok2', { ...s, token })).status).toBe(401);
      const stream = await call('GET', `/webchat/tok2/conversations/${s.conversationId}/stream?token=${token}`);
      expect(stream.status).toBe(401);
    }
    expect((await call('POST', '/webchat/tok2/session', { body: { token: expired } })).body.error.message).toContain(
      'expired',
    );
    // No token at all.
    expect((await call('POST', '/webchat/tok2/messages', { body: { clientMessageId: 'a', text: 'x' } })).status).toBe(
      401,
    );
    // Rotating the instance's secret revokes every token it issued.
    expect((await send('tok2', s, 'before rotation')).status).toBe(200);
    expect((await t.call('POST', `/api/v2/instances/${inst.id}/rotate-webhook-secret`)).status).toBe(200);
    expect((await send('tok2', s, 'after rotation')).status).toBe(401);
  });

  test('a conversation holds at most 5 live streams; closing one lets another open', async () => {
    await chat('tabs');
    const s = await session('tabs');
    const open = [];
    for (let i = 0; i < 5; i++) open.push(await openStream('tabs', s));
    const sixth = await call('GET', `/webchat/tabs/conversations/${s.conversationId}/stream`, { token: s.token });
    expect(sixth.status).toBe(429);
    expect(sixth.body.error.code).toBe('RATE_LIMITED');
    await open[0]!.close();
    await until(async () => {
      const again = await t.app.handle(
        new Request(`http://localhost/webchat/tabs/conversations/${s.conversationId}/stream`, {
          headers: { authorization: `Bearer ${s.token}` },
        }),
      );
      if (again.status !== 200) return false;
      await again.body!.cancel();
      return true;
    });
    for (const o of open.slice(1)) await o.close();
  });

  test("another visitor's conversation is 404 (history and stream); an unknown chat is 404", async () => {
    await chat('own');
    const a = await session('own');
    const b = await session('own');
    expect((await send('own', a, 'private to a')).status).toBe(200);
    const peek = await history('own', b, a.conversationId);
    expect(peek.status).toBe(404);
    expect(peek.body.error.code).toBe('NOT_FOUND');
    expect(JSON.stringify(peek.body)).not.toContain('private to a');
    const stream = await call('GET', `/webchat/own/conversations/${a.conversationId}/stream`, { token: b.token });
    expect(stream.status).toBe(404);
    expect((await history('own', b)).body.items).toEqual([]);
    expect((await call('POST', '/webchat/nope/session', { body: {} })).status).toBe(404);
    // An instance of another channel is not a web chat.
    await t.call('POST', '/api/v2/instances', { name: 'not-a-chat', channel: 'api', agent: { type: 'echo' } });
    expect((await call('POST', '/webchat/not-a-chat/session', { body: {} })).status).toBe(404);
  });

  test('an inactive chat answers 503 with Retry-After', async () => {
    await chat('off', {}, { isActive: false });
    const res = await call('POST', '/webchat/off/session', { body: {} });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('60');
  });
});

describe('origins', () => {
  test('allowed origins get CORS headers (errors included); others 403 on every route and preflight', async () => {
    await chat('cors', { webchatAllowedOrigins: 'https://shop.example, http://127.0.0.1:9999' });
    const ok = await session('cors', { origin: 'https://shop.example' });
    const res = await call('POST', '/webchat/cors/session', { body: {}, origin: 'https://shop.example' });
    expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    expect(res.headers.get('access-control-expose-headers')).toContain('retry-after');
    // A 401 to an allowed origin is readable by the page (it carries the CORS headers too).
    const unauthorized = await call('POST', '/webchat/cors/messages', {
      body: { clientMessageId: 'x', text: 'x' },
      origin: 'https://shop.example',
    });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get('access-control-allow-origin')).toBe('https://shop.example');
    const preflight = await call('OPTIONS', '/webchat/cors/messages', {
      origin: 'http://127.0.0.1:9999',
      headers: { 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:9999');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');

    const evil = 'https://evil.example';
    const refused = [
      await call('POST', '/webchat/cors/session', { body: {}, origin: evil }),
      await send('cors', ok, 'x', 'c1', { origin: evil }),
      await call('GET', `/webchat/cors/conversations/${ok.conversationId}/messages`, { token: ok.token, origin: evil }),
      await call('GET', `/webchat/cors/conversations/${ok.conversationId}/stream`, { token: ok.token, origin: evil }),
      await call('OPTIONS', '/webchat/cors/session', { origin: evil }),
      await call('POST', '/webchat/cors/session', { body: {}, origin: 'null' }),
    ];
    for (const r of refused) {
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe('FORBIDDEN');
      // The refused page may read the refusal, nothing more (no methods, headers or exposed headers).
      expect(r.headers.get('access-control-allow-methods')).toBeNull();
      expect(r.headers.get('access-control-expose-headers')).toBeNull();
    }
    // A preflight from a refused origin gets no CORS header: the real request never leaves the browser.
    expect(refused[4].headers.get('access-control-allow-origin')).toBeNull();
    expect(refused[0].headers.get('access-control-allow-origin')).toBe(evil);
  });

  test("the gateway's own origin is always allowed, * allows any, and origins are validated", async () => {
    await chat('same');
    expect((await call('POST', '/webchat/same/session', { body: {}, origin: 'http://localhost' })).status).toBe(200);
    expect((await call('POST', '/webchat/same/session', { body: {}, origin: 'https://other.example' })).status).toBe(
      403,
    );
    await chat('any', { webchatAllowedOrigins: '*' });
    expect((await call('POST', '/webchat/any/session', { body: {}, origin: 'https://other.example' })).status).toBe(
      200,
    );
    const bad = await t.call('POST', '/api/v2/instances', {
      name: 'bad-origins',
      channel: 'webchat',
      channelConfig: { webchatAllowedOrigins: 'https://ok.example, https://path.example/page, ftp://x.example' },
    });
    expect(bad.status).toBe(400);
    const fields = bad.body.error.details.map((d: { field: string }) => d.field);
    expect(fields.filter((f: string) => f === 'webchat_allowed_origins')).toHaveLength(2);
  });
});

describe('limits', () => {
  test('a message over the size limit is 413; at the limit it is accepted', async () => {
    await chat('size', { webchatMaxMessageChars: 50 });
    const s = await session('size');
    const over = await send('size', s, 'x'.repeat(51));
    expect(over.status).toBe(413);
    expect(over.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(over.body.error.details).toEqual({ limit: 50 });
    expect((await send('size', s, 'y'.repeat(50))).status).toBe(200);
    // A body far beyond the limit is refused before it is parsed.
    const huge = await call('POST', '/webchat/size/messages', {
      body: JSON.stringify({ clientMessageId: 'h', text: 'z'.repeat(100_000) }),
      token: s.token,
    });
    expect(huge.status).toBe(413);
    // Bad input is a 400 naming the field.
    const bad = await call('POST', '/webchat/size/messages', { body: { text: 'hi' }, token: s.token });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details[0].field).toBe('clientMessageId');
    expect((await call('POST', '/webchat/size/messages', { body: 'not json', token: s.token })).status).toBe(400);
  });

  test("a visitor's flood is 429 with Retry-After; another visitor is not affected", async () => {
    await chat('flood', { webchatVisitorMessagesPerMinute: 5, webchatIpRequestsPerMinute: 10_000 });
    const a = await session('flood');
    const b = await session('flood');
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => send('flood', a, `flood ${i}`)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(5);
    const limited = results.filter((r) => r.status === 429);
    expect(limited).toHaveLength(15);
    expect(limited[0].body.error.code).toBe('RATE_LIMITED');
    expect(Number(limited[0].headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(limited[0].body.error.details).toMatchObject({ scope: 'visitor', limit: 5 });
    for (let i = 0; i < 5; i++) expect((await send('flood', b, `calm ${i}`)).status).toBe(200);
  });

  test('per IP address (X-Forwarded-For from a trusted proxy): one address flooding leaves others alone', async () => {
    const g = createTestGateway({ TRUSTED_PROXIES: '127.0.0.1' });
    await g.gw.start();
    g.app.listen({ port: 0, hostname: '127.0.0.1' });
    try {
      const base = `http://127.0.0.1:${g.app.server!.port}`;
      await g.call('POST', '/api/v2/instances', {
        name: 'ipchat',
        channel: 'webchat',
        agent: { type: 'echo' },
        channelConfig: { webchatIpRequestsPerMinute: 3 },
      });
      const open = (ip: string) =>
        fetch(`${base}/webchat/ipchat/session`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
          body: '{}',
        });
      const flood = await Promise.all(Array.from({ length: 6 }, () => open('203.0.113.7')));
      expect(flood.map((r) => r.status).sort()).toEqual([200, 200, 200, 429, 429, 429]);
      const limited = flood.find((r) => r.status === 429)!;
      expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect((await limited.json()).error.details.scope).toBe('ip');
      expect((await open('203.0.113.8')).status).toBe(200);
    } finally {
      await g.app.stop(true);
      await g.close();
    }
  });
});

describe('sending and the live reply', () => {
  test('sends are idempotent by clientMessageId: one inbox row, one agent run, one reply', async () => {
    await chat('idem');
    const s = await session('idem');
    const stream = await openStream('idem', s);
    await until(() => stream.frames.find((f) => f.type === 'subscribed'));
    const same = await Promise.all([send('idem', s, 'only once', 'cm-1'), send('idem', s, 'only once', 'cm-1')]);
    expect(same.map((r) => r.status)).toEqual([200, 200]);
    expect(same.map((r) => r.body.status).sort()).toEqual(['accepted', 'duplicate']);
    expect(same[0].body.messageId).toBe(same[1].body.messageId);
    const again = await send('idem', s, 'only once', 'cm-1');
    expect(again.body).toMatchObject({ status: 'duplicate', messageId: same[0].body.messageId });
    const id = same[0].body.messageId;
    await until(() => stream.turn(id).find((f) => f.payload.type === 'RUN_FINISHED'));
    const items = await until(async () => {
      const h = (await history('idem', s)).body.items;
      return h.length === 2 ? h : null;
    });
    expect(items.map((i: any) => [i.direction, i.text])).toEqual([
      ['in', 'only once'],
      ['out', 'only once'],
    ]);
    expect(stream.frames.filter((f) => f.payload?.type === 'RUN_STARTED')).toHaveLength(1);
    const rows = t.gw.db.query('SELECT COUNT(*) AS n FROM inbox WHERE provider_message_id LIKE ?').get(`%:cm-1`) as {
      n: number;
    };
    expect(rows.n).toBe(1);
    await stream.close();
  });

  test('the reply streams word by word with a gap-free seq, then RUN_FINISHED and message.status', async () => {
    await chat('live');
    const s = await session('live');
    const stream = await openStream('live', s);
    await until(() => stream.frames.find((f) => f.type === 'subscribed'));
    const text = 'one two three four five six seven eight';
    const sent = await send('live', s, text);
    const id = sent.body.messageId;
    await until(() => stream.turn(id).find((f) => f.payload.type === 'RUN_FINISHED'));
    const frames = stream.turn(id);
    expect(frames.map((f) => f.payload.seq)).toEqual(frames.map((_, i) => i + 1));
    expect(frames[0].payload.type).toBe('RUN_STARTED');
    const deltas = frames.filter((f) => f.payload.type === 'TEXT_MESSAGE_CONTENT').map((f) => f.payload.delta);
    expect(deltas.length).toBeGreaterThan(1); // it grew, rather than arriving whole
    expect(deltas.join('')).toBe(text);
    expect(frames.at(-1).payload.result.text).toBe(text);
    await until(() => stream.frames.find((f) => f.type === 'message.status' && f.traceId === id));
    expect(stream.frames.find((f) => f.type === 'message.status').status).toBe('completed');
    await stream.close();
  });

  test('joining mid-reply starts with a resync snapshot, then frames with a higher seq', async () => {
    await chat('join');
    const s = await session('join');
    const first = await openStream('join', s);
    await until(() => first.frames.find((f) => f.type === 'subscribed'));
    const text = Array.from({ length: 30 }, (_, i) => `word${i}`).join(' ');
    const id = (await send('join', s, text)).body.messageId;
    await until(() => first.turn(id).filter((f) => f.payload.type === 'TEXT_MESSAGE_CONTENT').length >= 3);
    const late = await openStream('join', s);
    const resync = await until(() => late.frames.find((f) => f.type === 'resync'));
    expect(resync.snapshot.turnId).toBe(id);
    expect(text.startsWith(resync.snapshot.text)).toBe(true);
    await until(() => late.turn(id).find((f) => f.payload.type === 'RUN_FINISHED'));
    const after = late.turn(id);
    expect(after[0].payload.seq).toBe(resync.snapshot.seq + 1);
    expect(after.map((f) => f.payload.seq)).toEqual(after.map((_, i) => resync.snapshot.seq + 1 + i));
    expect(resync.snapshot.text + after.map((f) => f.payload.delta ?? '').join('')).toBe(text);
    await first.close();
    await late.close();
  });

  test('a stream that is not read lags, then gets one resync with the whole reply (no unbounded queue)', async () => {
    await chat('slow', { webchatMaxMessageChars: 100_000, webchatIpRequestsPerMinute: 100_000 });
    const s = await session('slow');
    const stream = await openStream('slow', s, { paused: true });
    // ~90 KB in 1500 words: more than the stream's 64 KiB queue holds.
    const text = Array.from({ length: 1500 }, (_, i) => `word${String(i).padStart(5, '0')}-${'x'.repeat(50)}`).join(
      ' ',
    );
    const id = (await send('slow', s, text)).body.messageId;
    // The reply completes while nobody reads the stream.
    await until(async () => (await history('slow', s)).body.items.length === 2, 10_000);
    expect(t.gw.pipeline.hub.stats().lagging).toBeGreaterThanOrEqual(1);
    stream.read();
    const resync = await until(() => stream.frames.find((f) => f.type === 'resync' && f.snapshot.turnId === id));
    expect(resync.snapshot.status).toBe('finished');
    expect(resync.snapshot.text).toBe(text);
    // What was queued before it lagged is a prefix of the reply; nothing after the lag was queued.
    const queued = stream.turn(id).filter((f) => f.payload.type === 'TEXT_MESSAGE_CONTENT');
    expect(text.startsWith(queued.map((f) => f.payload.delta).join(''))).toBe(true);
    expect(queued.map((f) => f.payload.delta).join('').length).toBeLessThan(text.length);
    await stream.close();
  }, 20_000);

  test('a message that ends without a reply is announced; an operator send appears in the history', async () => {
    const inst = await chat('gate', {}, { settings: { accessMode: 'allowlist' } });
    const s = await session('gate');
    const stream = await openStream('gate', s);
    await until(() => stream.frames.find((f) => f.type === 'subscribed'));
    const id = (await send('gate', s, 'let me in')).body.messageId;
    const status = await until(() => stream.frames.find((f) => f.type === 'message.status' && f.traceId === id));
    expect(status.status).toBe('blocked');
    const op = await t.call('POST', '/api/v2/messages', {
      instanceId: inst.id,
      to: s.visitorId,
      text: 'A human here.',
    });
    expect([200, 202]).toContain(op.status);
    const items = await until(async () => {
      const h = (await history('gate', s)).body.items;
      return h.length === 2 ? h : null;
    });
    expect(items).toEqual([
      expect.objectContaining({ direction: 'in', text: 'let me in', status: 'blocked' }),
      expect.objectContaining({ direction: 'out', text: 'A human here.' }),
    ]);
    await stream.close();
  });

  test('HTML in a message is data: stored and answered verbatim as JSON, never as markup', async () => {
    await chat('html');
    const s = await session('html');
    const evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>';
    const sent = await send('html', s, evil);
    expect(sent.headers.get('content-type')).toContain('application/json');
    const items = await until(async () => {
      const h = await history('html', s);
      return h.body.items.length === 2 ? h : null;
    });
    expect(items.headers.get('content-type')).toContain('application/json');
    expect(items.body.items.map((i: any) => i.text)).toEqual([evil, evil]);
  });

  test('a closed stream leaves the hub', async () => {
    await chat('bye');
    const s = await session('bye');
    const before = t.gw.pipeline.hub.stats().clients;
    const stream = await openStream('bye', s);
    await until(() => stream.frames.find((f) => f.type === 'subscribed'));
    expect(t.gw.pipeline.hub.stats().clients).toBe(before + 1);
    await stream.close();
    await until(() => t.gw.pipeline.hub.stats().clients === before);
  });
});

describe('/webchat.js', () => {
  test('is a self-contained script anyone may embed', async () => {
    const res = await t.app.handle(new Request('http://localhost/webchat.js'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/javascript');
    expect(res.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    const js = await res.text();
    expect(js.length).toBeGreaterThan(1000);
    // No outside assets: no absolute URL anywhere, no CSS url() or @import in its styles.
    expect(js.match(/https?:\/\/[a-z0-9.-]+\.[a-z]{2,}/gi) ?? []).toEqual([]);
    expect(js).toContain(WIDGET_CSS.trim().slice(0, 40));
    expect(WIDGET_CSS).not.toMatch(/url\(|@import/);
    // Message text is set as text, never as HTML.
    expect(js).not.toContain('innerHTML');
    expect(js).not.toContain('insertAdjacentHTML');
  });

  test('GET /api/v2/channels names the widget of the channel that has one', async () => {
    const res = await t.call('GET', '/api/v2/channels');
    const withWidget = res.body.items.filter((c: { widget?: string }) => c.widget);
    expect(withWidget.map((c: { id: string; widget: string }) => [c.id, c.widget])).toEqual([
      ['webchat', '/webchat.js'],
    ]);
  });
});
