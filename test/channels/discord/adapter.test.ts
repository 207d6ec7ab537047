// The Discord adapter against the real discord.js client, pointed at a local fake gateway + REST.
import { afterEach, describe, expect, test } from 'bun:test';
import type { Clock, Timer } from '../../../actors/runtime/clock.ts';
import { DiscordAdapter, nonceFor } from '../../../src/channels/discord/adapter.ts';
import { inviteUrl } from '../../../src/channels/discord/config.ts';
import type { AdapterContext } from '../../../src/channels/types.ts';
import { ChannelError } from '../../../src/core/errors.ts';
import type { Instance, InstanceStatus } from '../../../src/core/instance.ts';
import type { InboundMessage } from '../../../src/core/message.ts';
import { silentLogger } from '../../../src/log.ts';
import {
  BOT_USER,
  DM_CHANNEL_ID,
  type FakeDiscord,
  GUILD_ID,
  HUMAN,
  OTHER_BOT,
  OTHER_TEXT_CHANNEL_ID,
  startFakeDiscord,
  TEXT_CHANNEL_ID,
  THREAD_ID,
} from '../../fakes/discord/server.ts';

interface Harness {
  fake: FakeDiscord;
  adapter: DiscordAdapter;
  ctx: AdapterContext;
  statuses: Array<{ status: InstanceStatus; reason?: string }>;
  ingested: InboundMessage[];
}

function instance(config: Record<string, unknown>): Instance {
  return {
    id: 'inst-discord',
    seq: 1,
    name: 'discord-test',
    channel: 'discord',
    isActive: true,
    isDefault: false,
    agent: {
      url: null,
      apiKey: null,
      type: 'auto',
      timeoutSeconds: 30,
      idleTimeoutSeconds: 30,
      defaultAgent: null,
      model: null,
      headers: {},
    },
    config,
    settings: { replyMode: 'final', errorReply: null, accessMode: 'disabled', maxTextLength: null },
    webhookSecret: 'secret',
    status: 'disconnected',
    statusReason: null,
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  };
}

/** A hand-driven clock for the adapter's own timers (typing refresh, reply-cap window). */
class ManualClock implements Clock {
  private t = 0;
  private timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  now() {
    return 1_700_000_000_000 + this.t;
  }
  monotonic() {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const timer = { at: this.t + ms, fn, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }
  async sleep(ms: number) {
    await new Promise<void>((r) => this.setTimeout(r, ms));
  }
  advance(ms: number) {
    this.t += ms;
    for (const timer of this.timers.splice(0)) {
      if (timer.cancelled) continue;
      if (timer.at <= this.t) timer.fn();
      else this.timers.push(timer);
    }
  }
}

let h: Harness;
const running: Harness[] = [];

async function setup(config: Record<string, unknown> = {}, fakeToken?: string, clock?: Clock): Promise<Harness> {
  const fake = await startFakeDiscord({ heartbeatIntervalMs: 300 });
  const statuses: Harness['statuses'] = [];
  const ingested: InboundMessage[] = [];
  const ctx: AdapterContext = {
    instance: instance({
      discord_bot_token: fakeToken ?? fake.token,
      discord_client_id: BOT_USER.id,
      discord_guild_id: GUILD_ID,
      discord_api_url: fake.apiUrl,
      ...config,
    }),
    log: silentLogger,
    async ingest(msg) {
      ingested.push(msg);
      return { status: 'accepted', traceId: `t-${ingested.length}` };
    },
    setStatus(status, detail) {
      statuses.push({ status, reason: detail?.reason });
    },
  };
  const adapter = new DiscordAdapter({
    clock,
    waitGuildTimeout: 200,
    clientOptions: { rest: { retries: 1, timeout: 3000 } },
  });
  const harness = { fake, adapter, ctx, statuses, ingested };
  running.push(harness);
  return harness;
}

async function connect(config: Record<string, unknown> = {}, clock?: Clock): Promise<Harness> {
  h = await setup(config, undefined, clock);
  await h.adapter.start(h.ctx);
  await h.fake.waitFor(() => h.statuses.at(-1)?.status === 'connected');
  return h;
}

afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.adapter.stop('test end');
    await r.fake.close();
  }
});

const DM = { chatId: DM_CHANNEL_ID, kind: 'direct' as const };
const mention = (u: { id: string }) => ({ ...BOT_USER, id: u.id });

