// Slack through the whole gateway: real Bolt behind POST /webhook/slack/:name, the conversation
// pipeline, a stand-in agent and the local Slack Web API. Signed app_mention → threaded reply;
// bad signature → 401 and nothing stored; a retried event → one reply; edit mode ends with a
// chat.update equal to the full reply.
import { afterEach, describe, expect, test } from 'bun:test';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { eventCallback, signRequest } from '../fakes/slack/events.ts';
import { FakeSlack } from '../fakes/slack/server.ts';
import { until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const SECRET = 'e2e-signing-secret-0123456789abcdef';
const BOT_TOKEN = 'xoxb-e2e-bot-token';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(agent: FakeAgent, settings: Record<string, unknown> = {}) {
  const slack = new FakeSlack().start();
  cleanups.push(() => slack.stop());
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  cleanups.push(() => t.close());
  await t.gw.start();
  const res = await t.call('POST', '/api/v2/instances', {
    name: 'sl',
    channel: 'slack',
    channelConfig: { slackBotToken: BOT_TOKEN, slackSigningSecret: SECRET, slackApiUrl: slack.apiUrl },
    agent: { url: agent.url, type: agent.protocol === 'json' ? 'json' : 'agui', timeoutSeconds: 10 },
    settings,
  });
  expect(res.status).toBe(201);
  const id = res.body.data.id as string;
  await until(() => t.gw.instances.get(id)?.status === 'connected', 8000);
  const post = (body: unknown, opts: { secret?: string; headers?: Record<string, string> } = {}) => {
    const raw = JSON.stringify(body);
    return t.call('POST', '/webhook/slack/sl', raw, {
      ...signRequest(opts.secret ?? SECRET, raw),
      'x-api-key': '',
      ...opts.headers,
    });
  };
  const inboxRows = () => t.gw.db.query<{ n: number }, []>('SELECT COUNT(*) AS n FROM inbox').get()!.n;
  return { ...t, slack, id, post, inboxRows };
}

const mention = (text: string, ts: string, extra: Record<string, unknown> = {}) => ({
  type: 'app_mention',
  user: 'UHUMAN01',
  text: `<@UBOT0001> ${text}`,
  ts,
  channel: 'C0000001',
  ...extra,
});

describe('Slack through the gateway', () => {
  test('a signed app_mention produces a threaded reply from the agent', async () => {
    const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
    cleanups.push(() => agent.stop());
    const t = await setup(agent);
    const res = await t.post(eventCallback(mention('what time is it?', '1765375800.000100')));
    expect(res.status).toBe(200);
    expect(res.body.trace_id).toBeTruthy();
    await until(() => t.slack.callsOf('chat.postMessage').length >= 1, 8000);
    const p = t.slack.callsOf('chat.postMessage')[0];
    expect(p.params.channel).toBe('C0000001');
    expect(p.params.thread_ts).toBe('1765375800.000100');
    expect(p.params.text).toBe('echo: what time is it?');
    expect(p.token).toBe(BOT_TOKEN);
    expect(agent.requests.at(-1)!.message).toBe('what time is it?');
  });

  test('a bad signature → 401 and no inbox row; no agent call', async () => {
    const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
    cleanups.push(() => agent.stop());
    const t = await setup(agent);
    const res = await t.post(eventCallback(mention('forged', '1765375801.000100')), { secret: 'not-the-secret' });
    expect(res.status).toBe(401);
    await Bun.sleep(100);
    expect(t.inboxRows()).toBe(0);
    expect(agent.requests).toHaveLength(0);
    expect(t.slack.callsOf('chat.postMessage')).toHaveLength(0);
  });

  test('a retry with the same event_id gives one agent call and one reply', async () => {
    const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}`, latencyMs: 50 });
    cleanups.push(() => agent.stop());
    const t = await setup(agent);
    const body = eventCallback(mention('only once', '1765375802.000100'), { eventId: 'EvRETRY0001' });
    const first = await t.post(body);
    const retry = await t.post(body, { headers: { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' } });
    expect(first.status).toBe(200);
    expect(retry.status).toBe(200);
    expect(retry.body.trace_id).toBe(first.body.trace_id);
    await until(() => t.slack.callsOf('chat.postMessage').length >= 1, 8000);
    await Bun.sleep(200);
    expect(t.slack.callsOf('chat.postMessage')).toHaveLength(1);
    expect(agent.requests).toHaveLength(1);
    expect(t.inboxRows()).toBe(1);
  });

  test("replyMode 'edit' with a streaming agent ends with chat.update whose text equals the full reply", async () => {
    const full = Array.from({ length: 30 }, (_, i) => `token${i}`).join(' ');
    const agent = startFakeAgent({ protocol: 'agui', reply: () => full, deltaChars: 10, deltaDelayMs: 70 });
    cleanups.push(() => agent.stop());
    const t = await setup(agent, { replyMode: 'edit' });
    await t.post(eventCallback(mention('stream it', '1765375803.000100')));
    await until(() => t.slack.callsOf('chat.update').some((c) => c.params.text === full), 8000);
    const posts = t.slack.callsOf('chat.postMessage');
    expect(posts).toHaveLength(1);
    expect(posts[0].params.thread_ts).toBe('1765375803.000100');
    expect(full.startsWith(posts[0].params.text)).toBe(true);
    expect(posts[0].params.text.length).toBeLessThan(full.length);
    const updates = t.slack.callsOf('chat.update');
    expect(updates.at(-1)!.params.text).toBe(full);
    expect(updates.every((u) => u.params.channel === 'C0000001')).toBe(true);
  });
});
