import { afterEach, describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import { AguiStream } from '../../src/agents/agui.ts';
import { sniffProtocol } from '../../src/agents/auto.ts';
import { createAgentClient, resolveAgentType, runAgent } from '../../src/agents/index.ts';
import { replyFromJson } from '../../src/agents/json.ts';
import { LEO_TOKEN_REJECTED, leoStreamUrl } from '../../src/agents/leo.ts';
import { chatCompletionsUrl } from '../../src/agents/openai.ts';
import { SseDecoder } from '../../src/agents/sse.ts';
import type { AgentEvent, AgentRequest } from '../../src/agents/types.ts';
import type { Config } from '../../src/config.ts';
import type { AgentConfig } from '../../src/core/instance.ts';
import { type FakeAgent, startFakeAgent, startRawHttpAgent } from '../fakes/agents.ts';

/** Timers fire only when the test advances time. */
class ManualClock implements Clock {
  private t = 0;
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  now() {
    return this.t;
  }
  monotonic() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return { cancel: () => void (timer.live = false) };
  }
  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.setTimeout(r, ms));
  }
  advance(ms: number) {
    this.t += ms;
    const due = this.timers.filter((x) => x.live && x.at <= this.t);
    this.timers = this.timers.filter((x) => x.live && x.at > this.t);
    for (const x of due) x.fn();
  }
  get pending() {
    return this.timers.filter((x) => x.live).length;
  }
}

const NO_LEO: Config['leo'] = { bearerToken: null, subscriptionKey: null, workflowId: null, apiBaseUrl: null };

function agentConfig(over: Partial<AgentConfig>): AgentConfig {
  return {
    url: null,
    apiKey: null,
    type: 'auto',
    timeoutSeconds: 30,
    idleTimeoutSeconds: 10,
    defaultAgent: null,
    model: null,
    headers: {},
    ...over,
  };
}

function request(over: Partial<AgentRequest> = {}): AgentRequest {
  return {
    userId: 'whatsapp:+15551234567',
    sessionId: 'session-abc123',
    message: 'What can you do?',
    context: { channel: 'whatsapp', instance: 'whatsapp-leo-bot', source: 'evolution-api' },
    sessionOrigin: 'whatsapp',
    idempotencyKey: 'idem-1',
    messageId: 'm1',
    ...over,
  };
}

async function collect(it: AsyncIterable<AgentEvent>): Promise<AgentEvent[]> {
  const out: AgentEvent[] = [];
  for await (const e of it) out.push(e);
  return out;
}

function last(events: AgentEvent[]): AgentEvent {
  return events[events.length - 1]!;
}

function deltas(events: AgentEvent[]): string {
  return events.map((e) => (e.type === 'delta' ? e.text : e.type === 'message_break' ? '\n\n' : '')).join('');
}

const fakes: FakeAgent[] = [];
function fake(opts: Parameters<typeof startFakeAgent>[0]): FakeAgent {
  const f = startFakeAgent(opts);
  fakes.push(f);
  return f;
}
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.stop()));
});

const REPLY = 'Olá! I am Leo 🚀.\n\nI can help with ```code``` and more — ñandú.';

