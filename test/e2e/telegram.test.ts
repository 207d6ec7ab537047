// Telegram through the whole gateway: grammY behind POST /webhook/telegram/:name, the conversation
// pipeline, a stand-in agent and the Bot API stand-in. Right secret → one agent call and one
// sendMessage in the right thread; wrong secret → 401 and nothing; edits are recorded, not
// answered; long replies are split in order; 429 is waited out; `edit` mode streams by editing.
import { afterEach, describe, expect, test } from 'bun:test';
import { type FakeAgent, type FakeBehaviour, type FakeProtocol, startFakeAgent } from '../fakes/agents.ts';
import { FakeTelegram } from '../fakes/telegram/server.ts';
import { ALICE, editedUpdate, GROUP_ID, mentionEntity, message, messageUpdate } from '../fakes/telegram/updates.ts';
import { until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const PUBLIC_URL = 'https://gw.example.test';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(agent: FakeAgent, settings: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const tg = new FakeTelegram().start();
  cleanups.push(() => tg.stop());
  const t = createTestGateway({
    PUBLIC_URL,
    PIPELINE_RETRY_BASE_MS: '5',
    PIPELINE_RETRY_MAX_MS: '20',
    TYPING_DELAY_MS: '0',
    ...env,
  });
  cleanups.push(() => t.close());
  await t.gw.start();
  const res = await t.call('POST', '/api/v2/instances', {
    name: 'tg',
    channel: 'telegram',
    channelConfig: { telegramBotToken: tg.token, telegramApiUrl: tg.apiUrl, telegramMode: 'webhook' },
    agent: { url: agent.url, type: agent.protocol === 'json' ? 'json' : 'agui', timeoutSeconds: 10 },
    settings,
  });
  expect(res.status).toBe(201);
  expect(res.body.data.channelConfig.telegramBotToken).not.toBe(tg.token); // masked
  const id = res.body.data.id as string;
  await until(() => t.gw.instances.get(id)?.status === 'connected', 8000);
  const secret = tg.webhook?.secretToken ?? '';
  const post = (update: unknown, opts: { secret?: string; name?: string } = {}) =>
    t.call('POST', `/webhook/telegram/${opts.name ?? 'tg'}`, JSON.stringify(update), {
      'x-telegram-bot-api-secret-token': opts.secret ?? secret,
      'x-api-key': '',
    });
  const inboxRows = () => t.gw.db.query<{ n: number }, []>('SELECT COUNT(*) AS n FROM inbox').get()!.n;
  return { ...t, tg, id, post, inboxRows };
}

function agentFor(opts: Partial<FakeBehaviour> & { protocol?: FakeProtocol } = {}) {
  const agent = startFakeAgent({ reply: (m) => `echo: ${m}`, ...opts, protocol: opts.protocol ?? 'json' });
  cleanups.push(() => agent.stop());
  return agent;
}

describe('Telegram through the gateway', () => {
  test('setWebhook registered the public URL with a secret; the right secret → one agent call, one sendMessage in the topic', async () => {
    const agent = agentFor({ latencyMs: 50 });
    const t = await setup(agent);
    expect(t.tg.webhook?.url).toBe(`${PUBLIC_URL}/webhook/telegram/tg`);
    const text = `@${t.tg.username} what time is it?`;
    const m = message(text, { chatId: GROUP_ID, topicId: 42, entities: mentionEntity(text, t.tg.username) });
    const res = await t.post(messageUpdate(m));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('received');
    expect(res.body.trace_id).toBeTruthy();
    await until(() => t.tg.callsOf('sendMessage').length >= 1, 8000);
    await Bun.sleep(150);
    expect(agent.requests).toHaveLength(1);
    expect(agent.requests[0].message).toBe('what time is it?');
    const sends = t.tg.callsOf('sendMessage');
    expect(sends).toHaveLength(1);
    expect(sends[0].params).toMatchObject({
      chat_id: GROUP_ID,
      message_thread_id: 42,
      text: 'echo: what time is it?',
      reply_parameters: { message_id: m.message_id },
    });
    expect(sends[0].params.parse_mode).toBeUndefined();
    expect(sends[0].token).toBe(t.tg.token);
    // "typing…" in the same topic while the agent worked.
    expect(t.tg.callsOf('sendChatAction')[0]?.params).toMatchObject({ chat_id: GROUP_ID, message_thread_id: 42 });
    // The same update again (Telegram redelivers when unsure): no second turn.
    const again = await t.post(messageUpdate(m));
    expect(again.body.status).toBe('duplicate');
    await Bun.sleep(150);
    expect(agent.requests).toHaveLength(1);
    expect(t.tg.callsOf('sendMessage')).toHaveLength(1);
  });

  test('a wrong secret → 401: no inbox row, no agent call, no send; an unknown name → 401 too', async () => {
    const agent = agentFor();
    const t = await setup(agent);
    const res = await t.post(messageUpdate(message('forged')), { secret: 'not-the-secret' });
    expect(res.status).toBe(401);
    expect((await t.post(messageUpdate(message('forged')), { secret: '' })).status).toBe(401);
    expect((await t.post(messageUpdate(message('forged')), { name: 'nope' })).status).toBe(401);
    await Bun.sleep(150);
    expect(t.inboxRows()).toBe(0);
    expect(agent.requests).toHaveLength(0);
    expect(t.tg.callsOf('sendMessage')).toHaveLength(0);
  });

  test('an edited message is recorded (trace, event), not answered; the sender is one person', async () => {
    const agent = agentFor();
    const t = await setup(agent);
    const original = message('first version');
    await t.post(messageUpdate(original));
    await until(() => t.tg.callsOf('sendMessage').length === 1, 8000);
    const res = await t.post(editedUpdate(original, 'second version'));
    expect(res.body.status).toBe('received');
    const trace = async () => (await t.call('GET', `/api/v2/traces/${res.body.trace_id}`)).body.data;
    await until(async () => (await trace()).status === 'completed', 5000);
    expect((await trace()).steps.map((s: any) => s.step)).toContain('recorded_only');
    await until(async () => {
      const events = (await t.call('GET', '/api/v2/events?eventType=message.received')).body.items;
      return events.some((e: any) => e.text === 'second version');
    }, 5000);
    expect(agent.requests).toHaveLength(1);
    expect(t.tg.callsOf('sendMessage')).toHaveLength(1);
    // The sender is one person whose identity is the Telegram user id.
    t.gw.events.flush();
    const persons = (await t.call('GET', '/api/v2/persons')).body.items;
    expect(persons).toHaveLength(1);
    expect(persons[0].displayName).toBe('Alice Doe');
    expect(persons[0].identities).toHaveLength(1);
    expect(persons[0].identities[0]).toMatchObject({ platform: 'telegram', platformUserId: String(ALICE.id) });
  });

  test('a 5,000-character reply is two messages, in order, the first quoting nothing in a private chat', async () => {
    const long = Array.from({ length: 1000 }, (_, i) => `w${String(i).padStart(3, '0')}`).join(' ');
    const reply = `${long}!`;
    const agent = agentFor({ reply: () => reply });
    const t = await setup(agent);
    await t.post(messageUpdate(message('write a lot')));
    await until(() => t.tg.callsOf('sendMessage').length >= 2, 8000);
    const sends = t.tg.callsOf('sendMessage');
    expect(sends).toHaveLength(2);
    expect(sends.map((s) => s.params.text).join(' ')).toBe(reply);
    expect(sends.every((s) => s.params.chat_id === ALICE.id && (s.params.text as string).length <= 4096)).toBe(true);
    expect(sends[0].params.reply_parameters).toBeUndefined();
  });

  test('429 with retry_after: the reply is sent once, after waiting at least retry_after', async () => {
    const agent = agentFor();
    const t = await setup(agent);
    t.tg.failNext('sendMessage', { status: 429, retryAfter: 1 });
    const res = await t.post(messageUpdate(message('rate me')));
    await until(() => t.tg.callsOf('sendMessage').length >= 2, 8000);
    const [limited, sent] = t.tg.callsOf('sendMessage');
    expect(sent.at - limited.at).toBeGreaterThanOrEqual(950);
    const steps = (await t.call('GET', `/api/v2/traces/${res.body.trace_id}`)).body.data.steps;
    const retry = steps.find((s: any) => s.step === 'retry_scheduled');
    expect(retry.details.delay_ms).toBeGreaterThanOrEqual(1000);
    await Bun.sleep(100);
    expect(t.tg.callsOf('sendMessage')).toHaveLength(2);
    expect(agent.requests).toHaveLength(1);
  });

  test("replyMode 'edit' with a streaming agent: one sendMessage, then edits ending with the full reply", async () => {
    const full = Array.from({ length: 30 }, (_, i) => `token${i}`).join(' ');
    const agent = agentFor({ protocol: 'agui', reply: () => full, deltaChars: 10, deltaDelayMs: 70 });
    const t = await setup(agent, { replyMode: 'edit' });
    await t.post(messageUpdate(message('stream it')));
    await until(() => t.tg.callsOf('editMessageText').some((c) => c.params.text === full), 10_000);
    const posts = t.tg.callsOf('sendMessage');
    expect(posts).toHaveLength(1);
    expect(full.startsWith(posts[0].params.text as string)).toBe(true);
    expect((posts[0].params.text as string).length).toBeLessThan(full.length);
    const edits = t.tg.callsOf('editMessageText');
    expect(edits.at(-1)!.params).toMatchObject({ chat_id: ALICE.id, text: full });
    // Within Telegram's per-chat pace (one a second in a private chat).
    for (let i = 1; i < edits.length; i++) expect(edits[i].at - edits[i - 1].at).toBeGreaterThanOrEqual(900);
  });
});
