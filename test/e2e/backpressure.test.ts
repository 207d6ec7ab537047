// Backpressure: per-conversation backlog bound (shed), global bound (503 + Retry-After), and a
// flooded conversation that does not starve the others (fair agent concurrency).
import { describe, expect, test } from 'bun:test';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({ evolution: { apikey: 'EVO-KEY-123456' }, agent: { protocol: 'json' } });

const upsert = (id: string, text: string, phone: string) => evolutionUpsert({ id, text, phone });

async function setup(env: Record<string, string>) {
  fakes.evo.reset();
  const t = createTestGateway(env);
  const { post } = await evolutionInstance(t, { name: 'bp', ...fakes, extra: { agent_timeout: 10 } });
  await t.gw.start();
  return { ...t, post };
}

describe('backpressure', () => {
  test('beyond the per-conversation backlog, messages are shed (terminal, traced) instead of reaching the agent', async () => {
    fakes.agent.setBehaviour({ latencyMs: 40 });
    const t = await setup({ CONVERSATION_BACKLOG_LIMIT: '3' });
    const answers: any[] = [];
    for (let i = 0; i < 10; i++) answers.push((await t.post(upsert(`f-${i}`, `flood ${i}`, '1888'))).body);
    const shed = answers.filter((a) => a.message.includes('shed'));
    expect(shed.length).toBeGreaterThan(0);
    for (const a of answers) expect(a.status).toBe('received'); // acknowledged: never dropped silently
    const rows = t.gw.db.query<{ status: string }, []>("SELECT status FROM inbox WHERE status = 'shed'").all();
    expect(rows.length).toBe(shed.length);
    const trace = await t.call('GET', `/api/v2/traces/${shed[0].trace_id}`);
    expect(trace.body.data.status).toBe('shed');
    expect(trace.body.data.steps.map((s: any) => s.step)).toContain('shed');
    // The shed messages never reach the agent; the others are answered.
    await fakes.evo.waitForSent(10 - shed.length, 10000);
    const asked = new Set(fakes.agent.requests.map((r) => r.message));
    for (let i = 0; i < 10; i++)
      if (shed.some((s) => s.trace_id === answers[i].trace_id)) expect(asked.has(`flood ${i}`)).toBe(false);
    fakes.agent.setBehaviour({ latencyMs: 0 });
    await t.close();
  });

  test('the global backlog bound answers 503 UNAVAILABLE with Retry-After and stores nothing', async () => {
    fakes.agent.setBehaviour({ latencyMs: 200 });
    const t = await setup({ GLOBAL_BACKLOG_LIMIT: '5' });
    const statuses: number[] = [];
    let refused: any = null;
    for (let i = 0; i < 8; i++) {
      const r = await t.post(upsert(`g-${i}`, `g ${i}`, `1777${i}`));
      statuses.push(r.status);
      if (r.status === 503) refused = r;
    }
    expect(statuses.filter((s) => s === 200).length).toBe(5);
    expect(refused.body.error.code).toBe('UNAVAILABLE');
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(t.gw.db.query<{ n: number }, []>('SELECT COUNT(*) AS n FROM inbox').get()!.n).toBe(5);
    fakes.agent.setBehaviour({ latencyMs: 0 });
    await fakes.evo.waitForSent(5, 10000);
    await t.close();
  });

  test('a flooded conversation does not starve quiet ones: agent slots are shared fairly', async () => {
    fakes.agent.setBehaviour({ latencyMs: 15 });
    const t = await setup({ AGENT_CONCURRENCY: '2' });
    for (let i = 0; i < 40; i++) await t.post(upsert(`fl-${i}`, `flood ${i}`, '1666'));
    await Promise.all(Array.from({ length: 6 }, (_, c) => t.post(upsert(`q-${c}`, `quiet ${c}`, `1555${c}`))));
    await fakes.evo.waitForSent(46, 15000);
    const order = fakes.evo.sent.map((s) => s.text);
    const lastQuiet = Math.max(...Array.from({ length: 6 }, (_, c) => order.indexOf(`echo: quiet ${c}`)));
    // Round-robin over 7 conversations with 2 slots: every quiet chat is answered within the first few
    // rounds, long before the flood's 40 messages are done.
    expect(lastQuiet).toBeLessThan(20);
    expect(fakes.evo.sentTo('1666')).toEqual(Array.from({ length: 40 }, (_, i) => `echo: flood ${i}`));
    fakes.agent.setBehaviour({ latencyMs: 0 });
    await t.close();
  });
});

