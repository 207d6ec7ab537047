// Telegram adapter with the real grammY client against a local Bot API stand-in.
import type { Database } from 'bun:sqlite';
import { afterEach, describe, expect, test } from 'bun:test';
import { openDatabase } from '../../../db/open.ts';
import { TelegramAdapter, type TelegramAdapterOptions } from '../../../src/channels/telegram/adapter.ts';
import { telegramChannel } from '../../../src/channels/telegram/index.ts';
import { readTelegramSettings, webhookSecretToken } from '../../../src/channels/telegram/settings.ts';
import { readOffset } from '../../../src/channels/telegram/state.ts';
import type { AdapterContext } from '../../../src/channels/types.ts';
import { ChannelError, Overloaded } from '../../../src/core/errors.ts';
import type { Instance, InstanceStatus } from '../../../src/core/instance.ts';
import type { InboundMessage, IngestResult } from '../../../src/core/message.ts';
import { silentLogger } from '../../../src/log.ts';
import { FakeTelegram } from '../../fakes/telegram/server.ts';
import {
  ALICE,
  BOB,
  commandEntity,
  editedUpdate,
  GROUP_ID,
  mentionEntity,
  message,
  messageUpdate,
} from '../../fakes/telegram/updates.ts';
import { until } from '../../fixtures.ts';

const PUBLIC_URL = 'https://gw.example.com';

function makeInstance(config: Record<string, unknown>): Instance {
  return {
    id: 'inst-tg',
    seq: 1,
    name: 'tg-test',
    channel: 'telegram',
    isActive: true,
    isDefault: false,
    agent: {
      url: null,
      apiKey: null,
      type: 'auto',
      timeoutSeconds: 30,
      idleTimeoutSeconds: 10,
      defaultAgent: null,
      model: null,
      headers: {},
    },
    config,
    settings: { replyMode: 'final', errorReply: null, accessMode: 'disabled', maxTextLength: null },
    webhookSecret: 'instance-webhook-secret-0123456789',
    status: 'disconnected',
    statusReason: null,
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  };
}

/** An AdapterContext whose ingest behaves like the inbox: unique on providerMessageId. */
class RecordingContext implements AdapterContext {
  readonly log = silentLogger;
  readonly ingested: InboundMessage[] = [];
  readonly stored = new Set<string>();
  readonly statuses: Array<{ status: InstanceStatus; reason?: string }> = [];
  ingestHook: ((msg: InboundMessage) => Promise<void>) | null = null;
  constructor(readonly instance: Instance) {}

  async ingest(msg: InboundMessage): Promise<IngestResult> {
    if (this.ingestHook) await this.ingestHook(msg);
    this.ingested.push(msg);
    const duplicate = this.stored.has(msg.providerMessageId);
    this.stored.add(msg.providerMessageId);
    return { status: duplicate ? 'duplicate' : 'accepted', traceId: `trace-${this.ingested.length}` };
  }

  setStatus(status: InstanceStatus, detail?: { reason?: string }): void {
    this.statuses.push({ status, reason: detail?.reason });
  }

