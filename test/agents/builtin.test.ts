// The built-in agents: echo streams the message back word by word on the clock (driven here by the
// virtual clock), script answers from ordered rules; both are picked by agent type, validated on
// write, and traced through the pipeline like any agent.
import { describe, expect, test } from 'bun:test';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import { DEFAULT_FALLBACK, ScriptAgentClient, scriptProblems, WORD_DELAY_MS, words } from '../../src/agents/builtin.ts';
import { createAgentClient } from '../../src/agents/index.ts';
import type { AgentEvent, AgentRequest } from '../../src/agents/types.ts';
import type { AgentConfig } from '../../src/core/instance.ts';
import { createTestGateway } from '../helpers.ts';

const LEO = { bearerToken: null, subscriptionKey: null, workflowId: null, apiBaseUrl: null } as never;

function agent(over: Partial<AgentConfig>): AgentConfig {
  return {
    url: null,
    apiKey: null,
    type: 'auto',
    timeoutSeconds: 60,
    idleTimeoutSeconds: 30,
    defaultAgent: null,
    model: null,
    headers: {},
    ...over,
  };
}

function request(message: string): AgentRequest {
  return {
    userId: 'u',
    sessionId: 's',
    message,
    context: { channel: 'x', instance: 'i', source: 'x' },
    sessionOrigin: 'x',
    idempotencyKey: 'k',
    messageId: 'm',
  };
}

/** Collects events as they come; `done` resolves at the end of the stream. */
function drive(it: AsyncIterable<AgentEvent>) {
  const events: AgentEvent[] = [];
  const done = (async () => {
    for await (const e of it) events.push(e);
  })();
  return { events, done };
}

describe('echo', () => {
  test('streams the message back one word per delta, WORD_DELAY_MS apart on the clock', async () => {
    const clock = new VirtualClock();
    const client = createAgentClient(agent({ type: 'echo' }), { leo: LEO, clock });
    const text = 'hello  streaming\nworld <b>bold</b>';
    const run = drive(client.run(request(text), new AbortController().signal));
    await clock.flush();
    const deltas = () => run.events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text);
    // The first word at once; the next only when the clock moves.
    expect(deltas()).toEqual(['hello  ']);
    await clock.advance(WORD_DELAY_MS - 1);
    expect(deltas()).toHaveLength(1);
    await clock.advance(1);
    expect(deltas()).toEqual(['hello  ', 'streaming\n']);
    await clock.runAll();
    await run.done;
    expect(deltas().join('')).toBe(text);
    expect(deltas()).toEqual(words(text));
    expect(run.events[0]).toEqual({ type: 'start' });
    expect(run.events.at(-1)).toEqual({ type: 'final', text });
  });

  test('a long message is spread over about three seconds, not one delay per word', async () => {
    const clock = new VirtualClock();
    const client = createAgentClient(agent({ type: 'echo' }), { leo: LEO, clock });
    const text = Array.from({ length: 1000 }, (_, i) => `w${i}`).join(' ');
    const run = drive(client.run(request(text), new AbortController().signal));
    const t0 = clock.monotonic();
    await clock.runAll();
    await run.done;
    expect(clock.monotonic() - t0).toBeLessThanOrEqual(3_000);
    expect(run.events.at(-1)).toEqual({ type: 'final', text });
  });

  test('an abort ends the stream with a non-retryable error', async () => {
    const clock = new VirtualClock();
    const client = createAgentClient(agent({ type: 'echo' }), { leo: LEO, clock });
    const ctrl = new AbortController();
    const run = drive(client.run(request('one two three'), ctrl.signal));
    await clock.flush();
    ctrl.abort(new Error('stop'));
    await run.done;
    expect(run.events.at(-1)).toMatchObject({ type: 'error', retryable: false });
  });
});