describe('passivation', () => {
  test('idle conversation actors passivate on the (virtual) clock and come back on the next message', async () => {
    const { VirtualClock } = await import('../../actors/runtime/virtual-clock.ts');
    const clock = new VirtualClock(Date.now());
    fakes.evo.reset();
    const t = createTestGateway({ ACTOR_IDLE_MS: '1000' }, { clock });
    const res = await t.call('POST', '/api/v1/instances', {
      name: 'pv',
      evolution_url: fakes.evo.url,
      evolution_key: fakes.evo.apikey,
      agent_api_url: fakes.agent.url,
    });
    await t.gw.start();
    const token = new URL(res.body.webhook_url).searchParams.get('token')!;
    const post = (b: unknown) => t.call('POST', `/webhook/evolution/pv?token=${token}`, b, { 'x-api-key': '' });
    await post(upsert('pv-1', 'one', '1444'));
    await fakes.evo.waitForSent(1);
    // The reply left; wait (in real time) until the actor has committed and gone idle.
    while (t.gw.pipeline.conversations.stats().busy > 0) await Bun.sleep(2);
    expect(t.gw.pipeline.conversations.stats().active).toBe(1);
    await clock.advance(999);
    expect(t.gw.pipeline.conversations.stats().active).toBe(1);
    await clock.advance(1000);
    expect(t.gw.pipeline.conversations.stats().active).toBe(0);
    expect(t.gw.pipeline.conversations.stats().passivated).toBe(1);
    await post(upsert('pv-2', 'two', '1444'));
    await fakes.evo.waitForSent(2);
    expect(fakes.evo.sentTo('1444')).toEqual(['echo: one', 'echo: two']);
    await t.close();
  });
});

describe('backlog accounting', () => {
  test('the conversation bound counts unfinished messages only: a long conversation is never shed for its history', async () => {
    fakes.agent.setBehaviour({ latencyMs: 0 });
    const t = await setup({ CONVERSATION_BACKLOG_LIMIT: '3' });
    for (let i = 0; i < 12; i++) {
      const r = await t.post(upsert(`long-${i}`, `m ${i}`, '1333'));
      expect(r.body.message).toBe('Message accepted');
      await fakes.evo.waitForSent(i + 1);
      while (t.gw.pipeline.inbox.conversationBacklog(r.body.trace_id) > 0 || t.gw.pipeline.inbox.depth > 0)
        await Bun.sleep(2);
    }
    expect(fakes.evo.sentTo('1333').length).toBe(12);
    await t.close();
  });
});

describe('safety net', () => {
  test('a pending message whose wake-up was lost is picked up by the periodic sweep (virtual clock)', async () => {
    const { VirtualClock } = await import('../../actors/runtime/virtual-clock.ts');
    const clock = new VirtualClock(Date.now());
    fakes.evo.reset();
    const t = createTestGateway({}, { clock });
    const res = await t.call('POST', '/api/v1/instances', {
      name: 'sw',
      evolution_url: fakes.evo.url,
      evolution_key: fakes.evo.apikey,
      agent_api_url: fakes.agent.url,
    });
    await t.gw.start();
    const token = new URL(res.body.webhook_url).searchParams.get('token')!;
    // Lose the wake-up: while this node "does not own" the conversation, ingest stores without waking.
    const placement = t.gw.pipeline.placement;
    const owns = placement.ownsConversation;
    placement.ownsConversation = () => false;
    const ack = await t.call('POST', `/webhook/evolution/sw?token=${token}`, upsert('sw-1', 'lost wake', '1222'), {
      'x-api-key': '',
    });
    expect(ack.body.status).toBe('received');
    placement.ownsConversation = owns;
    await Bun.sleep(50);
    expect(fakes.evo.sent.length).toBe(0);
    await clock.advance(30_000);
    await fakes.evo.waitForSent(1);
    expect(fakes.evo.sentTo('1222')).toEqual(['echo: lost wake']);
    await t.close();
  });
});