describe('json (seed contract)', () => {
  test('posts the seed body with key, bearer and idempotency headers; reads text', async () => {
    const f = fake({ protocol: 'json', reply: () => REPLY });
    const client = createAgentClient(
      agentConfig({ url: f.url, type: 'json', apiKey: 'k-123', headers: { 'x-tenant': 't1' } }),
      { leo: NO_LEO },
    );
    const events = await collect(client.run(request(), new AbortController().signal));
    expect(events.map((e) => e.type)).toEqual(['start', 'final']);
    expect(last(events)).toEqual({ type: 'final', text: REPLY });
    const r = f.requests[0]!;
    expect(r.body).toEqual({
      user_id: 'whatsapp:+15551234567',
      session_id: 'session-abc123',
      session_name: 'whatsapp-leo-bot_whatsapp:+15551234567',
      message: 'What can you do?',
      context: { channel: 'whatsapp', instance: 'whatsapp-leo-bot', source: 'evolution-api' },
      session_origin: 'whatsapp',
    });
    expect(r.headers['x-api-key']).toBe('k-123');
    expect(r.headers.authorization).toBe('Bearer k-123');
    expect(r.headers['idempotency-key']).toBe('idem-1');
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['x-tenant']).toBe('t1');
  });

  test('a base URL without a path is called at /api/agent/chat (the v1 guide); a URL with a path as given', async () => {
    const f = fake({ protocol: 'json' });
    const base = f.url.replace(/\/agent$/, '');
    for (const [type, url, path] of [
      ['json', base, '/api/agent/chat'],
      ['json', `${base}/`, '/api/agent/chat'],
      ['auto', base, '/api/agent/chat'],
      ['json', f.url, '/agent'],
      ['json', `${base}/custom/chat?x=1`, '/custom/chat'],
    ] as const) {
      const client = createAgentClient(agentConfig({ url, type }), { leo: NO_LEO });
      expect(await runAgent(client, request({ message: 'hi' }), new AbortController().signal)).toBe('echo: hi');
      expect(f.requests.at(-1)!.path).toBe(path);
    }
  });

  test('no key configured → no auth headers', async () => {
    const f = fake({ protocol: 'json' });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'json' }), { leo: NO_LEO });
    expect(await runAgent(client, request({ message: 'hi' }), new AbortController().signal)).toBe('echo: hi');
    expect(f.requests[0]!.headers['x-api-key']).toBeUndefined();
    expect(f.requests[0]!.headers.authorization).toBeUndefined();
  });

  test('reply from text, message, reply or response; missing text and garbage are not retryable', () => {
    expect(replyFromJson('{"text":"a"}')).toBe('a');
    expect(replyFromJson('{"message":"b"}')).toBe('b');
    expect(replyFromJson('{"reply":"c"}')).toBe('c');
    expect(replyFromJson('{"response":"d"}')).toBe('d');
    expect(() => replyFromJson('{"answer":"x"}')).toThrow(/no text field/);
    try {
      replyFromJson('<html>oops</html>', 200);
      throw new Error('expected a throw');
    } catch (e: any) {
      expect(e.retryable).toBe(false);
      expect(e.message).toContain('invalid JSON');
    }
  });

  test('5xx and 429 are retryable, other 4xx are not', async () => {
    for (const [status, retryable] of [
      [500, true],
      [503, true],
      [429, true],
      [400, false],
      [404, false],
      [401, false],
    ] as const) {
      const f = fake({ protocol: 'json', status });
      const client = createAgentClient(agentConfig({ url: f.url, type: 'json' }), { leo: NO_LEO });
      const e = last(await collect(client.run(request(), new AbortController().signal)));
      expect(e).toMatchObject({ type: 'error', retryable, status });
    }
  });

  test('5xx twice then OK: the same Idempotency-Key on every attempt', async () => {
    const f = fake({ protocol: 'json', failTimes: 2, failStatus: 502 });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'json' }), { leo: NO_LEO });
    const results: AgentEvent[] = [];
    for (let i = 0; i < 3; i++)
      results.push(last(await collect(client.run(request({ message: 'x' }), new AbortController().signal))));
    expect(results.map((e) => e.type)).toEqual(['error', 'error', 'final']);
    expect(results[0]).toMatchObject({ retryable: true, status: 502 });
    expect(new Set(f.requests.map((r) => r.idempotencyKey))).toEqual(new Set(['idem-1']));
  });

  test('garbage body → non-retryable error; body cut by the network → retryable', async () => {
    const g = fake({ protocol: 'json', garbage: true });
    const eg = last(
      await collect(
        createAgentClient(agentConfig({ url: g.url, type: 'json' }), { leo: NO_LEO }).run(
          request(),
          new AbortController().signal,
        ),
      ),
    );
    expect(eg).toMatchObject({ type: 'error', retryable: false });
    const c = startRawHttpAgent(
      'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{"text":"half a rep',
    );
    try {
      const ec = last(
        await collect(
          createAgentClient(agentConfig({ url: c.url, type: 'json' }), { leo: NO_LEO }).run(
            request(),
            new AbortController().signal,
          ),
        ),
      );
      expect(ec).toMatchObject({ type: 'error', retryable: true });
    } finally {
      c.stop();
    }
  });

  test('unreachable agent → retryable', async () => {
    const f = fake({ protocol: 'json' });
    const url = f.url;
    await f.stop();
    const e = last(
      await collect(
        createAgentClient(agentConfig({ url, type: 'json' }), { leo: NO_LEO }).run(
          request(),
          new AbortController().signal,
        ),
      ),
    );
    expect(e).toMatchObject({ type: 'error', retryable: true });
    expect((e as any).message).toContain('unreachable');
  });
});