  get last() {
    return this.statuses.at(-1);
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  tg: FakeTelegram;
  adapter: TelegramAdapter;
  ctx: RecordingContext;
  db: Database;
  fetched: string[];
  post(
    update: unknown,
    secret?: string | null,
  ): Promise<{ status: number; body: any; headers?: Record<string, string> }>;
}

async function setup(
  config: Record<string, unknown> = {},
  opts: Partial<TelegramAdapterOptions> = {},
  tgOpts: ConstructorParameters<typeof FakeTelegram>[0] = {},
): Promise<Setup> {
  const tg = new FakeTelegram(tgOpts).start();
  cleanups.push(() => tg.stop());
  const db = openDatabase(':memory:');
  // channel_state references instances; these tests have no instance row.
  db.exec('PRAGMA foreign_keys = OFF');
  cleanups.push(() => db.close());
  const fetched: string[] = [];
  const inst = makeInstance({
    telegram_bot_token: tg.token,
    telegram_api_url: tg.apiUrl,
    telegram_mode: 'webhook',
    ...config,
  });
  const adapter = new TelegramAdapter(inst, {
    // Stands for gw.fetch: every Bot API call must pass through it.
    fetch: ((url: string, init?: RequestInit) => {
      fetched.push(new URL(url).pathname.split('/').at(-1)!);
      return fetch(url, init);
    }) as typeof fetch,
    db,
    publicUrl: PUBLIC_URL,
    pollTimeoutSeconds: 1,
    reconnectDelaysMs: [20, 50],
    editGapMs: { direct: 50, group: 200 },
    typingRefreshMs: 100,
    ...opts,
  });
  const ctx = new RecordingContext(inst);
  cleanups.push(() => adapter.stop('test over'));
  await adapter.start(ctx);
  await until(() => ctx.last?.status === 'connected' || ctx.last?.status === 'error', 3000);
  const post = (update: unknown, secret: string | null = webhookSecretToken(inst)) => {
    const headers = new Headers({ 'content-type': 'application/json' });
    if (secret !== null) headers.set('x-telegram-bot-api-secret-token', secret);
    return adapter.handleWebhookRequest(JSON.stringify(update), headers);
  };
  return { tg, adapter, ctx, db, fetched, post };
}

describe('connecting', () => {
  test('webhook mode: getMe, then setWebhook with the public URL, the generated secret and our updates', async () => {
    const t = await setup();
    expect(t.ctx.last?.status).toBe('connected');
    expect(t.tg.webhook).toEqual({
      url: `${PUBLIC_URL}/webhook/telegram/tg-test`,
      secretToken: webhookSecretToken(t.ctx.instance),
      allowedUpdates: ['message', 'edited_message'],
    });
    expect(t.tg.webhook!.secretToken).toMatch(/^[A-Za-z0-9_-]{1,256}$/);
    // The secret is not the instance's webhook token.
    expect(t.tg.webhook!.secretToken).not.toBe(t.ctx.instance.webhookSecret);
    expect(t.tg.calls.map((c) => c.method)).toEqual(['getMe', 'setWebhook']);
    // Every call went through the outbound-policy fetch.
    expect(t.fetched).toEqual(['getMe', 'setWebhook']);
  });

  test('a wrong bot token is an error status, not retried', async () => {
    const t = await setup({ telegram_bot_token: '999:not-the-token' });
    expect(t.ctx.last).toEqual({ status: 'error', reason: 'invalid bot token' });
    await Bun.sleep(100);
    expect(t.tg.callsOf('getMe')).toHaveLength(1);
  });

  test('webhook mode without PUBLIC_URL is an error naming it; default mode follows PUBLIC_URL', async () => {
    const t = await setup({}, { publicUrl: null });
    expect(t.ctx.last?.status).toBe('error');
    expect(t.ctx.last?.reason).toContain('PUBLIC_URL');
    expect(readTelegramSettings({}, { publicUrl: 'https://x.example' }).mode).toBe('webhook');
    expect(readTelegramSettings({}, { publicUrl: 'http://localhost:8882' }).mode).toBe('polling');
    expect(readTelegramSettings({}, {}).mode).toBe('polling');
    expect(readTelegramSettings({}, { apiUrl: 'http://local:8081/' }).apiUrl).toBe('http://local:8081');
  });

  test('a failing Bot API is retried with backoff until it answers', async () => {
    const tg = new FakeTelegram();
    tg.failNext('getMe', { status: 502, description: 'Bad Gateway' }, { status: 502, description: 'Bad Gateway' });
    tg.start();
    cleanups.push(() => tg.stop());
    const t = await setup({ telegram_bot_token: tg.token, telegram_api_url: tg.apiUrl });
    await until(() => t.ctx.last?.status === 'connected', 3000);
    expect(tg.callsOf('getMe')).toHaveLength(3);
    expect(t.ctx.statuses.some((s) => s.status === 'connecting' && s.reason?.includes('502'))).toBe(true);
  });
});

describe('webhook', () => {
  test('the right secret: the update is ingested and acked with its trace id', async () => {
    const t = await setup();
    const res = await t.post(messageUpdate(message('hello there')));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'received', trace_id: 'trace-1', message: 'Message accepted' });
    const m = t.ctx.ingested[0];
    expect(m.text).toBe('hello there');
    expect(m.chat).toEqual({ chatId: String(ALICE.id), kind: 'direct' });
    expect(m.sender).toEqual({ id: String(ALICE.id), name: 'Alice Doe' });
    expect(m.mentioned).toBe(true);
    expect(m.replyToMessageId).toBeUndefined(); // a private chat is not quoted
  });

