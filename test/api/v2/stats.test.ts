// GET /api/v2/stats/overview and the conversation list's who-is-who fields, after real traffic
// through the Evolution and agent stand-ins; a trace answered on the first try shows 1 attempt.
import { describe, expect, test } from 'bun:test';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../../fixtures.ts';
import { createTestGateway } from '../../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-STATS' },
  agent: { protocol: 'agui', deltaChars: 3, deltaDelayMs: 5 },
  resetAfterEach: true,
});

async function setup() {
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  const a = await evolutionInstance(t, { name: 'alpha', ...fakes });
  const b = await evolutionInstance(t, { name: 'beta', ...fakes });
  await t.gw.start();
  return { ...t, a, b };
}

const terminal = async (t: Awaited<ReturnType<typeof setup>>, n: number) =>
  until(async () => {
    const res = await t.call('GET', '/api/v2/traces?status=completed,dead_lettered,failed');
    return res.body.items.length >= n;
  });

describe('GET /api/v2/stats/overview', () => {
  test('messages in, sent, latency and first token, agent failures and dead letters; per instance and in total', async () => {
    const t = await setup();
    fakes.agent.setBehaviour({ reply: (m) => `echo: ${m}` });
    await t.a.post(evolutionUpsert({ instance: 'alpha', id: 'a1', text: 'one', phone: '15550000001', name: 'Ana' }));
    await t.a.post(evolutionUpsert({ instance: 'alpha', id: 'a2', text: 'two', phone: '15550000002', name: 'Ana' }));
    await terminal(t, 2);
    fakes.agent.setBehaviour({ status: 500 });
    await t.b.post(evolutionUpsert({ instance: 'beta', id: 'b1', text: 'three', phone: '15550000003', name: 'Bo' }));
    await terminal(t, 3);
    await until(async () => (await t.call('GET', '/api/v2/stats/overview')).body.data.totals.sent === 2);

    const res = await t.call('GET', '/api/v2/stats/overview?window=hour');
    expect(res.status).toBe(200);
    const d = res.body.data;
    expect(d).toMatchObject({ window: 'hour', bucketSeconds: 60, instanceId: null, cluster: null });
    expect(d.series.t).toHaveLength(60);
    expect(Date.parse(d.end) - Date.parse(d.start)).toBe(3_600_000);
    expect(d.totals).toMatchObject({
      messagesIn: 3,
      sent: 2,
      agentFailures: 5, // every attempt (5 by default)
      deadLetters: 1,
      shed: 0,
      sendFailures: 0,
      backlog: 0,
      activeConversations: 3,
    });
    expect(d.totals.agentP50Ms).toBeGreaterThan(0);
    expect(d.totals.firstTokenP50Ms).toBeGreaterThanOrEqual(0); // the AG-UI stand-in streams
    // The series add up to the totals.
    const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
    for (const k of ['messagesIn', 'sent', 'agentFailures', 'deadLetters']) expect(sum(d.series[k])).toBe(d.totals[k]);
    const byName = Object.fromEntries(d.instances.map((i: any) => [i.name, i]));
    expect(byName.alpha.totals).toMatchObject({ messagesIn: 2, sent: 2, agentFailures: 0 });
    expect(byName.beta.totals).toMatchObject({ messagesIn: 1, sent: 0, agentFailures: 5, deadLetters: 1 });
    expect(byName.alpha.status).toEqual(expect.any(String));

    const one = (await t.call('GET', `/api/v2/stats/overview?instanceId=beta&window=day`)).body.data;
    expect(one).toMatchObject({ instanceId: t.b.id, bucketSeconds: 600 });
    expect(one.series.t).toHaveLength(144);
    expect(one.totals).toMatchObject({ messagesIn: 1, agentFailures: 5 });
    expect((await t.call('GET', '/api/v2/stats/overview?window=year')).status).toBe(400);

    // A key bound to one instance sees only it; the other is not found.
    const bound = t.gw.keys.create({ name: 'alpha only', scopes: ['events:read'], instanceIds: [t.a.id] }).key;
    const mine = await t.call('GET', '/api/v2/stats/overview', undefined, { 'x-api-key': bound });
    expect(mine.body.data.instances.map((i: any) => i.name)).toEqual(['alpha']);
    expect(mine.body.data.totals).toMatchObject({ messagesIn: 2, agentFailures: 0 });
    const theirs = await t.call('GET', `/api/v2/stats/overview?instanceId=${t.b.id}`, undefined, {
      'x-api-key': bound,
    });
    expect(theirs.status).toBe(404);

    // Figures come from the stored rows: a fresh gateway (no counters in memory) on the same database reports the same.
    const fresh = createTestGateway({}, { db: t.gw.db });
    const again = await fresh.call('GET', '/api/v2/stats/overview');
    expect(again.body.data.totals).toEqual(d.totals);
    await t.close();
  });

  test('a trace answered on the first try shows 1 attempt; one that failed every attempt shows 5', async () => {
    const t = await setup();
    await t.a.post(evolutionUpsert({ instance: 'alpha', id: 'ok', text: 'hello', phone: '15550000011' }));
    await terminal(t, 1);
    fakes.agent.setBehaviour({ status: 500 });
    await t.a.post(evolutionUpsert({ instance: 'alpha', id: 'bad', text: 'hello', phone: '15550000012' }));
    await terminal(t, 2);
    const items = (await t.call('GET', '/api/v2/traces')).body.items;
    const byStatus = Object.fromEntries(items.map((i: any) => [i.status, i.attempts]));
    expect(byStatus).toEqual({ completed: 1, dead_lettered: 5 });
    await t.close();
  });
});