describe('agui', () => {
  test('RunAgentInput body, SSE accept header, deltas add up to the reply', async () => {
    const f = fake({ protocol: 'agui', reply: () => REPLY, deltaChars: 3 });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'agui', apiKey: 'k' }), { leo: NO_LEO });
    const events = await collect(client.run(request(), new AbortController().signal));
    expect(events[0]).toEqual({ type: 'start', runId: 'run_m1' });
    expect(events.filter((e) => e.type === 'delta').length).toBeGreaterThan(5);
    expect(deltas(events)).toBe(REPLY);
    expect(last(events)).toEqual({ type: 'final', text: REPLY });
    const r = f.requests[0]!;
    expect(r.headers.accept).toBe('text/event-stream');
    expect(r.headers['idempotency-key']).toBe('idem-1');
    expect(r.body).toEqual({
      threadId: 'session-abc123',
      runId: 'run_m1',
      messages: [{ id: 'm1', role: 'user', content: 'What can you do?' }],
      tools: [],
      context: [],
      state: {},
      forwardedProps: {},
    });
  });

  test('several text messages are joined with a blank line and announced by message_break', async () => {
    const f = fake({ protocol: 'agui', reply: () => ['First part.', 'Second part.', 'Third.'] });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'agui' }), { leo: NO_LEO });
    const events = await collect(client.run(request(), new AbortController().signal));
    expect(events.filter((e) => e.type === 'message_break').length).toBe(2);
    expect(last(events)).toEqual({ type: 'final', text: 'First part.\n\nSecond part.\n\nThird.' });
    expect(deltas(events)).toBe('First part.\n\nSecond part.\n\nThird.');
  });

  test('stream cut mid-message → retryable "stream cut"; a retry with the same key completes', async () => {
    const f = fake({ protocol: 'agui', reply: () => 'one two three four five six' });
    f.plan((r) => (r.index === 0 ? { cutAfterDeltas: 2 } : undefined));
    const client = createAgentClient(agentConfig({ url: f.url, type: 'agui' }), { leo: NO_LEO });
    const first = await collect(client.run(request(), new AbortController().signal));
    expect(deltas(first)).toBe('one two ');
    expect(last(first)).toMatchObject({ type: 'error', retryable: true });
    expect((last(first) as any).message).toContain('stream cut');
    const second = await collect(client.run(request(), new AbortController().signal));
    expect(last(second)).toEqual({ type: 'final', text: 'one two three four five six' });
    expect(f.requests.map((r) => r.idempotencyKey)).toEqual(['idem-1', 'idem-1']);
  });

  test('garbage bytes → retryable error (no completed run)', async () => {
    const f = fake({ protocol: 'agui', garbage: true });
    const e = last(
      await collect(
        createAgentClient(agentConfig({ url: f.url, type: 'agui' }), { leo: NO_LEO }).run(
          request(),
          new AbortController().signal,
        ),
      ),
    );
    expect(e).toMatchObject({ type: 'error', retryable: true });
  });

  test('5xx → retryable with status', async () => {
    const f = fake({ protocol: 'agui', status: 502 });
    const e = last(
      await collect(
        createAgentClient(agentConfig({ url: f.url, type: 'agui' }), { leo: NO_LEO }).run(
          request(),
          new AbortController().signal,
        ),
      ),
    );
    expect(e).toMatchObject({ type: 'error', retryable: true, status: 502 });
  });

  test('event names, content field, unknown events, RUN_ERROR and streams without RUN events', () => {
    const run = (sse: string) => {
      const d = new SseDecoder();
      const s = new AguiStream();
      const out: AgentEvent[] = [];
      for (const item of [...d.pushText(sse), ...d.end()]) if (item.kind === 'event') out.push(...s.handle(item));
      return { out, finish: s.finish() };
    };
    const named = run(
      'event: RUN_STARTED\ndata: {}\n\n' +
        'event: TEXT_MESSAGE_CONTENT\ndata: {"messageId":"a","content":"Hi"}\n\n' +
        'data: {"type":"TOOL_CALL_START","toolCallId":"x"}\n\n' +
        'data: {"type":"SOMETHING_NEW","delta":"ignored"}\n\n' +
        'data: {"type":"TEXT_MESSAGE_CONTENT","messageId":"a","delta":" there"}\n\n' +
        'event: RUN_FINISHED\ndata: {}\n\n',
    );
    expect(named.out).toEqual([
      { type: 'delta', text: 'Hi' },
      { type: 'delta', text: ' there' },
      { type: 'final', text: 'Hi there' },
    ]);

    const failed = run(
      'data: {"type":"RUN_STARTED"}\n\ndata: {"type":"RUN_ERROR","message":"model overloaded","code":"overloaded"}\n\n',
    );
    expect(failed.out[0]).toMatchObject({ type: 'error', message: expect.stringContaining('model overloaded') });

    const noRun = run(
      'data: {"type":"TEXT_MESSAGE_START","messageId":"a"}\n\ndata: {"type":"TEXT_MESSAGE_CONTENT","messageId":"a","delta":"ok"}\n\ndata: {"type":"TEXT_MESSAGE_END","messageId":"a"}\n\n',
    );
    expect(noRun.finish).toEqual({ type: 'final', text: 'ok' });

    const cutNoRun = run(
      'data: {"type":"TEXT_MESSAGE_START","messageId":"a"}\n\ndata: {"type":"TEXT_MESSAGE_CONTENT","messageId":"a","delta":"ok"}\n\n',
    );
    expect(cutNoRun.finish).toMatchObject({ type: 'error', retryable: true });
  });
});