  test('a wrong or missing secret → 401 and nothing ingested', async () => {
    const t = await setup();
    expect((await t.post(messageUpdate(message('forged')), 'not-the-secret')).status).toBe(401);
    expect((await t.post(messageUpdate(message('forged')), null)).status).toBe(401);
    expect((await t.post(messageUpdate(message('forged')), '')).status).toBe(401);
    expect(t.ctx.ingested).toHaveLength(0);
  });

  test('a redelivered update is the same message (chat id + message id): duplicate', async () => {
    const t = await setup();
    const u = messageUpdate(message('once', { messageId: 77 }));
    await t.post(u);
    const again = await t.post(u);
    expect(again.body.status).toBe('duplicate');
    expect(t.ctx.ingested.map((m) => m.providerMessageId)).toEqual([`${ALICE.id}:77`, `${ALICE.id}:77`]);
    // The same message id in another chat is another message.
    await t.post(messageUpdate(message('other chat', { messageId: 77, from: BOB })));
    expect(t.ctx.stored.size).toBe(2);
  });

  test('a full inbox → 503 with Retry-After (Telegram delivers it again); a bad body → 400', async () => {
    const t = await setup();
    t.ctx.ingestHook = async () => {
      throw new Overloaded(1);
    };
    const res = await t.post(messageUpdate(message('later')));
    expect(res.status).toBe(503);
    expect(res.headers?.['retry-after']).toBe('1');
    expect((await t.adapter.handleWebhookRequest('{nope', secretHeaders(t))).status).toBe(400);
    expect((await t.adapter.handleWebhookRequest('{"x":1}', secretHeaders(t))).status).toBe(400);
  });
});

function secretHeaders(t: Setup): Headers {
  return new Headers({ 'x-telegram-bot-api-secret-token': webhookSecretToken(t.ctx.instance) });
}

describe('groups: mention gating', () => {
  test('a group message that does not address the bot is ignored', async () => {
    const t = await setup();
    const res = await t.post(messageUpdate(message('just chatting', { chatId: GROUP_ID })));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('ignored');
    expect(t.ctx.ingested).toHaveLength(0);
  });

  test('a mention, a reply to the bot or a command addressed to us is taken; another bot’s command is not', async () => {
    const t = await setup();
    const bot = t.tg.username;
    const text = `@${bot} what is up?`;
    await t.post(messageUpdate(message(text, { chatId: GROUP_ID, entities: mentionEntity(text, bot) })));
    const botMessage = { message_id: 5, date: 0, chat: { id: GROUP_ID, type: 'supergroup' }, from: { id: t.tg.botId } };
    await t.post(messageUpdate(message('and then?', { chatId: GROUP_ID, replyTo: botMessage as never })));
    const cmd = `/ask@${bot} the weather`;
    await t.post(messageUpdate(message(cmd, { chatId: GROUP_ID, entities: commandEntity(cmd) })));
    const other = '/ask@some_other_bot hi';
    await t.post(messageUpdate(message(other, { chatId: GROUP_ID, entities: commandEntity(other) })));
    expect(t.ctx.ingested.map((m) => m.text)).toEqual(['what is up?', 'and then?', '/ask the weather']);
    expect(t.ctx.ingested.every((m) => m.mentioned && m.chat.kind === 'group')).toBe(true);
    expect(t.ctx.ingested[2].extra).toMatchObject({ command: 'ask', commandArgs: 'the weather' });
    // In a group the reply quotes the question.
    expect(t.ctx.ingested[0].replyToMessageId).toBe(String(t.ctx.ingested[0].extra?.messageId));
  });

  test('telegram_require_mention false: every group message is taken', async () => {
    const t = await setup({ telegram_require_mention: false });
    await t.post(messageUpdate(message('just chatting', { chatId: GROUP_ID })));
    expect(t.ctx.ingested).toHaveLength(1);
    expect(t.ctx.ingested[0].mentioned).toBe(false);
  });

  test('/start in a private chat is a message carrying its command', async () => {
    const t = await setup();
    await t.post(messageUpdate(message('/start', { entities: commandEntity('/start') })));
    expect(t.ctx.ingested[0]).toMatchObject({ text: '/start', extra: { command: 'start' } });
  });
});

