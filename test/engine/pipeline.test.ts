// The message pipeline end to end, in process: Evolution webhook → inbox → conversation actor →
// JSON agent → Evolution sendText, with local stand-ins for Evolution and the agent.
import { describe, expect, test } from 'bun:test';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-123456' },
  agent: { protocol: 'json' },
  resetAfterEach: true,
});

const upsert = (id: string, text: string, phone?: string) =>
  evolutionUpsert({ instance: 'bot', id, text, phone, name: 'Pavan' });

async function setup(env: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', ...env });
  const { post } = await evolutionInstance(t, {
    name: 'bot',
    ...fakes,
    extra: { agent_api_key: 'agent-secret', ...extra },
  });
  await t.gw.start();
  return { ...t, post };
}

describe('pipeline', () => {
  test("the guide's webhook produces one agent call and one sendText, traced", async () => {
    const t = await setup();
    const res = await t.post(upsert('test_pavan_postman_001', 'give me a java code'));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('received');
    expect(res.body.message).toBe('Message accepted');
    await fakes.evo.waitForSent(1);
    expect(fakes.evo.sent[0].number).toBe('15551234567');
    expect(fakes.evo.sent[0].text).toBe('echo: give me a java code');
    expect(fakes.evo.sent[0].apikey).toBe('EVO-KEY-123456');
    const req = fakes.agent.requests.at(-1)!;
    expect(req.body.user_id).toBe('whatsapp:+15551234567');
    expect(req.body.context).toEqual({ channel: 'whatsapp', instance: 'bot', source: 'evolution-api' });
    expect(req.idempotencyKey).toBeTruthy();
    await until(() => t.gw.pipeline.traces.get(res.body.trace_id)?.status === 'completed');
    const trace = await t.call('GET', `/api/v1/traces/${res.body.trace_id}`);
    expect(trace.body.steps.map((s: any) => s.step)).toEqual([
      'webhook_received',
      'instance_validated',
      'access_control_checked',
      'agent_called',
      'evolution_api_called',
    ]);
    expect(trace.body.response_content).toBe('echo: give me a java code');
    const list = await t.call('GET', '/api/v1/traces?instance_name=bot');
    expect(list.body.total).toBe(1);
    await t.close();
  });

  test('a redelivered webhook is answered 200 and does nothing else', async () => {
    const t = await setup();
    for (let i = 0; i < 3; i++) expect((await t.post(upsert('dup-1', 'hello'))).status).toBe(200);
    await fakes.evo.waitForSent(1);
    await Bun.sleep(50);
    expect(fakes.evo.sent.length).toBe(1);
    expect(fakes.agent.requests.filter((r) => r.message === 'hello').length).toBe(1);
    await t.close();
  });

  test('wrong token is 401 and nothing is stored', async () => {
    const t = await setup();
    const res = await t.call('POST', '/webhook/evolution/bot?token=nope', upsert('x1', 'hi'), { 'x-api-key': '' });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('UNAUTHORIZED');
    expect(t.gw.db.query('SELECT COUNT(*) AS n FROM inbox').get()).toEqual({ n: 0 });
    // A body apikey equal to the instance's Evolution key is accepted (real Evolution servers send it).
    const ok = await t.call(
      'POST',
      '/webhook/evolution/bot',
      { ...upsert('x2', 'hi'), apikey: 'EVO-KEY-123456' },
      { 'x-api-key': '' },
    );
    expect(ok.status).toBe(200);
    await t.close();
  });

  test('50 messages to one chat with random agent latency are answered in order; 20 chats progress in parallel', async () => {
    const t = await setup();
    fakes.agent.setBehaviour({ latencyMs: { min: 0, max: 15 } });
    for (let i = 0; i < 50; i++) await t.post(upsert(`o-${i}`, `m${i}`, '1999'));
    await Promise.all(Array.from({ length: 20 }, (_, c) => t.post(upsert(`p-${c}`, `chat ${c}`, `1700${c}`))));
    await fakes.evo.waitForSent(70, 15000);
    expect(fakes.evo.sentTo('1999')).toEqual(Array.from({ length: 50 }, (_, i) => `echo: m${i}`));
    await t.close();
  });

  test('agent failures retry with the same Idempotency-Key, then dead-letter with the error reply', async () => {
    const t = await setup({ PIPELINE_MAX_ATTEMPTS: '3' }, { error_reply: 'Sorry, try again later.' });
    t.gw.settings.setMany({ 'pipeline.maxAttempts': 3 });
    fakes.agent.setBehaviour({ status: 503 });
    const res = await t.post(upsert('dl-1', 'will fail'));
    await until(() => t.gw.pipeline.traces.get(res.body.trace_id)?.status === 'dead_lettered');
    const calls = fakes.agent.requests.filter((r) => r.message === 'will fail');
    expect(calls.length).toBe(3);
    expect(new Set(calls.map((c) => c.idempotencyKey)).size).toBe(1);
    expect(fakes.evo.sent.map((s) => s.text)).toEqual(['Sorry, try again later.']);
    const dl = await t.call('GET', '/api/v2/dead-letters');
    expect(dl.body.items.length).toBe(1);
    // A replay while the row is not (yet) dead-lettered is refused and changes nothing.
    t.gw.db.run(`UPDATE inbox SET status = 'processing' WHERE id = '${res.body.trace_id}'`);
    expect((await t.call('POST', `/api/v2/dead-letters/${dl.body.items[0].id}/replay`)).status).toBe(409);
    expect((await t.call('GET', '/api/v2/dead-letters')).body.items.length).toBe(1);
    t.gw.db.run(`UPDATE inbox SET status = 'dead_lettered' WHERE id = '${res.body.trace_id}'`);
    // Replay after the agent recovers: the message completes.
    fakes.agent.setBehaviour({ status: null });
    const rp = await t.call('POST', `/api/v2/dead-letters/${dl.body.items[0].id}/replay`);
    expect(rp.status).toBe(200);
    await until(() => t.gw.pipeline.traces.get(res.body.trace_id)?.status === 'completed');
    expect(fakes.evo.sent.at(-1)!.text).toBe('echo: will fail');
    await t.close();
  });
});