// A recorded AG-UI stream exercising the SSE corner cases: multi-byte UTF-8, \r\n, comments,
// `event:` lines, multi-line data, ids, retry fields and a trailing unknown event.
const RECORDED_TEXT = 'olá 🚀 mundo\n\nSegunda mensagem: ção, 日本語, 👩‍💻!';
const RECORDED = [
  ': hello comment\r\n\r\n',
  'retry: 1000\r\nid: 1\r\ndata: {"type":"RUN_STARTED","threadId":"t","runId":"r"}\r\n\r\n',
  'event: TEXT_MESSAGE_START\r\ndata: {"messageId":"m1","role":"assistant"}\r\n\r\n',
  'data: {"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"olá "}\n\n',
  ': keepalive\n',
  'data: {"type":"TEXT_MESSAGE_CONTENT",\r\ndata: "messageId":"m1",\r\ndata: "delta":"🚀 mundo"}\r\n\r\n',
  'data: {"type":"TEXT_MESSAGE_END","messageId":"m1"}\r\r',
  'data: {"type":"TEXT_MESSAGE_START","messageId":"m2","role":"assistant"}\n\n',
  'data:{"type":"TEXT_MESSAGE_CONTENT","messageId":"m2","delta":"Segunda mensagem: ção, "}\n\n',
  'event: TEXT_MESSAGE_CONTENT\ndata: {"messageId":"m2","delta":"日本語, 👩‍💻!"}\n\n',
  'data: {"type":"TEXT_MESSAGE_END","messageId":"m2"}\n\n',
  'data: {"type":"STATE_SNAPSHOT","snapshot":{}}\n\n',
  'data: {"type":"RUN_FINISHED","threadId":"t","runId":"r"}\r\n\r\n',
].join('');
const RECORDED_BYTES = new TextEncoder().encode(RECORDED);

function textFromChunks(chunks: Uint8Array[]): AgentEvent {
  const d = new SseDecoder();
  const s = new AguiStream();
  for (const c of chunks) {
    for (const item of d.push(c)) {
      if (item.kind !== 'event') continue;
      for (const e of s.handle(item)) if (e.type === 'final' || e.type === 'error') return e;
    }
  }
  for (const item of d.end())
    if (item.kind === 'event') for (const e of s.handle(item)) if (e.type === 'final') return e;
  return s.finish();
}