describe('connection', () => {
  test('login goes connecting → connected over the gateway, with heartbeats acknowledged', async () => {
    await connect();
    expect(h.statuses[0].status).toBe('connecting');
    expect(h.statuses.at(-1)!.status).toBe('connected');
    expect(h.fake.identifies).toBe(1);
    await h.fake.waitFor(() => h.fake.heartbeats >= 2, 3000);
    expect(h.statuses.at(-1)!.status).toBe('connected'); // ACKs keep the session alive
  });

  test('a wrong token reports an error status instead of throwing', async () => {
    h = await setup({}, 'wrong-token');
    await h.adapter.start(h.ctx); // must not throw
    const last = await h.fake.waitFor(() => h.statuses.find((s) => s.status === 'error'));
    expect(last.reason).toContain('invalid bot token');
  });

  test('a gateway drop is survived: discord.js resumes and messages missed meanwhile still arrive', async () => {
    await connect();
    h.fake.dropConnection();
    await h.fake.waitFor(() => h.statuses.some((s) => s.status === 'connecting' && s.reason === 'reconnecting'));
    const missed = h.fake.dispatchMessage({ content: 'sent while you were away' });
    await h.fake.waitFor(() => h.fake.resumes === 1 && h.statuses.at(-1)!.status === 'connected');
    await h.fake.waitFor(() => h.ingested.length === 1);
    expect(h.ingested[0].providerMessageId).toBe(missed);
    expect(h.fake.identifies).toBe(1); // resumed, not re-identified

    const after = h.fake.dispatchMessage({ content: 'and after' });
    await h.fake.waitFor(() => h.ingested.length === 2);
    expect(h.ingested[1].providerMessageId).toBe(after);
  });
});

