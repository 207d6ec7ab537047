// Conversation modes through the whole gateway and the Evolution stand-in: a burst in `collect`
// mode is one agent call and one reply (quoting the last fragment); in `interrupt` mode a second
// message during a slow agent call gives one reply answering both; the settings' default applies
// to instances without their own `messaging`. Debounces are short so the suite stays fast.
import { afterAll, describe, expect, test } from 'bun:test';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-MODES-KEY' },
  agent: { protocol: 'json' },
  resetAfterEach: true,
});
const t = createTestGateway();
afterAll(() => t.close());

const seen = () => fakes.agent.requests.length;

describe('conversation modes end to end', () => {
  test('collect: five messages within the window → exactly one agent call and one reply', async () => {
    await t.gw.start();
    const before = seen();
    const bot = await evolutionInstance(t, {
      name: 'modes-collect',
      evo: fakes.evo,
      agent: fakes.agent,
      extra: { evolution_quote_replies: true },
    });
    const patched = await t.call('PATCH', `/api/v2/instances/${bot.id}`, {
      messaging: { mode: 'collect', debounceMs: 800 },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.data.messaging).toMatchObject({ mode: 'collect', debounceMs: 800 });

    const texts = ['hi', 'I need', 'to change', 'my order', 'number 42'];
    const traces: string[] = [];
    for (const [i, text] of texts.entries()) {
      const res = await bot.post(evolutionUpsert({ id: `COLLECT-${i}`, text, phone: '15550001111' }));
      expect(res.status).toBe(200);
      traces.push(res.body.trace_id);
      await Bun.sleep(40);
    }
    await until(() => fakes.evo.sent.length === 1, 5_000, 'the reply');
    await Bun.sleep(1_000); // longer than the window: nothing else is sent
    expect(seen() - before).toBe(1);
    expect(fakes.evo.sent).toHaveLength(1);
    const req = fakes.agent.requests.at(-1)!;
    expect(req.body.message).toBe(texts.join('\n'));
    expect(req.body.messages.map((m: { id: string; text: string }) => [m.id, m.text])).toEqual(
      traces.map((id, i) => [id, texts[i]]),
    );
    expect(fakes.evo.sent[0]!.text).toBe(`echo: ${texts.join('\n')}`);
    // The reply quotes the last fragment.
    expect(fakes.evo.sent[0]!.body.quoted?.key?.id).toBe('COLLECT-4');

    // Every fragment's trace says it was answered in the same batch.
    const batchIds = new Set<string>();
    for (const id of traces) {
      const trace = (await t.call('GET', `/api/v2/traces/${id}`)).body.data;
      expect(trace.status).toBe('completed');
      const batched = trace.steps.find((s: { step: string }) => s.step === 'batched');
      batchIds.add(batched.details.batch_id);
    }
    expect(batchIds.size).toBe(1);
  });

  test('interrupt: a second message during a slow agent call → one reply answering both', async () => {
    const before = seen();
    const bot = await evolutionInstance(t, { name: 'modes-interrupt', evo: fakes.evo, agent: fakes.agent });
    expect((await t.call('PATCH', `/api/v2/instances/${bot.id}`, { messaging: { mode: 'interrupt' } })).status).toBe(
      200,
    );
    fakes.agent.setBehaviour({ latencyMs: 1_500 });
    await bot.post(evolutionUpsert({ id: 'INT-1', text: 'what is my balance', phone: '15550002222' }));
    await until(() => seen() - before === 1, 5_000, 'the first agent call');
    fakes.agent.setBehaviour({ latencyMs: 50 });
    await bot.post(evolutionUpsert({ id: 'INT-2', text: 'and my last payment', phone: '15550002222' }));
    await until(() => fakes.evo.sent.length === 1, 5_000, 'the reply');
    await Bun.sleep(200);

    const calls = fakes.agent.requests.slice(before);
    expect(calls.map((r) => r.message)).toEqual(['what is my balance', 'what is my balance\nand my last payment']);
    expect(calls[0]!.clientAborted).toBe(true);
    expect(fakes.evo.sent.map((s) => s.text)).toEqual(['echo: what is my balance\nand my last payment']);
  });

  test('an instance without its own messaging runs the settings default (messaging.defaultMode)', async () => {
    const set = await t.call('PATCH', '/api/v2/settings', {
      'messaging.defaultMode': 'collect',
      'messaging.defaultDebounceMs': 600,
    });
    expect(set.status).toBe(200);
    try {
      const before = seen();
      const bot = await evolutionInstance(t, { name: 'modes-default', evo: fakes.evo, agent: fakes.agent });
      expect((await t.call('GET', `/api/v2/instances/${bot.id}`)).body.data.messaging).toMatchObject({
        mode: 'collect',
        debounceMs: 600,
      });
      for (const [i, text] of ['one', 'two', 'three'].entries())
        await bot.post(evolutionUpsert({ id: `DEF-${i}`, text, phone: '15550003333' }));
      await until(() => fakes.evo.sent.length === 1, 5_000, 'the reply');
      await Bun.sleep(800);
      expect(seen() - before).toBe(1);
      expect(fakes.evo.sent.map((s) => s.text)).toEqual(['echo: one\ntwo\nthree']);
    } finally {
      await t.call('PATCH', '/api/v2/settings', {
        'messaging.defaultMode': 'sequential',
        'messaging.defaultDebounceMs': 0,
      });
    }
  });

  test('out-of-range global defaults are a 400 naming the key', async () => {
    const res = await t.call('PATCH', '/api/v2/settings', {
      'messaging.defaultMode': 'parallel',
      'messaging.defaultDebounceMs': 60_000,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual([
      'messaging.defaultDebounceMs',
      'messaging.defaultMode',
    ]);
  });
});