describe('SSE parsing is independent of how bytes are split', () => {
  test('whole recorded stream', () => {
    expect(textFromChunks([RECORDED_BYTES])).toEqual({ type: 'final', text: RECORDED_TEXT });
  });

  test('split in two at every byte offset', () => {
    for (let i = 0; i <= RECORDED_BYTES.length; i++) {
      const got = textFromChunks([RECORDED_BYTES.subarray(0, i), RECORDED_BYTES.subarray(i)]);
      if (got.type !== 'final' || got.text !== RECORDED_TEXT) throw new Error(`split at ${i}: ${JSON.stringify(got)}`);
    }
  });

  test('one byte at a time', () => {
    const chunks = Array.from(RECORDED_BYTES, (_, i) => RECORDED_BYTES.subarray(i, i + 1));
    expect(textFromChunks(chunks)).toEqual({ type: 'final', text: RECORDED_TEXT });
  });

  test('random chunkings (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: RECORDED_BYTES.length - 1 }), { maxLength: 40 }), (cuts) => {
        const sorted = [0, ...cuts.sort((a, b) => a - b), RECORDED_BYTES.length];
        const chunks = sorted.slice(1).map((end, i) => RECORDED_BYTES.subarray(sorted[i]!, end));
        const got = textFromChunks(chunks);
        return got.type === 'final' && got.text === RECORDED_TEXT;
      }),
      { numRuns: 500 },
    );
  });

  test('a truncated recording never yields a final reply', () => {
    // Any prefix that stops before the RUN_FINISHED event is a cut stream.
    const finishedAt = RECORDED.lastIndexOf('data: {"type":"RUN_FINISHED"');
    const limit = new TextEncoder().encode(RECORDED.slice(0, finishedAt)).length;
    for (let i = 0; i < limit; i += 7) {
      const got = textFromChunks([RECORDED_BYTES.subarray(0, i)]);
      expect(got).toMatchObject({ type: 'error', retryable: true });
    }
  });

  test('over HTTP, one byte per write', async () => {
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch() {
        return new Response(
          new ReadableStream({
            async start(c) {
              for (let i = 0; i < RECORDED_BYTES.length; i++) {
                c.enqueue(RECORDED_BYTES.slice(i, i + 1));
                if (i % 50 === 0) await Bun.sleep(0);
              }
              c.close();
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        );
      },
    });
    try {
      const client = createAgentClient(agentConfig({ url: `http://127.0.0.1:${server.port}/`, type: 'agui' }), {
        leo: NO_LEO,
      });
      const events = await collect(client.run(request(), new AbortController().signal));
      expect(last(events)).toEqual({ type: 'final', text: RECORDED_TEXT });
      expect(deltas(events)).toBe(RECORDED_TEXT);
    } finally {
      await server.stop(true);
    }
  });
});

describe('openai', () => {
  test('POSTs {url}/chat/completions with model, stream, messages, user; reads choices[0].delta.content', async () => {
    const f = fake({ protocol: 'openai', reply: () => REPLY });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'openai', model: 'gpt-x', apiKey: 'sk-1' }), {
      leo: NO_LEO,
    });
    const events = await collect(client.run(request(), new AbortController().signal));
    expect(last(events)).toEqual({ type: 'final', text: REPLY });
    expect(deltas(events)).toBe(REPLY);
    const r = f.requests[0]!;
    expect(r.path).toBe('/agent/chat/completions');
    expect(r.headers.authorization).toBe('Bearer sk-1');
    expect(r.body).toEqual({
      model: 'gpt-x',
      stream: true,
      messages: [{ role: 'user', content: 'What can you do?' }],
      user: 'whatsapp:+15551234567',
    });
  });

  test('url already ending in /chat/completions is used as is', () => {
    expect(chatCompletionsUrl('http://h/v1')).toBe('http://h/v1/chat/completions');
    expect(chatCompletionsUrl('http://h/v1/')).toBe('http://h/v1/chat/completions');
    expect(chatCompletionsUrl('http://h/v1/chat/completions')).toBe('http://h/v1/chat/completions');
  });

  test('cut before [DONE] → retryable', async () => {
    const f = fake({ protocol: 'openai', reply: () => 'a b c d e', cutAfterDeltas: 2 });
    const e = last(
      await collect(
        createAgentClient(agentConfig({ url: f.url, type: 'openai' }), { leo: NO_LEO }).run(
          request(),
          new AbortController().signal,
        ),
      ),
    );
    expect(e).toMatchObject({ type: 'error', retryable: true });
  });
});