describe('graceful shutdown', () => {
  test('the turn in flight finishes; queued messages are not started and stay pending for the next start', async () => {
    fakes.agent.setBehaviour({ latencyMs: 150 });
    const t = await setup({});
    for (let i = 0; i < 4; i++) await t.post(upsert(`gs-${i}`, `queued ${i}`, '1111'));
    await until(() => fakes.agent.requests.some((r) => r.message === 'queued 0'), 5000, 'first agent call');
    const db = t.gw.db;
    const pendingBefore = () =>
      (db.query("SELECT COUNT(*) AS n FROM inbox WHERE status IN ('pending','processing')").get() as { n: number }).n;
    expect(pendingBefore()).toBe(4);
    // Keep the database open after close() to inspect it: close everything but the file.
    const closeDb = db.close.bind(db);
    db.close = () => {};
    await t.close();
    expect(fakes.agent.requests.filter((r) => r.message.startsWith('queued')).map((r) => r.message)).toEqual([
      'queued 0',
    ]);
    expect(fakes.evo.sentTo('1111')).toEqual(['echo: queued 0']);
    expect(pendingBefore()).toBe(3);
    closeDb();
    fakes.agent.setBehaviour({ latencyMs: 0 });
  });
});

describe('retention', () => {
  test('finished messages and events past retention are deleted; unfinished ones and the dedupe window are kept', async () => {
    const { VirtualClock } = await import('../../actors/runtime/virtual-clock.ts');
    const clock = new VirtualClock(Date.now());
    const t = createTestGateway({}, { clock });
    const { post } = await evolutionInstance(t, { name: 'ret', ...fakes });
    await t.gw.start();
    await post(upsert('ret-1', 'old message', '1999000'));
    await fakes.evo.waitForSent(1);
    await until(
      () =>
        (t.gw.db.query("SELECT COUNT(*) AS n FROM inbox WHERE status = 'completed'").get() as { n: number }).n === 1,
      5000,
      'completed',
    );
    t.gw.events.flush();
    await Bun.sleep(30);
    t.gw.events.flush();
    const count = (table: string) => (t.gw.db.query(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    expect(count('events')).toBeGreaterThan(0);
    // 15 days later: past the 14-day dedupe window but within the 30-day trace retention → kept.
    await clock.advance(15 * 86_400_000);
    expect(count('inbox')).toBe(1);
    // 31 days later: past both → the message, its steps and its events are gone.
    await clock.advance(16 * 86_400_000);
    expect(count('inbox')).toBe(0);
    expect(count('trace_steps')).toBe(0);
    expect(count('events')).toBe(0);
    await t.close();
  });
});

describe('instance deletion', () => {
  test('deleting an instance with unanswered messages frees their place in the global bound', async () => {
    fakes.agent.setBehaviour({ latencyMs: 300 });
    const t = createTestGateway({ GLOBAL_BACKLOG_LIMIT: '3' });
    const a = await evolutionInstance(t, { name: 'gone', ...fakes });
    const b = await evolutionInstance(t, { name: 'stays', ...fakes });
    await t.gw.start();
    for (let i = 0; i < 3; i++) expect((await a.post(upsert(`del-${i}`, `m ${i}`, `1555000${i}`))).status).toBe(200);
    expect((await b.post(upsert('full', 'refused', '15559999'))).status).toBe(503);
    expect((await t.call('DELETE', '/api/v2/instances/gone')).status).toBe(200);
    expect(t.gw.pipeline.inbox.depth).toBe(0);
    expect((await b.post(upsert('after', 'accepted now', '15559999'))).status).toBe(200);
    fakes.agent.setBehaviour({ latencyMs: 0 });
    await t.close();
  });
});
