// Discord through the whole gateway: real discord.js against the local gateway + REST stand-in,
// the conversation pipeline and a stand-in agent. DM → reply with a nonce; guild mention gating
// and order; edit reply mode with a streaming agent ends with a PATCH equal to the full reply.
import { afterEach, describe, expect, test } from 'bun:test';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { discordThroughGateway } from '../fakes/discord/gateway.ts';
import { BOT_USER, DM_CHANNEL_ID, type FakeDiscord, TEXT_CHANNEL_ID } from '../fakes/discord/server.ts';
import { until } from '../fixtures.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup(agent: FakeAgent, settings: Record<string, unknown> = {}) {
  return discordThroughGateway(
    { url: agent.url, type: agent.protocol === 'json' ? 'json' : 'agui' },
    cleanups,
    settings,
  );
}

const posts = (d: FakeDiscord, channel: string) =>
  d.sent.filter((c) => c.method === 'POST' && c.path === `/channels/${channel}/messages`);
const patches = (d: FakeDiscord, channel: string) =>
  d.sent.filter((c) => c.method === 'PATCH' && c.path.startsWith(`/channels/${channel}/messages/`));

describe('Discord through the gateway', () => {
  test('a DM produces an agent call and a reply posted with a nonce (enforce_nonce), referencing the message', async () => {
    const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
    cleanups.push(() => agent.stop());
    const t = await setup(agent);
    const st = await t.call('GET', `/api/v2/instances/${t.id}/status`);
    expect(st.body.data).toMatchObject({ status: 'connected', running: true });

    const msgId = t.discord.dispatchMessage({ content: 'hello bot' });
    await until(() => posts(t.discord, DM_CHANNEL_ID).length >= 1, 8000);
    const post = posts(t.discord, DM_CHANNEL_ID)[0];
    expect(post.body.content).toBe('echo: hello bot');
    expect(typeof post.body.nonce).toBe('string');
    expect(post.body.nonce.length).toBeGreaterThan(0);
    expect(post.body.enforce_nonce).toBe(true);
    expect(post.body.message_reference?.message_id).toBe(msgId);
    expect(agent.requests.at(-1)!.message).toBe('hello bot');
  });

  test('in a guild: no mention → ignored; mentions → answered in order', async () => {
    const agent = startFakeAgent({ protocol: 'json', reply: (m) => `re: ${m}`, latencyMs: { min: 0, max: 30 } });
    cleanups.push(() => agent.stop());
    const t = await setup(agent);
    const mention = [{ ...BOT_USER }];
    t.discord.dispatchMessage({ content: 'chatter between humans', guild: true });
    t.discord.dispatchMessage({ content: `<@${BOT_USER.id}> first`, guild: true, mentions: mention });
    t.discord.dispatchMessage({ content: `<@${BOT_USER.id}> second`, guild: true, mentions: mention });
    t.discord.dispatchMessage({ content: `<@${BOT_USER.id}> third`, guild: true, mentions: mention });
    await until(() => posts(t.discord, TEXT_CHANNEL_ID).length >= 3, 8000);
    await Bun.sleep(100);
    expect(posts(t.discord, TEXT_CHANNEL_ID).map((p) => p.body.content)).toEqual([
      're: first',
      're: second',
      're: third',
    ]);
    expect(agent.requests.map((r) => r.message)).toEqual(['first', 'second', 'third']);
  });

  test("replyMode 'edit' with a streaming agent: one post, then PATCHes; the last PATCH equals the full reply", async () => {
    const words = Array.from({ length: 30 }, (_, i) => `word${i}`);
    const full = words.join(' ');
    const agent = startFakeAgent({ protocol: 'agui', reply: () => full, deltaChars: 8, deltaDelayMs: 80 });
    cleanups.push(() => agent.stop());
    const t = await setup(agent, { replyMode: 'edit' });
    t.discord.dispatchMessage({ content: 'stream please' });
    await until(() => patches(t.discord, DM_CHANNEL_ID).some((p) => p.body.content === full), 8000);
    const dmPosts = posts(t.discord, DM_CHANNEL_ID);
    expect(dmPosts).toHaveLength(1);
    expect(full.startsWith(dmPosts[0].body.content)).toBe(true);
    expect(dmPosts[0].body.content.length).toBeLessThan(full.length);
    const edits = patches(t.discord, DM_CHANNEL_ID);
    expect(edits.length).toBeGreaterThanOrEqual(1);
    expect(edits.at(-1)!.body.content).toBe(full);
    // Every PATCH edits the message that was posted.
    const postedId = t.discord.messages.find((m) => m.channel_id === DM_CHANNEL_ID)!.id;
    for (const e of edits) expect(e.path).toBe(`/channels/${DM_CHANNEL_ID}/messages/${postedId}`);
    // At most about one edit per second while streaming (~2.4 s of deltas).
    expect(edits.length).toBeLessThanOrEqual(5);
  });
});