describe('leo', () => {
  const leo: Config['leo'] = {
    bearerToken: 'tok-good',
    subscriptionKey: 'sub-1',
    workflowId: 'wf-9',
    apiBaseUrl: 'http://leo.local/api/v1',
  };

  test('chosen by type, default_agent "leo" or a URL under LEO_API_BASE_URL', () => {
    expect(resolveAgentType(agentConfig({ type: 'leo' }), leo)).toBe('leo');
    expect(resolveAgentType(agentConfig({ defaultAgent: 'leo', url: 'http://elsewhere/x' }), leo)).toBe('leo');
    expect(resolveAgentType(agentConfig({ url: 'http://leo.local/api/v1/workflow-engine/wf/stream' }), leo)).toBe(
      'leo',
    );
    expect(resolveAgentType(agentConfig({ url: 'http://leo.local/api/v10/x' }), leo)).toBe('auto');
    expect(resolveAgentType(agentConfig({ defaultAgent: 'leo-adapter', url: 'http://a/b' }), leo)).toBe('auto');
    expect(resolveAgentType(agentConfig({ type: 'json', defaultAgent: 'leo' }), leo)).toBe('json');
    expect(leoStreamUrl(leo)).toBe('http://leo.local/api/v1/workflow-engine/wf-9/stream');
  });

  test('streams with the env bearer token and subscription key (the instance key is not sent)', async () => {
    const f = fake({ protocol: 'agui', reply: () => 'I am Leo, your AI assistant.', requireBearer: 'tok-good' });
    const client = createAgentClient(agentConfig({ url: f.url, defaultAgent: 'leo', apiKey: 'leo_builtin' }), {
      leo: { ...leo, apiBaseUrl: new URL(f.url).origin },
    });
    const events = await collect(client.run(request(), new AbortController().signal));
    expect(last(events)).toEqual({ type: 'final', text: 'I am Leo, your AI assistant.' });
    const r = f.requests[0]!;
    expect(r.headers.authorization).toBe('Bearer tok-good');
    expect(r.headers['x-subscription-key']).toBe('sub-1');
    expect(r.headers['x-api-key']).toBeUndefined();
    expect(r.body.threadId).toBe('session-abc123');
  });

  test('the Leo credentials are never sent to an instance URL outside LEO_API_BASE_URL', async () => {
    const f = fake({ protocol: 'agui' });
    for (const apiBaseUrl of ['http://leo.local/api/v1', null]) {
      const client = createAgentClient(agentConfig({ url: f.url, type: 'leo' }), { leo: { ...leo, apiBaseUrl } });
      const e = last(await collect(client.run(request(), new AbortController().signal)));
      expect(e).toMatchObject({
        type: 'error',
        retryable: false,
        message: expect.stringContaining('LEO_API_BASE_URL'.slice(0, 0) || 'Leo'),
      });
    }
    expect(f.requests.length).toBe(0);
  });

  test('401 → non-retryable error telling to refresh LEO_BEARER_TOKEN', async () => {
    const f = fake({ protocol: 'agui', requireBearer: 'tok-new' });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'leo' }), {
      leo: { ...leo, bearerToken: 'tok-old', apiBaseUrl: new URL(f.url).origin },
    });
    const e = last(await collect(client.run(request(), new AbortController().signal)));
    expect(e).toEqual({ type: 'error', message: LEO_TOKEN_REJECTED, retryable: false, status: 401 });
    expect(LEO_TOKEN_REJECTED).toContain('expired');
    expect(LEO_TOKEN_REJECTED).toContain('refresh LEO_BEARER_TOKEN');
  });

  test('missing token → clear non-retryable error without calling out', async () => {
    const f = fake({ protocol: 'agui' });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'leo' }), { leo: { ...leo, bearerToken: null } });
    const e = last(await collect(client.run(request(), new AbortController().signal)));
    expect(e).toMatchObject({ type: 'error', retryable: false, message: expect.stringContaining('LEO_BEARER_TOKEN') });
    expect(f.requests.length).toBe(0);
  });
});