describe('conversations and browser-style keys', () => {
  test('a conversation is listed by activity and readable by id; ?apiKey= works on routes with query filters', async () => {
    const t = await setup();
    const res = await t.post(upsert('conv-1', 'hello there', '15557770000'));
    await until(() => t.gw.pipeline.traces.get(res.body.trace_id)?.status === 'completed');
    const list = await t.call(
      'GET',
      `/api/v2/conversations?limit=5&apiKey=${encodeURIComponent(ADMIN_KEY)}`,
      undefined,
      { 'x-api-key': '' },
    );
    expect(list.status).toBe(200);
    const conv = list.body.items[0];
    expect(conv.chat.chatId).toBe('15557770000@s.whatsapp.net');
    const one = await t.call('GET', `/api/v2/conversations/${conv.id}`);
    expect(one.body.data.id).toBe(conv.id);
    const traces = await t.call('GET', `/api/v2/traces?conversationId=${conv.id}`);
    expect(traces.body.items.map((i: any) => i.text)).toEqual(['hello there']);
    // Traces by id (the cluster asks its peers for their copies of a page's ids this way).
    const second = await t.post(upsert('conv-2', 'and again', '15557770001'));
    expect(
      (await t.call('GET', `/api/v2/traces?ids=${second.body.trace_id},nope`)).body.items.map((i: any) => i.id),
    ).toEqual([second.body.trace_id]);
    const tooMany = await t.call(
      'GET',
      `/api/v2/traces?ids=${Array.from({ length: 101 }, (_, i) => `t${i}`).join(',')}`,
    );
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.code).toBe('VALIDATION_ERROR');
    expect((await t.call('GET', '/api/v2/conversations/c_nope')).status).toBe(404);
    await t.close();
  });

  test('invalid keyword-gate settings are rejected when the instance is saved', async () => {
    const t = await setup();
    const bad = await t.call('PATCH', '/api/v2/instances/bot', {
      settings: { triggers: [{ type: 'regex', value: '(' }] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details[0].field).toBe('settings.triggers');
    await t.close();
  });
});

describe('typing indicator', () => {
  test('an instant reply sends no presence; a slow agent gets composing, then paused, then the reply', async () => {
    const t = await setup({ TYPING_DELAY_MS: '60' });
    await t.post(upsert('ty-1', 'quick', '15553330000'));
    await fakes.evo.waitForSent(1);
    await Bun.sleep(100);
    expect(fakes.evo.calls.filter((c) => c.route === 'sendPresence').length).toBe(0);
    fakes.agent.setBehaviour({ latencyMs: 250 });
    await t.post(upsert('ty-2', 'slow', '15553330000'));
    await fakes.evo.waitForSent(2);
    await until(() => fakes.evo.calls.filter((c) => c.route === 'sendPresence').length === 2);
    const presences = fakes.evo.calls.filter((c) => c.route === 'sendPresence').map((c) => c.body.presence);
    expect(presences).toEqual(['composing', 'paused']);
    await t.close();
  });
});

describe('inactive instances', () => {
  test('a webhook for an inactive instance is refused with 503 + Retry-After (the sender keeps it), nothing is stored', async () => {
    const t = await setup();
    expect((await t.call('PATCH', '/api/v2/instances/bot', { isActive: false })).status).toBe(200);
    const res = await t.post(upsert('inactive-1', 'anyone there?'));
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('UNAVAILABLE');
    expect(res.headers.get('retry-after')).toBe('60');
    expect(t.gw.db.query('SELECT COUNT(*) AS n FROM inbox').get()).toEqual({ n: 0 });
    await t.close();
  });
});

describe('unexpected failures', () => {
  test('a message whose processing keeps throwing outside the retry loop ends failed after the attempt limit; the chat moves on', async () => {
    const t = await setup();
    t.gw.settings.setMany({ 'pipeline.maxAttempts': 2 });
    // The pipeline's access step calls the access service: make it throw for one message.
    const check = t.gw.access.check.bind(t.gw.access);
    t.gw.access.check = (inst, msg) => {
      if (msg.text === 'poison') throw new Error('simulated database failure in the access step');
      return check(inst, msg);
    };
    const bad = await t.post(upsert('un-1', 'poison', '15556660000'));
    await t.post(upsert('un-2', 'after the poison', '15556660000'));
    await until(() => t.gw.pipeline.traces.get(bad.body.trace_id)?.status === 'failed', 10_000, 'poison failed');
    await fakes.evo.waitForSent(1);
    expect(fakes.evo.sentTo('15556660000')).toEqual(['echo: after the poison']);
    const trace = await t.call('GET', `/api/v2/traces/${bad.body.trace_id}`);
    expect(trace.body.data.steps.map((s: any) => s.step)).toContain('failed_unexpectedly');
    await t.close();
  });
});