describe('forum topics, edits, media', () => {
  test('a topic message is a thread; the topic root is not a reply to the bot', async () => {
    const t = await setup({ telegram_require_mention: false });
    await t.post(messageUpdate(message('in a topic', { chatId: GROUP_ID, topicId: 42 })));
    const m = t.ctx.ingested[0];
    expect(m.chat).toEqual({ chatId: String(GROUP_ID), threadId: '42', kind: 'group' });
    expect(m.extra?.replyToMessageId).toBeUndefined();
  });

  test('a topic the bot created does not count as a reply to the bot (gating still applies)', async () => {
    const t = await setup();
    const root = {
      message_id: 42,
      date: 0,
      chat: { id: GROUP_ID, type: 'supergroup' },
      from: { id: t.tg.botId },
      forum_topic_created: { name: 'Bot topic', icon_color: 0 },
    };
    await t.post(messageUpdate(message('hi all', { chatId: GROUP_ID, topicId: 42, replyTo: root as never })));
    expect(t.ctx.ingested).toHaveLength(0);
  });

  test('an edited message is recorded, not a new turn (and each edit once)', async () => {
    const t = await setup();
    const original = message('first version', { messageId: 300 });
    await t.post(messageUpdate(original));
    const edit = editedUpdate(original, 'second version');
    await t.post(edit);
    await t.post(edit);
    const [first, edited, again] = t.ctx.ingested;
    expect(first.recordOnly).toBeUndefined();
    expect(edited.text).toBe('second version');
    expect(edited.recordOnly).toContain('edit');
    expect(edited.providerMessageId).toBe(`${ALICE.id}:300:edit:${original.date + 5}`);
    expect(edited.providerMessageId).not.toBe(first.providerMessageId);
    expect(again.providerMessageId).toBe(edited.providerMessageId);
  });

  test('inbound media is a typed placeholder with its file reference', async () => {
    const t = await setup();
    const photo = message('', {
      extra: {
        text: undefined,
        photo: [
          { file_id: 'small', file_unique_id: 's', width: 90, height: 90 },
          { file_id: 'big', file_unique_id: 'b', width: 800, height: 800, file_size: 1234 },
        ],
      },
    });
    await t.post(messageUpdate(photo));
    const voice = message('', {
      extra: { text: undefined, voice: { file_id: 'v1', file_unique_id: 'v', duration: 3, mime_type: 'audio/ogg' } },
    });
    await t.post(messageUpdate(voice));
    const captioned = message('', {
      extra: { text: undefined, caption: 'look', document: { file_id: 'd1', file_unique_id: 'd', file_name: 'a.pdf' } },
    });
    await t.post(messageUpdate(captioned));
    const [p, v, d] = t.ctx.ingested;
    expect(p).toMatchObject({
      contentType: 'image',
      text: '[image]',
      extra: { media: { fileId: 'big', sizeBytes: 1234 } },
    });
    expect(v).toMatchObject({ contentType: 'audio', text: '[audio]', extra: { media: { voiceNote: true } } });
    expect(d).toMatchObject({ contentType: 'document', text: 'look', extra: { media: { filename: 'a.pdf' } } });
  });

  test('service messages and other bots are ignored', async () => {
    const t = await setup();
    await t.post(messageUpdate(message('', { extra: { text: undefined, new_chat_members: [BOB] } })));
    await t.post(messageUpdate(message('beep', { from: { id: 99, is_bot: true, first_name: 'OtherBot' } })));
    expect(t.ctx.ingested).toHaveLength(0);
  });
});