describe('auto', () => {
  const cases = [
    ['json', 'application/json'],
    ['agui', 'agui'],
    ['openai', 'openai'],
    ['plain', 'plain'],
  ] as const;
  for (const [protocol] of cases) {
    test(`detects a ${protocol} agent from the response`, async () => {
      const f = fake({ protocol, reply: () => REPLY, deltaChars: 4 });
      const client = createAgentClient(agentConfig({ url: f.url }), { leo: NO_LEO });
      const events = await collect(client.run(request(), new AbortController().signal));
      expect(last(events)).toEqual({ type: 'final', text: REPLY });
      if (protocol !== 'json') expect(deltas(events)).toBe(REPLY);
      const r = f.requests[0]!;
      expect(r.headers.accept).toBe('text/event-stream, application/json');
      expect(r.body.session_id).toBe('session-abc123');
    });
  }

  test('sniffing by first event', () => {
    expect(sniffProtocol({ data: '{"type":"RUN_STARTED"}' })).toBe('agui');
    expect(sniffProtocol({ event: 'TEXT_MESSAGE_START', data: '{"messageId":"a"}' })).toBe('agui');
    expect(sniffProtocol({ data: '{"choices":[{"delta":{"content":"x"}}]}' })).toBe('openai');
    expect(sniffProtocol({ data: 'hello there' })).toBe('plain');
    expect(sniffProtocol({ data: '{"type":"greeting"}' })).toBe('plain');
  });
});

describe('timeouts and cancellation', () => {
  test('idle timeout: a stream that stalls after its first delta fails retryably', async () => {
    const clock = new ManualClock();
    const f = fake({ protocol: 'agui', reply: () => 'first second third', stall: true });
    const client = createAgentClient(
      agentConfig({ url: f.url, type: 'agui', idleTimeoutSeconds: 5, timeoutSeconds: 60 }),
      { leo: NO_LEO, clock },
    );
    const it = client.run(request(), new AbortController().signal)[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ type: 'start' });
    expect((await it.next()).value).toEqual({ type: 'delta', text: 'first ' });
    const pending = it.next();
    await Bun.sleep(20);
    clock.advance(4_999);
    await Bun.sleep(20);
    clock.advance(1);
    const e = (await pending).value as AgentEvent;
    expect(e).toMatchObject({ type: 'error', retryable: true });
    expect((e as any).message).toContain('idle');
    expect((await it.next()).done).toBe(true);
    await Bun.sleep(20);
    expect(f.requests[0]!.clientAborted).toBe(true);
  });

  test('keepalive comments count as activity', async () => {
    const clock = new ManualClock();
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () =>
        new Response(
          new ReadableStream<Uint8Array>({
            start(c) {
              ctl = c;
              c.enqueue(new TextEncoder().encode('data: {"type":"RUN_STARTED"}\n\n'));
            },
          }),
          { headers: { 'content-type': 'text/event-stream' } },
        ),
    });
    try {
      const client = createAgentClient(
        agentConfig({ url: `http://127.0.0.1:${server.port}/`, type: 'agui', idleTimeoutSeconds: 5 }),
        { leo: NO_LEO, clock },
      );
      let result: AgentEvent | null = null;
      const done = collect(client.run(request(), new AbortController().signal)).then((ev) => (result = last(ev)));
      await Bun.sleep(30);
      for (let i = 0; i < 3; i++) {
        clock.advance(4_000);
        ctl.enqueue(new TextEncoder().encode(': ping\n\n'));
        await Bun.sleep(30);
      }
      expect(result).toBeNull(); // 12 s in, but never 5 s without a sign of life
      clock.advance(5_000);
      await done;
      expect(result).toMatchObject({ type: 'error', retryable: true, message: expect.stringContaining('idle') });
    } finally {
      await server.stop(true);
    }
  });

  test('total timeout: an agent that never answers fails retryably', async () => {
    const clock = new ManualClock();
    const f = fake({ protocol: 'json', hang: true });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'json', timeoutSeconds: 30 }), {
      leo: NO_LEO,
      clock,
    });
    const p = collect(client.run(request(), new AbortController().signal));
    await Bun.sleep(30);
    clock.advance(29_999);
    await Bun.sleep(10);
    clock.advance(1);
    const events = await p;
    expect(last(events)).toMatchObject({
      type: 'error',
      retryable: true,
      message: expect.stringContaining('timed out'),
    });
    await Bun.sleep(20);
    expect(f.requests[0]!.clientAborted).toBe(true);
  });

  test('total timeout also cuts a slow but steady stream', async () => {
    const clock = new ManualClock();
    const f = fake({ protocol: 'openai', reply: () => 'a b c d e f g h', deltaDelayMs: 15 });
    const client = createAgentClient(
      agentConfig({ url: f.url, type: 'openai', timeoutSeconds: 1, idleTimeoutSeconds: 1 }),
      { leo: NO_LEO, clock },
    );
    const events: AgentEvent[] = [];
    for await (const e of client.run(request(), new AbortController().signal)) {
      events.push(e);
      if (e.type === 'delta' && e.text === 'b ') clock.advance(1_000);
    }
    expect(last(events)).toMatchObject({ type: 'error', message: expect.stringContaining('timed out') });
    expect(deltas(events)).toBe('a b ');
  });

  test('caller abort stops the HTTP request', async () => {
    const f = fake({ protocol: 'agui', hang: true });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'agui' }), { leo: NO_LEO });
    const ac = new AbortController();
    const p = collect(client.run(request(), ac.signal));
    await Bun.sleep(30);
    ac.abort();
    const events = await p;
    expect(last(events)).toMatchObject({
      type: 'error',
      retryable: false,
      message: expect.stringContaining('aborted'),
    });
    await Bun.sleep(20);
    expect(f.requests[0]!.clientAborted).toBe(true);
  });

  test('a consumer that stops reading closes the connection', async () => {
    const f = fake({ protocol: 'agui', reply: () => 'a b c d e f', deltaDelayMs: 30 });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'agui' }), { leo: NO_LEO });
    for await (const e of client.run(request(), new AbortController().signal)) if (e.type === 'delta') break;
    await Bun.sleep(50);
    expect(f.requests[0]!.clientAborted).toBe(true);
  });

  test('runAgent returns the final text or throws the AgentError', async () => {
    const ok = fake({ protocol: 'agui', reply: () => 'done' });
    const seen: string[] = [];
    const client = createAgentClient(agentConfig({ url: ok.url, type: 'agui' }), { leo: NO_LEO });
    expect(await runAgent(client, request(), new AbortController().signal, (e) => seen.push(e.type))).toBe('done');
    expect(seen).toEqual(['start', 'delta', 'final']);
    const bad = fake({ protocol: 'agui', status: 500 });
    const failing = createAgentClient(agentConfig({ url: bad.url, type: 'agui' }), { leo: NO_LEO });
    await expect(runAgent(failing, request(), new AbortController().signal)).rejects.toMatchObject({
      name: 'AgentError',
      retryable: true,
      status: 500,
    });
  });
});