describe('inbound', () => {
  test('a DM reaches ingest as a well-formed InboundMessage', async () => {
    await connect();
    const id = h.fake.dispatchMessage({ content: 'Buenas na DM' });
    await h.fake.waitFor(() => h.ingested.length === 1);
    const msg = h.ingested[0];
    expect(msg).toMatchObject({
      instanceId: 'inst-discord',
      providerMessageId: id,
      chat: { chatId: DM_CHANNEL_ID, kind: 'direct' },
      sender: { id: HUMAN.id, name: 'Test User' },
      text: 'Buenas na DM',
      contentType: 'text',
      replyToMessageId: id,
      mentioned: false,
    });
    expect(Math.abs(msg.timestamp - Date.now())).toBeLessThan(10_000);
  });

  test('attachments without text become a typed placeholder', async () => {
    await connect();
    h.fake.dispatchMessage({
      content: '',
      attachments: [
        {
          id: '1467362488130469888',
          filename: 'receipt.pdf',
          size: 63867,
          url: 'https://cdn.example/receipt.pdf',
          proxy_url: 'https://media.example/receipt.pdf',
          content_type: 'application/pdf',
        },
      ],
    });
    h.fake.dispatchMessage({
      content: 'look',
      attachments: [
        {
          id: '1467362488130469889',
          filename: 'cat.png',
          size: 100,
          url: 'https://cdn.example/cat.png',
          proxy_url: 'https://media.example/cat.png',
          content_type: 'image/png',
          width: 10,
          height: 10,
        },
      ],
    });
    await h.fake.waitFor(() => h.ingested.length === 2);
    expect(h.ingested[0]).toMatchObject({ text: '[document]', contentType: 'document' });
    expect(h.ingested[1]).toMatchObject({ text: 'look', contentType: 'image' });
    expect((h.ingested[1].extra!.attachments as any[])[0].url).toBe('https://cdn.example/cat.png');
  });

  test('in a guild: no mention → ignored; mention → ingested with the mention stripped, in order', async () => {
    await connect();
    h.fake.dispatchMessage({ guild: true, content: 'just chatting' });
    const first = h.fake.dispatchMessage({
      guild: true,
      content: `<@${BOT_USER.id}> what is 2+2?`,
      mentions: [mention(BOT_USER)],
    });
    const second = h.fake.dispatchMessage({
      guild: true,
      content: `and 3+3 <@!${BOT_USER.id}>`,
      mentions: [mention(BOT_USER)],
    });
    // a marker DM proves the unmentioned guild message had its chance to arrive
    h.fake.dispatchMessage({ content: 'marker' });
    await h.fake.waitFor(() => h.ingested.length === 3);
    expect(h.ingested.map((m) => m.providerMessageId)).toEqual([first, second, expect.any(String)]);
    expect(h.ingested[0]).toMatchObject({
      text: 'what is 2+2?',
      mentioned: true,
      chat: { chatId: TEXT_CHANNEL_ID, kind: 'group' },
      extra: { guildId: GUILD_ID },
    });
    expect(h.ingested[1].text).toBe('and 3+3');
    expect(h.ingested[2].text).toBe('marker');
  });

  test('a reply to the bot counts as a mention; mention gating can be turned off', async () => {
    await connect({ discord_require_mention: false });
    h.fake.dispatchMessage({ guild: true, content: 'no mention but gating is off' });
    await h.fake.waitFor(() => h.ingested.length === 1);
    expect(h.ingested[0].mentioned).toBe(false);

    await connect();
    const botMsg = {
      id: '1467362417523687400',
      channel_id: TEXT_CHANNEL_ID,
      content: 'earlier answer',
      author: BOT_USER,
      type: 0,
      timestamp: new Date().toISOString(),
      mentions: [],
      attachments: [],
      embeds: [],
      mention_roles: [],
      pinned: false,
      tts: false,
      mention_everyone: false,
      flags: 0,
      components: [],
      edited_timestamp: null,
    };
    const id = h.fake.dispatchMessage({
      guild: true,
      content: 'follow-up question',
      referencedMessage: botMsg,
      mentions: [mention(BOT_USER)],
    });
    await h.fake.waitFor(() => h.ingested.length === 1);
    expect(h.ingested[0]).toMatchObject({
      providerMessageId: id,
      mentioned: true,
      extra: { referencedMessageId: botMsg.id },
    });
  });

  test('listen channels restrict guild messages; a thread stays its own conversation with its parent noted', async () => {
    await connect({ discord_listen_channel_ids: [TEXT_CHANNEL_ID] });
    h.fake.dispatchMessage({
      guild: true,
      channelId: OTHER_TEXT_CHANNEL_ID,
      content: `<@${BOT_USER.id}> elsewhere`,
      mentions: [mention(BOT_USER)],
    });
    const inThread = h.fake.dispatchMessage({
      guild: true,
      channelId: THREAD_ID,
      content: `<@${BOT_USER.id}> in the thread`,
      mentions: [mention(BOT_USER)],
    });
    await h.fake.waitFor(() => h.ingested.length === 1);
    await Bun.sleep(50);
    expect(h.ingested.length).toBe(1);
    expect(h.ingested[0]).toMatchObject({
      providerMessageId: inThread,
      text: 'in the thread',
      chat: { chatId: THREAD_ID, kind: 'group' },
      extra: { parentChannelId: TEXT_CHANNEL_ID },
    });
  });

  test('messages from bots (other bots and itself) and system messages are ignored', async () => {
    await connect();
    h.fake.dispatchMessage({ content: 'beep', author: OTHER_BOT });
    h.fake.dispatchMessage({ content: 'my own echo', author: BOT_USER });
    h.fake.dispatchMessage({ guild: true, content: '', type: 7 }); // member join
    h.fake.dispatchMessage({ content: 'marker' });
    await h.fake.waitFor(() => h.ingested.length >= 1);
    await Bun.sleep(50);
    expect(h.ingested.map((m) => m.text)).toEqual(['marker']);
  });
});