describe('polling', () => {
  test('updates are ingested in order; the offset moves past each only after its inbox write', async () => {
    const t = await setup({ telegram_mode: 'polling' });
    expect(t.ctx.last?.status).toBe('connected');
    expect(t.tg.callsOf('deleteWebhook')).toHaveLength(1);
    expect(t.tg.callsOf('setWebhook')).toHaveLength(0);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const offsets: Array<number | null> = [];
    t.ctx.ingestHook = async () => {
      offsets.push(readOffset(t.db, 'inst-tg'));
      await gate;
    };
    const a = t.tg.push(messageUpdate(message('one')));
    const b = t.tg.push(messageUpdate(message('two')));
    await until(() => offsets.length === 1, 3000);
    expect(offsets[0]).toBeNull(); // nothing committed while the first write is in flight
    release();
    await until(() => t.ctx.ingested.length === 2, 3000);
    expect(t.ctx.ingested.map((m) => m.text)).toEqual(['one', 'two']);
    expect(offsets[1]).toBe(a.update_id + 1);
    await until(() => readOffset(t.db, 'inst-tg') === b.update_id + 1, 3000);
    // The next getUpdates confirms them.
    await until(() => t.tg.callsOf('getUpdates').some((c) => c.params.offset === b.update_id + 1), 3000);
    expect(t.tg.pending).toBe(0);
  });

  test('an update that could not be stored is fetched again (offset not moved), then stored', async () => {
    const t = await setup({ telegram_mode: 'polling' }, { ingestRetryDelaysMs: [] });
    let failures = 1;
    t.ctx.ingestHook = async () => {
      if (failures-- > 0) throw new Error('database is locked');
    };
    const u = t.tg.push(messageUpdate(message('persistent')));
    await until(() => t.ctx.ingested.length === 1, 3000);
    expect(t.ctx.ingested[0].text).toBe('persistent');
    const asked = t.tg.callsOf('getUpdates').map((c) => c.params.offset ?? null);
    // Fetched twice without moving past it.
    expect(asked.filter((o) => o === null || o <= u.update_id).length).toBeGreaterThanOrEqual(2);
    await until(() => readOffset(t.db, 'inst-tg') === u.update_id + 1, 3000);
  });

  test('a restart resumes from the stored offset', async () => {
    const t = await setup({ telegram_mode: 'polling' });
    const u = t.tg.push(messageUpdate(message('before restart')));
    await until(() => readOffset(t.db, 'inst-tg') === u.update_id + 1, 3000);
    await t.adapter.stop('restart');
    const calls = t.tg.callsOf('getUpdates').length;
    await t.adapter.start(t.ctx);
    await until(() => t.tg.callsOf('getUpdates').length > calls, 3000);
    expect(t.tg.callsOf('getUpdates')[calls].params.offset).toBe(u.update_id + 1);
  });
});