describe('script', () => {
  const script = {
    rules: [
      { pattern: '\\b(hi|hello)\\b', reply: 'Hello there!' },
      { pattern: 'order (\\d+)', reply: 'Order $1 is on its way ($&).' },
      { pattern: 'hello', reply: 'never reached: the first rule wins' },
    ],
    fallback: 'No idea.',
  };

  test('the first matching rule answers (case-insensitive), with $1 and $&; else the fallback', () => {
    const c = new ScriptAgentClient(script, new VirtualClock());
    expect(c.replyTo('HELLO you')).toBe('Hello there!');
    expect(c.replyTo('where is ORDER 42?')).toBe('Order 42 is on its way (ORDER 42).');
    expect(c.replyTo('something else')).toBe('No idea.');
    expect(new ScriptAgentClient({ rules: [] }, new VirtualClock()).replyTo('x')).toBe(DEFAULT_FALLBACK);
  });

  test('streams the reply word by word like echo', async () => {
    const clock = new VirtualClock();
    const client = createAgentClient(agent({ type: 'script', script }), { leo: LEO, clock });
    const run = drive(client.run(request('order 7 please'), new AbortController().signal));
    await clock.runAll();
    await run.done;
    const deltas = run.events.filter((e) => e.type === 'delta');
    expect(deltas.length).toBe(words('Order 7 is on its way (order 7).').length);
    expect(run.events.at(-1)).toEqual({ type: 'final', text: 'Order 7 is on its way (order 7).' });
  });

  test('problems name the field: bad regex, blank reply, unknown keys, too many rules', () => {
    expect(scriptProblems(script)).toEqual([]);
    expect(scriptProblems(null)).toEqual([]);
    const p = scriptProblems({
      rules: [
        { pattern: 'ok', reply: 'fine' },
        { pattern: '(unclosed', reply: ' ' },
      ],
      x: 1,
    });
    expect(p.map((x) => x.field).sort()).toEqual(
      ['agent.script.rules.1.pattern', 'agent.script.rules.1.reply', 'agent.script.x'].sort(),
    );
    expect(p.find((x) => x.field === 'agent.script.rules.1.pattern')!.problem).toContain(
      'not a valid regular expression',
    );
    expect(scriptProblems({ rules: Array.from({ length: 101 }, () => ({ pattern: 'a', reply: 'b' })) })[0].field).toBe(
      'agent.script.rules',
    );
    expect(scriptProblems('rules')[0].field).toBe('agent.script');
  });
});

describe('through the API and the pipeline', () => {
  test('a bad regex is a 400 naming the field; a good script is stored and shown', async () => {
    const t = createTestGateway();
    const bad = await t.call('POST', '/api/v2/instances', {
      name: 'scripted',
      channel: 'api',
      agent: { type: 'script', script: { rules: [{ pattern: 'a(b', reply: 'x' }] } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_ERROR');
    expect(bad.body.error.details).toContainEqual(expect.objectContaining({ field: 'agent.script.rules.0.pattern' }));
    expect(bad.body.error.message).toContain('agent.script.rules.0.pattern');
    const good = await t.call('POST', '/api/v2/instances', {
      name: 'scripted',
      channel: 'api',
      agent: { type: 'script', script: { rules: [{ pattern: 'ping', reply: 'pong' }] } },
    });
    expect(good.status).toBe(201);
    expect(good.body.data.agent).toMatchObject({
      type: 'script',
      script: { rules: [{ pattern: 'ping', reply: 'pong' }] },
    });
    const v1 = await t.call('POST', '/api/v1/instances', { name: 'echo-v1', channel: 'api', agent_type: 'echo' });
    expect(v1.status).toBe(201);
    expect(v1.body.agent_type).toBe('echo');
    await t.close();
  });

  test('a built-in agent runs in the pipeline and is traced like any agent', async () => {
    const t = createTestGateway();
    await t.gw.start();
    const inst = (
      await t.call('POST', '/api/v2/instances', {
        name: 'scripted',
        channel: 'api',
        agent: { type: 'script', script: { rules: [{ pattern: 'ping', reply: 'pong pong' }] } },
      })
    ).body.data;
    const res = await t.app.handle(
      new Request(`http://localhost/api/v2/agui/${inst.id}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': 'test-admin-key-0123456789abcdef' },
        body: JSON.stringify({ threadId: 't1', runId: 'r1', messages: [{ role: 'user', content: 'ping?' }] }),
      }),
    );
    const sse = await res.text();
    expect(sse).toContain('"RUN_FINISHED"');
    expect(sse).toContain('pong pong');
    const traces = (await t.call('GET', `/api/v2/traces?instanceId=${inst.id}`)).body.items;
    expect(traces).toHaveLength(1);
    // The stream ends on the reply; the trace is finished right after it.
    let trace: any;
    for (let i = 0; i < 100; i++) {
      trace = (await t.call('GET', `/api/v2/traces/${traces[0].traceId ?? traces[0].id}`)).body.data;
      if (trace.status !== 'pending' && trace.status !== 'processing') break;
      await Bun.sleep(20);
    }
    expect(trace.status).toBe('completed');
    const steps = (trace.steps as Array<{ step: string; status: string }>).map((s) => s.step);
    expect(steps).toContain('agent_called');
    await t.close();
  });
});