describe('outbound', () => {
  test('send posts with a nonce derived from the key and enforce_nonce; the same key twice posts once', async () => {
    await connect();
    const r1 = await h.adapter.send(
      DM,
      { text: 'hello there', replyTo: '1467362417523687485' },
      { idempotencyKey: 'inst:msg-1' },
    );
    const r2 = await h.adapter.send(
      DM,
      { text: 'hello there', replyTo: '1467362417523687485' },
      { idempotencyKey: 'inst:msg-1' },
    );
    expect(r2.platformMessageId).toBe(r1.platformMessageId);
    expect(h.fake.messages.length).toBe(1);
    const posts = h.fake.sent.filter((c) => c.method === 'POST' && c.path === `/channels/${DM_CHANNEL_ID}/messages`);
    expect(posts.length).toBe(2);
    for (const p of posts) {
      expect(p.body.nonce).toBe(nonceFor('inst:msg-1', 0));
      expect(p.body.enforce_nonce).toBe(true);
      expect(p.body.message_reference).toEqual({ message_id: '1467362417523687485', fail_if_not_exists: false });
    }
    expect(String(posts[0].body.nonce).length).toBeLessThanOrEqual(25);

    const r3 = await h.adapter.send(DM, { text: 'another reply' }, { idempotencyKey: 'inst:msg-2' });
    expect(r3.platformMessageId).not.toBe(r1.platformMessageId);
    expect(h.fake.messages.map((m) => m.content)).toEqual(['hello there', 'another reply']);
  });

  test('long text is split under 2000 chars / 17 lines, each piece with its own nonce, nothing lost', async () => {
    await connect();
    const lines = Array.from({ length: 40 }, (_, i) => `line ${i + 1}`);
    const long = `${lines.join('\n')}\n\n${'word '.repeat(700).trim()}`;
    await h.adapter.send(DM, { text: long }, { idempotencyKey: 'k-long' });
    const posted = h.fake.messages;
    expect(posted.length).toBeGreaterThan(3);
    for (const m of posted) {
      expect(m.content.length).toBeLessThanOrEqual(2000);
      expect(m.content.split('\n').length).toBeLessThanOrEqual(17);
    }
    expect(new Set(posted.map((m) => m.nonce)).size).toBe(posted.length);
    expect(
      posted
        .map((m) => m.content)
        .join(' ')
        .replace(/\s+/g, ' '),
    ).toBe(long.replace(/\s+/g, ' '));
  });

  test('edit issues a PATCH with the new content', async () => {
    await connect();
    const { platformMessageId } = await h.adapter.send(DM, { text: 'Thinking' }, { idempotencyKey: 'k-edit' });
    await h.adapter.edit(DM, platformMessageId, 'Thinking… done: 42');
    const patch = h.fake.sent.find((c) => c.method === 'PATCH')!;
    expect(patch.path).toBe(`/channels/${DM_CHANNEL_ID}/messages/${platformMessageId}`);
    expect(patch.body).toEqual({ content: 'Thinking… done: 42' });
    expect(h.fake.messages[0].content).toBe('Thinking… done: 42');
  });

  test('a 429 with retry_after is waited out by discord.js: one message, second attempt after the delay', async () => {
    await connect();
    h.fake.failNext('POST', /^\/channels\/\d+\/messages$/, 429, { retryAfterSec: 1 });
    await h.adapter.send(DM, { text: 'rate limited once' }, { idempotencyKey: 'k-429' });
    const attempts = h.fake.sent.filter((c) => c.method === 'POST' && c.path.endsWith('/messages'));
    expect(attempts.map((a) => a.status)).toEqual([429, 200]);
    expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(950);
    expect(h.fake.messages.length).toBe(1);
  });

  test('5xx after discord.js retries is a retryable ChannelError; missing access is not retryable', async () => {
    await connect();
    // the harness gives discord.js retries: 1, so two attempts see the 503
    h.fake.failNext('POST', /messages$/, 503, { times: 2 });
    const e1 = await h.adapter.send(DM, { text: 'x' }, { idempotencyKey: 'k-5xx' }).catch((e) => e);
    expect(e1).toBeInstanceOf(ChannelError);
    expect(e1.retryable).toBe(true);
    expect(h.fake.sent.filter((c) => c.status === 503).length).toBe(2);
    expect(h.fake.messages.length).toBe(0);
    h.fake.failNext('POST', /messages$/, 403);
    const e2 = await h.adapter.send(DM, { text: 'y' }, { idempotencyKey: 'k-403' }).catch((e) => e);
    expect(e2).toBeInstanceOf(ChannelError);
    expect(e2.retryable).toBe(false);
    expect(e2.status).toBe(403);
  });

  test('typing posts the indicator, refreshes it every 8 s while on, and stops when turned off', async () => {
    const clock = new ManualClock();
    await connect({}, clock);
    const typingPosts = () =>
      h.fake.sent.filter((c) => c.method === 'POST' && c.path === `/channels/${DM_CHANNEL_ID}/typing`).length;
    await h.adapter.typing(DM, true);
    await h.adapter.typing(DM, true); // already on: no second indicator
    await h.fake.waitFor(() => typingPosts() === 1);
    clock.advance(7_999);
    await Bun.sleep(30);
    expect(typingPosts()).toBe(1);
    clock.advance(1);
    await h.fake.waitFor(() => typingPosts() === 2);
    await h.adapter.typing(DM, false);
    clock.advance(60_000);
    await Bun.sleep(30);
    expect(typingPosts()).toBe(2);
  });

  test('bot-loop guard: past the per-minute cap a new reply waits (retryable); a retry or another part of the same reply does not count', async () => {
    const clock = new ManualClock();
    await connect({ discord_max_replies_per_minute: 2 }, clock);
    await h.adapter.send(DM, { text: 'a' }, { idempotencyKey: 'c1:0' });
    await h.adapter.send(DM, { text: 'b' }, { idempotencyKey: 'c2:0' });
    await h.adapter.send(DM, { text: 'b' }, { idempotencyKey: 'c2:0' }); // retry of c2
    await h.adapter.send(DM, { text: 'b2' }, { idempotencyKey: 'c2:1' }); // second part of the same reply
    const err = await h.adapter.send(DM, { text: 'c' }, { idempotencyKey: 'c3:0' }).catch((e) => e);
    expect(err).toBeInstanceOf(ChannelError);
    expect(err.retryable).toBe(true);
    expect(err.retryAfterMs).toBeGreaterThan(0);
    expect(err.message).toContain('reply rate cap reached');
    expect(h.fake.messages.map((m) => m.content)).toEqual(['a', 'b', 'b2']);
    // other conversations are not affected, and the window slides
    await h.adapter.send({ chatId: TEXT_CHANNEL_ID, kind: 'group' }, { text: 'elsewhere' }, { idempotencyKey: 'g1:0' });
    clock.advance(60_000);
    await h.adapter.send(DM, { text: 'c' }, { idempotencyKey: 'c3:0' });
    expect(h.fake.messages.map((m) => m.content)).toEqual(['a', 'b', 'b2', 'elsewhere', 'c']);
  });
});