describe('sending', () => {
  test('a 5,000-character text is two messages in order, each within 4,096', async () => {
    const t = await setup();
    const words = Array.from({ length: 1000 }, (_, i) => `w${String(i).padStart(3, '0')}`);
    const text = `${words.join(' ')}!`;
    expect(text.length).toBe(5000);
    const receipt = await t.adapter.send(
      { chatId: String(ALICE.id), kind: 'direct' },
      { text },
      { idempotencyKey: 'k-long' },
    );
    const sent = t.tg.callsOf('sendMessage').map((c) => c.params.text as string);
    expect(sent).toHaveLength(2);
    expect(sent.every((s) => s.length <= 4096)).toBe(true);
    expect(sent.join(' ')).toBe(text);
    expect(receipt.platformMessageId).toMatch(/^\d+$/);
  });

  test('a text full of MarkdownV2 and HTML specials is sent as plain text and accepted', async () => {
    const t = await setup();
    const text =
      'Price: $5.00 (50% off!) _under_ *star* [link](x) ~tilde~ `code` >quote #tag +1 -1 =eq |pipe| {a} <b>&amp; \\ .';
    await t.adapter.send({ chatId: String(ALICE.id), kind: 'direct' }, { text }, { idempotencyKey: 'k-md' });
    const [call] = t.tg.callsOf('sendMessage');
    expect(call.params.text).toBe(text);
    expect(call.params.parse_mode).toBeUndefined();
    // The stand-in does reject the same text with parse_mode MarkdownV2 (what a naive send would hit).
    const res = await fetch(`${t.tg.apiUrl}/bot${t.tg.token}/sendMessage`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ chat_id: ALICE.id, text, parse_mode: 'MarkdownV2' }),
    });
    expect(res.status).toBe(400);
  });

  test('reply-to, forum topic thread and chat id types', async () => {
    const t = await setup();
    await t.adapter.send(
      { chatId: String(GROUP_ID), threadId: '42', kind: 'group' },
      { text: 'in the topic', replyTo: '555' },
      { idempotencyKey: 'k-topic' },
    );
    const [call] = t.tg.callsOf('sendMessage');
    expect(call.params).toMatchObject({
      chat_id: GROUP_ID,
      message_thread_id: 42,
      reply_parameters: { message_id: 555, allow_sending_without_reply: true },
    });
  });

  test('429: a retryable ChannelError carrying retry_after; the retry posts only what is missing', async () => {
    const t = await setup();
    const to = { chatId: String(ALICE.id), kind: 'direct' as const };
    t.tg.failNext('sendMessage', { status: 429, retryAfter: 2 });
    const err = await t.adapter.send(to, { text: 'hi' }, { idempotencyKey: 'k-429a' }).catch((e) => e);
    expect(err).toBeInstanceOf(ChannelError);
    expect(err).toMatchObject({ retryable: true, status: 429, retryAfterMs: 2000 });

    // Two chunks, 429 on the second: the retry of the same send does not post the first again.
    const text = `${'a'.repeat(4000)}\n\n${'b'.repeat(900)}`;
    t.tg.failNext('sendMessage', { passThrough: true }, { status: 429, retryAfter: 7 });
    const second = await t.adapter.send(to, { text }, { idempotencyKey: 'k-429b' }).catch((e) => e);
    expect(second).toMatchObject({ retryable: true, status: 429, retryAfterMs: 7000 });
    await t.adapter.send(to, { text }, { idempotencyKey: 'k-429b' });
    const texts = t.tg.callsOf('sendMessage').map((c) => String(c.params.text)[0]);
    expect(texts).toEqual(['h', 'a', 'b', 'b']); // 429, posted, 429, posted
  });

  test('permanent errors are not retryable; a known refusal is said in our words, remote text is never echoed', async () => {
    const t = await setup();
    t.tg.failNext('sendMessage', { status: 403, description: 'Forbidden: bot was blocked by the user' });
    const err = await t.adapter
      .send({ chatId: String(ALICE.id), kind: 'direct' }, { text: 'hi' }, { idempotencyKey: 'k-403' })
      .catch((e) => e);
    expect(err).toMatchObject({ retryable: false, status: 403 });
    expect(err.message).toBe('Telegram sendMessage: 403 the user blocked the bot');

    // A Bot API URL pointed elsewhere answers with text of its choosing: only the status is kept.
    t.tg.failNext('sendMessage', { status: 400, description: 'internal-db.corp password=hunter2' });
    const other = await t.adapter
      .send({ chatId: String(ALICE.id), kind: 'direct' }, { text: 'hi' }, { idempotencyKey: 'k-400' })
      .catch((e) => e);
    expect(other).toMatchObject({ retryable: false, status: 400 });
    expect(other.message).toBe('Telegram sendMessage: 400 request refused');
  });

  test('media by URL with the text as caption; a reaction', async () => {
    const t = await setup();
    await t.adapter.send(
      { chatId: String(ALICE.id), kind: 'direct' },
      { text: 'a cat', media: { url: 'https://example.com/cat.jpg', mediaType: 'image' } },
      { idempotencyKey: 'k-media' },
    );
    expect(t.tg.callsOf('sendPhoto')[0].params).toMatchObject({
      photo: 'https://example.com/cat.jpg',
      caption: 'a cat',
    });
    // Bytes (base64) are uploaded as multipart, through the same fetch.
    await t.adapter.send(
      { chatId: String(ALICE.id), kind: 'direct' },
      {
        text: '',
        media: { base64: Buffer.from('%PDF-1.4').toString('base64'), mediaType: 'document', filename: 'a.pdf' },
      },
      { idempotencyKey: 'k-bytes' },
    );
    const doc = t.tg.callsOf('sendDocument')[0].params;
    expect(doc.document).toMatch(/^attach:\/\//);
    expect(doc[String(doc.document).slice('attach://'.length)]).toEqual({ file: 'a.pdf', size: 8 });
    expect(t.fetched.filter((m) => m === 'sendDocument')).toHaveLength(1);
    await t.adapter.send(
      { chatId: String(ALICE.id), kind: 'direct' },
      { text: '', reaction: { messageId: '12', emoji: '👍' } },
      { idempotencyKey: 'k-react' },
    );
    expect(t.tg.callsOf('setMessageReaction')[0].params).toMatchObject({
      message_id: 12,
      reaction: [{ type: 'emoji', emoji: '👍' }],
    });
  });
});