describe('conversations: who is who, search and state', () => {
  test('two chats with one display name differ by phone; search by phone, name or text; filter by state', async () => {
    const t = await setup();
    await t.a.post(
      evolutionUpsert({ instance: 'alpha', id: 'p1', text: 'my order is late', phone: '15551110001', name: 'Pavan' }),
    );
    await t.a.post(
      evolutionUpsert({ instance: 'alpha', id: 'p2', text: 'hello there', phone: '15552220002', name: 'Pavan' }),
    );
    await terminal(t, 2);
    fakes.agent.setBehaviour({ status: 500 });
    await t.b.post(evolutionUpsert({ instance: 'beta', id: 'p3', text: 'broken', phone: '15553330003', name: 'Rita' }));
    await terminal(t, 3);

    const list = (await t.call('GET', '/api/v2/conversations')).body.items;
    const pavans = list.filter((c: any) => c.contact?.name === 'Pavan');
    expect(pavans.map((c: any) => c.contact.phone).sort()).toEqual(['+15551110001', '+15552220002']);
    const late = pavans.find((c: any) => c.contact.phone === '+15551110001');
    expect(late.lastMessage).toMatchObject({ text: 'my order is late', direction: 'in', status: 'completed' });
    expect(late.state).toBe('idle');

    const q = async (query: string) =>
      (await t.call('GET', `/api/v2/conversations?${query}`)).body.items.map((c: any) => c.contact?.phone);
    expect(await q('q=%2B1%20555-222-0002')).toEqual(['+15552220002']); // a phone typed with spaces and dashes
    expect(await q('q=15551110001')).toEqual(['+15551110001']);
    expect(await q('q=order%20is')).toEqual(['+15551110001']); // message text
    expect(await q('q=rita')).toEqual(['+15553330003']); // name, any case
    expect(await q('q=100%25')).toEqual([]); // % is literal
    expect(await q('state=failed')).toEqual(['+15553330003']);
    expect(await q(`state=failed&instanceId=${t.a.id}`)).toEqual([]);
    expect((await t.call('GET', '/api/v2/conversations?state=odd')).status).toBe(400);

    // Paused by the stop keyword's table (human takeover): the state says so.
    t.gw.db
      .query(
        "INSERT INTO conversation_pauses (instance_id, chat_key, reason, until, created_at) VALUES (?, '15551110001@s.whatsapp.net', 'human_takeover', NULL, ?)",
      )
      .run(t.a.id, new Date().toISOString());
    expect(await q('state=paused')).toEqual(['+15551110001']);
    const one = await t.call('GET', `/api/v2/conversations/${late.id}`);
    expect(one.body.data).toMatchObject({ state: 'paused', contact: { name: 'Pavan', phone: '+15551110001' } });
    await t.close();
  });
});