describe('/ask slash command', () => {
  test('registered for the guild on ready; an invocation is deferred, ingested, and answered through the interaction webhook', async () => {
    await connect({ discord_slash_commands_enabled: true });
    const put = await h.fake.waitFor(() => h.fake.sent.find((c) => c.method === 'PUT'));
    expect(put.path).toBe(`/applications/${BOT_USER.id}/guilds/${GUILD_ID}/commands`);
    expect(put.body[0].name).toBe('ask');

    const { id, token } = h.fake.dispatchAsk('what time is it?');
    await h.fake.waitFor(() => h.ingested.length === 1);
    const callback = h.fake.sent.find((c) => c.path === `/interactions/${id}/${token}/callback`)!;
    expect(callback.body.type).toBe(5); // deferred channel message
    const inbound = h.ingested[0];
    expect(inbound).toMatchObject({
      providerMessageId: id,
      text: 'what time is it?',
      chat: { chatId: TEXT_CHANNEL_ID, kind: 'group' },
      sender: { id: HUMAN.id },
    });

    const long = `${'x'.repeat(1500)} ${'y'.repeat(1500)}`;
    const receipt = await h.adapter.send(inbound.chat, { text: long }, { idempotencyKey: 'k-ask', inbound });
    const hooks = h.fake.sent.filter((c) => c.path.startsWith(`/webhooks/${BOT_USER.id}/${token}`));
    expect(hooks.map((c) => `${c.method} ${c.path.replace(token, 'T')}`)).toEqual([
      `PATCH /webhooks/${BOT_USER.id}/T/messages/@original`,
      `POST /webhooks/${BOT_USER.id}/T`,
    ]);
    // the deferred "thinking…" response became the first piece; the rest is a follow-up
    expect(h.fake.messages.map((m) => [m.channel_id, m.content])).toEqual([
      [TEXT_CHANNEL_ID, 'x'.repeat(1500)],
      [TEXT_CHANNEL_ID, 'y'.repeat(1500)],
    ]);
    expect(h.fake.sent.some((c) => c.path === `/channels/${TEXT_CHANNEL_ID}/messages`)).toBe(false);

    await h.adapter.edit(inbound.chat, receipt.platformMessageId, 'edited answer');
    expect(h.fake.messages[0].content).toBe('edited answer');
  });
});

test('inviteUrl builds the OAuth2 bot + commands URL', () => {
  expect(inviteUrl('123', '2048')).toBe(
    'https://discord.com/oauth2/authorize?client_id=123&permissions=2048&scope=bot%20applications.commands',
  );
});