describe('a batched turn (conversation modes collect/interrupt)', () => {
  const batch = request({
    message: 'hi\nI need\nto change my order',
    messageId: 'm3',
    idempotencyKey: 'idem-batch',
    messages: [
      { id: 'm1', text: 'hi', time: '2025-01-01T00:00:00.000Z' },
      { id: 'm2', text: 'I need', time: '2025-01-01T00:00:01.000Z' },
      { id: 'm3', text: 'to change my order', time: '2025-01-01T00:00:02.000Z' },
    ],
  });

  test('json: the joined text as `message` and the fragments as `messages` (id, text, time)', async () => {
    const f = fake({ protocol: 'json' });
    const client = createAgentClient(agentConfig({ url: f.url, type: 'json' }), { leo: NO_LEO });
    await collect(client.run(batch, new AbortController().signal));
    const r = f.requests[0]!;
    expect(r.body.message).toBe('hi\nI need\nto change my order');
    expect(r.body.messages).toEqual(batch.messages);
    expect(r.headers['idempotency-key']).toBe('idem-batch');
  });

  test('agui and openai: consecutive user messages', async () => {
    const a = fake({ protocol: 'agui' });
    await collect(
      createAgentClient(agentConfig({ url: a.url, type: 'agui' }), { leo: NO_LEO }).run(
        batch,
        new AbortController().signal,
      ),
    );
    expect(a.requests[0]!.body.runId).toBe('run_m3');
    expect(a.requests[0]!.body.messages).toEqual([
      { id: 'm1', role: 'user', content: 'hi' },
      { id: 'm2', role: 'user', content: 'I need' },
      { id: 'm3', role: 'user', content: 'to change my order' },
    ]);
    const o = fake({ protocol: 'openai' });
    await collect(
      createAgentClient(agentConfig({ url: o.url, type: 'openai' }), { leo: NO_LEO }).run(
        batch,
        new AbortController().signal,
      ),
    );
    expect(o.requests[0]!.body.messages).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'user', content: 'I need' },
      { role: 'user', content: 'to change my order' },
    ]);
  });
});