describe('edit streaming and typing', () => {
  test('edits go to the message, spaced per chat; an unchanged text is not an error', async () => {
    const t = await setup();
    const to = { chatId: String(GROUP_ID), kind: 'group' as const };
    const { platformMessageId } = await t.adapter.send(to, { text: 'Hel' }, { idempotencyKey: 'k-edit' });
    await t.adapter.edit(to, platformMessageId, 'Hello');
    await t.adapter.edit(to, platformMessageId, 'Hello wor');
    await t.adapter.edit(to, platformMessageId, 'Hello world');
    await t.adapter.edit(to, platformMessageId, 'Hello world'); // "message is not modified"
    const edits = t.tg.callsOf('editMessageText');
    expect(edits.map((e) => e.params.text)).toEqual(['Hello', 'Hello wor', 'Hello world', 'Hello world']);
    expect(edits.every((e) => e.params.message_id === Number(platformMessageId))).toBe(true);
    for (let i = 1; i < edits.length; i++) expect(edits[i].at - edits[i - 1].at).toBeGreaterThanOrEqual(180);
  });

  test('typing: sendChatAction in the thread, refreshed until turned off', async () => {
    const t = await setup();
    const to = { chatId: String(GROUP_ID), threadId: '42', kind: 'group' as const };
    await t.adapter.typing(to, true);
    await until(() => t.tg.callsOf('sendChatAction').length >= 2, 2000);
    await t.adapter.typing(to, false);
    const n = t.tg.callsOf('sendChatAction').length;
    await Bun.sleep(250);
    expect(t.tg.callsOf('sendChatAction')).toHaveLength(n);
    expect(t.tg.callsOf('sendChatAction')[0].params).toMatchObject({
      chat_id: GROUP_ID,
      action: 'typing',
      message_thread_id: 42,
    });
  });
});

describe('definition', () => {
  test('the send API’s `to`: a chat id, optionally chat/topic', () => {
    expect(telegramChannel.chatFor('4242')).toEqual({ chatId: '4242', kind: 'direct' });
    expect(telegramChannel.chatFor('-1001234/42')).toEqual({ chatId: '-1001234', threadId: '42', kind: 'group' });
    expect(telegramChannel.chatFor('@mychannel')).toEqual({ chatId: '@mychannel', kind: 'group' });
    expect('problem' in telegramChannel.chatFor('not a chat')).toBe(true);
  });

  test('telegram_mode is webhook or polling', () => {
    expect(telegramChannel.validate!({ telegram_mode: 'polling' })).toEqual([]);
    expect(telegramChannel.validate!({})).toEqual([]);
    expect(telegramChannel.validate!({ telegram_mode: 'push' })[0].field).toBe('telegram_mode');
  });
});
