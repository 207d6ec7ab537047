// Slack adapter with the real Bolt / WebClient / Socket Mode client against a local Slack stand-in.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { VirtualClock } from '../../../actors/runtime/virtual-clock.ts';
import { SlackAdapter, type SlackAdapterOptions } from '../../../src/channels/slack/adapter.ts';
import type { AdapterContext } from '../../../src/channels/types.ts';
import { ChannelError, Overloaded } from '../../../src/core/errors.ts';
import type { Instance, InstanceStatus } from '../../../src/core/instance.ts';
import type { InboundMessage, IngestResult } from '../../../src/core/message.ts';
import { silentLogger } from '../../../src/log.ts';
import { eventCallback, signRequest, urlVerification } from '../../fakes/slack/events.ts';
import { FakeSlack } from '../../fakes/slack/server.ts';

const SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const BOT_TOKEN = 'xoxb-test-bot-token';
const APP_TOKEN = 'xapp-1-test-app-token';

function makeInstance(config: Record<string, unknown>): Instance {
  return {
    id: 'inst-slack',
    seq: 1,
    name: 'slack-test',
    channel: 'slack',
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
    webhookSecret: 'whsec',
    status: 'disconnected',
    statusReason: null,
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
  };
}

/** An AdapterContext whose ingest behaves like the inbox: unique on providerMessageId. */
class RecordingContext implements AdapterContext {
  readonly instance: Instance;
  readonly log = silentLogger;
  readonly ingested: InboundMessage[] = [];
  readonly stored = new Set<string>();
  readonly statuses: Array<{ status: InstanceStatus; reason?: string }> = [];
  /** Set to delay or fail the next ingest calls. */
  ingestHook: ((msg: InboundMessage) => Promise<void>) | null = null;
  private statusWaiters: Array<{ status: InstanceStatus; resolve: () => void }> = [];

  constructor(instance: Instance) {
    this.instance = instance;
  }

  async ingest(msg: InboundMessage): Promise<IngestResult> {
    this.ingested.push(msg);
    if (this.ingestHook) await this.ingestHook(msg);
    const duplicate = this.stored.has(msg.providerMessageId);
    this.stored.add(msg.providerMessageId);
    return { status: duplicate ? 'duplicate' : 'accepted', traceId: `trace-${this.ingested.length}` };
  }

  setStatus(status: InstanceStatus, detail?: { reason?: string }): void {
    this.statuses.push({ status, reason: detail?.reason });
    this.statusWaiters = this.statusWaiters.filter((w) => (w.status === status ? (w.resolve(), false) : true));
  }

  waitForStatus(status: InstanceStatus, timeoutMs = 3000): Promise<void> {
    if (this.statuses.some((s) => s.status === status)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`status ${status} not reached; got ${JSON.stringify(this.statuses)}`)),
        timeoutMs,
      );
      this.statusWaiters.push({ status, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  get lastStatus() {
    return this.statuses[this.statuses.length - 1];
  }
}

let fake: FakeSlack;
const running: SlackAdapter[] = [];

async function startAdapter(config: Record<string, unknown>, options: SlackAdapterOptions = {}) {
  const instance = makeInstance({
    slack_bot_token: BOT_TOKEN,
    slack_signing_secret: SECRET,
    slack_api_url: fake.apiUrl,
    ...config,
  });
  const adapter = new SlackAdapter(instance, options);
  const ctx = new RecordingContext(instance);
  await adapter.start(ctx);
  running.push(adapter);
  return { adapter, ctx, instance };
}

function signedPost(
  adapter: SlackAdapter,
  payload: unknown,
  opts: { secret?: string; timestampSec?: number; extraHeaders?: Record<string, string> } = {},
) {
  const raw = JSON.stringify(payload);
  const headers = new Headers({ ...signRequest(opts.secret ?? SECRET, raw, opts.timestampSec), ...opts.extraHeaders });
  return adapter.handleEventsRequest(raw, headers);
}

const mention = (fields: Partial<Parameters<typeof eventCallback>[0]> = {}) => ({
  type: 'app_mention',
  user: 'U0USER01',
  text: '<@UBOT0001> what is the weather?',
  ts: '1712345678.000200',
  channel: 'C0CHAN01',
  ...fields,
});

beforeEach(() => {
  fake = new FakeSlack({ botToken: BOT_TOKEN }).start();
});

afterEach(async () => {
  for (const a of running.splice(0)) await a.stop('test end');
  await fake.stop();
});

describe('Slack Events API webhook', () => {
  test('a signed app_mention is ingested with its thread, and the reply is posted in that thread', async () => {
    const { adapter, ctx } = await startAdapter({});
    expect(ctx.lastStatus).toEqual({ status: 'connected', reason: undefined });
    expect(fake.callsOf('auth.test')).toHaveLength(1);
    expect(fake.callsOf('auth.test')[0].token).toBe(BOT_TOKEN);

    const answer = await signedPost(adapter, eventCallback(mention(), { eventId: 'Ev0MENTION1' }));
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ status: 'received', trace_id: 'trace-1', message: 'accepted' });

    expect(ctx.ingested).toHaveLength(1);
    const msg = ctx.ingested[0];
    expect(msg.instanceId).toBe('inst-slack');
    expect(msg.chat).toEqual({ chatId: 'C0CHAN01', threadId: '1712345678.000200', kind: 'group' });
    expect(msg.text).toBe('what is the weather?');
    expect(msg.sender.id).toBe('U0USER01');
    expect(msg.timestamp).toBe(1712345678000);
    expect(msg.mentioned).toBe(true);
    expect(msg.extra?.eventId).toBe('Ev0MENTION1');

    const receipt = await adapter.send(msg.chat, { text: 'Sunny.' }, { idempotencyKey: 'k1', inbound: msg });
    const posts = fake.callsOf('chat.postMessage');
    expect(posts).toHaveLength(1);
    expect(posts[0].params).toMatchObject({ channel: 'C0CHAN01', thread_ts: '1712345678.000200', text: 'Sunny.' });
    expect(posts[0].token).toBe(BOT_TOKEN);
    expect(receipt.platformMessageId).toMatch(/^\d+\.\d+$/);
  });

  test('a mention inside an existing thread keeps the thread; a DM message is a direct chat', async () => {
    const { adapter, ctx } = await startAdapter({});
    await signedPost(adapter, eventCallback(mention({ ts: '1712345700.000100', thread_ts: '1712345600.000900' })));
    await signedPost(
      adapter,
      eventCallback({
        type: 'message',
        channel_type: 'im',
        channel: 'D0DM0001',
        user: 'U0USER02',
        text: 'hi there',
        ts: '1712345800.000100',
      }),
    );
    expect(ctx.ingested.map((m) => m.chat)).toEqual([
      { chatId: 'C0CHAN01', threadId: '1712345600.000900', kind: 'group' },
      { chatId: 'D0DM0001', threadId: '1712345800.000100', kind: 'direct' },
    ]);
    expect(ctx.ingested[1].text).toBe('hi there');
  });

  test('the HTTP answer waits for the durable inbox write', async () => {
    const { adapter, ctx } = await startAdapter({});
    let release!: () => void;
    ctx.ingestHook = () => new Promise<void>((resolve) => (release = resolve));
    let answered = false;
    const pending = signedPost(adapter, eventCallback(mention())).then((a) => ((answered = true), a));
    for (let i = 0; i < 20 && ctx.ingested.length === 0; i++) await Bun.sleep(5);
    expect(ctx.ingested).toHaveLength(1);
    await Bun.sleep(30);
    expect(answered).toBe(false);
    release();
    expect((await pending).status).toBe(200);
  });

  test('a failed inbox write answers non-2xx so Slack redelivers', async () => {
    const { adapter, ctx } = await startAdapter({});
    // The inbox's own error (core Overloaded, code UNAVAILABLE), not a look-alike.
    ctx.ingestHook = async () => {
      throw new Overloaded(5);
    };
    const answer = await signedPost(adapter, eventCallback(mention()));
    expect(answer.status).toBe(503);
    expect(answer.headers?.['retry-after']).toBe('1');
  });

  test('a bad signature and a stale timestamp are refused with 401 and nothing is ingested', async () => {
    const { adapter, ctx } = await startAdapter({});
    const nowSec = Math.floor(Date.now() / 1000);
    const wrongSecret = await signedPost(adapter, eventCallback(mention()), { secret: 'not-the-secret' });
    const stale = await signedPost(adapter, eventCallback(mention()), { timestampSec: nowSec - 6 * 60 });
    const future = await signedPost(adapter, eventCallback(mention()), { timestampSec: nowSec + 6 * 60 });

    const raw = JSON.stringify(eventCallback(mention()));
    const headers = new Headers(signRequest(SECRET, raw));
    const tampered = await adapter.handleEventsRequest(raw.replace('weather', 'w3ather'), headers);
    const unsigned = await adapter.handleEventsRequest(raw, new Headers({ 'content-type': 'application/json' }));

    for (const answer of [wrongSecret, stale, future, tampered, unsigned]) {
      expect(answer.status).toBe(401);
      expect(answer.body).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    }
    expect(ctx.ingested).toHaveLength(0);
    // Within the window is fine.
    expect((await signedPost(adapter, eventCallback(mention()), { timestampSec: nowSec - 4 * 60 })).status).toBe(200);
  });

  test('url_verification is answered with the challenge (and must be signed too)', async () => {
    const { adapter, ctx } = await startAdapter({});
    const answer = await signedPost(adapter, urlVerification('3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P'));
    expect(answer).toEqual({
      status: 200,
      body: { challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' },
    });
    const unsigned = await adapter.handleEventsRequest(JSON.stringify(urlVerification('x')), new Headers());
    expect(unsigned.status).toBe(401);
    expect(ctx.ingested).toHaveLength(0);
  });

  test('a retried event (same event_id, X-Slack-Retry-Num) and the same message as another event type share one providerMessageId', async () => {
    const { adapter, ctx } = await startAdapter({});
    const body = eventCallback(mention(), { eventId: 'Ev0RETRY001' });
    const first = await signedPost(adapter, body);
    const retry = await signedPost(adapter, body, {
      extraHeaders: { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' },
    });
    // A mention in a DM arrives both as message.im and as app_mention, with different event ids.
    const dm = {
      channel: 'D0DM0001',
      channel_type: 'im',
      user: 'U0USER02',
      text: '<@UBOT0001> hello',
      ts: '1712349999.000100',
    };
    await signedPost(adapter, eventCallback({ type: 'message', ...dm }, { eventId: 'Ev0DMMSG001' }));
    await signedPost(adapter, eventCallback({ type: 'app_mention', ...dm }, { eventId: 'Ev0DMMENT01' }));

    expect(ctx.ingested).toHaveLength(4);
    expect(ctx.ingested[0].providerMessageId).toBe(ctx.ingested[1].providerMessageId);
    expect(ctx.ingested[2].providerMessageId).toBe(ctx.ingested[3].providerMessageId);
    expect(ctx.ingested[0].providerMessageId).not.toBe(ctx.ingested[2].providerMessageId);
    expect(first.body).toMatchObject({ message: 'accepted' });
    expect(retry.body).toMatchObject({ message: 'duplicate' });
    expect(ctx.stored.size).toBe(2);
  });

  test('bot messages, subtypes, our own posts and plain channel messages are ignored', async () => {
    const { adapter, ctx } = await startAdapter({});
    const ignored = [
      {
        type: 'message',
        channel_type: 'im',
        channel: 'D0DM0001',
        bot_id: 'B0OTHER1',
        user: 'U0OTHERB',
        text: 'beep',
        ts: '1712340000.000001',
      },
      {
        type: 'message',
        channel_type: 'im',
        channel: 'D0DM0001',
        subtype: 'message_changed',
        ts: '1712340000.000002',
        message: { text: 'edited' },
      },
      {
        type: 'message',
        channel_type: 'channel',
        channel: 'C0CHAN01',
        subtype: 'channel_join',
        user: 'U0USER01',
        text: '<@U0USER01> has joined',
        ts: '1712340000.000003',
      },
      {
        type: 'message',
        channel_type: 'im',
        channel: 'D0DM0001',
        user: 'UBOT0001',
        text: 'my own reply',
        ts: '1712340000.000004',
      },
      {
        type: 'message',
        channel_type: 'channel',
        channel: 'C0CHAN01',
        user: 'U0USER01',
        text: 'chatter without a mention',
        ts: '1712340000.000005',
      },
      {
        type: 'app_mention',
        channel: 'C0CHAN01',
        bot_id: 'B0OTHER1',
        user: 'U0OTHERB',
        text: '<@UBOT0001> from a bot',
        ts: '1712340000.000006',
      },
    ];
    for (const event of ignored) {
      const answer = await signedPost(adapter, eventCallback(event));
      expect(answer.status).toBe(200);
      expect(answer.body).toMatchObject({ message: 'ignored' });
    }
    expect(ctx.ingested).toHaveLength(0);
  });

  test('a token Slack refuses leaves the instance in error (start does not throw) and events get 503', async () => {
    fake.failNext('auth.test', { error: 'invalid_auth' });
    const { adapter, ctx } = await startAdapter({});
    expect(ctx.lastStatus.status).toBe('error');
    expect(ctx.lastStatus.reason).toContain('invalid_auth');
    const answer = await signedPost(adapter, eventCallback(mention()));
    expect(answer.status).toBe(503);
    expect(ctx.ingested).toHaveLength(0);
  });
});

describe('Slack outbound', () => {
  test('edit updates the posted message with the full text', async () => {
    const { adapter } = await startAdapter({});
    const chat = { chatId: 'C0CHAN01', threadId: '1712345678.000200', kind: 'group' as const };
    const { platformMessageId } = await adapter.send(chat, { text: 'Thinking' }, { idempotencyKey: 'e1' });
    await adapter.edit(chat, platformMessageId, 'The full reply, written out.');
    const updates = fake.callsOf('chat.update');
    expect(updates).toHaveLength(1);
    expect(updates[0].params).toMatchObject({
      channel: 'C0CHAN01',
      ts: platformMessageId,
      text: 'The full reply, written out.',
    });
  });

  test('a 429 is waited out for Retry-After and then posted once', async () => {
    const clock = new VirtualClock();
    const { adapter } = await startAdapter({}, { clock });
    fake.failNext('chat.postMessage', { status: 429, retryAfterSeconds: 2 });
    const chat = { chatId: 'C0CHAN01', threadId: '1712345678.000200', kind: 'group' as const };
    let done = false;
    const sending = adapter
      .send(chat, { text: 'after the limit' }, { idempotencyKey: 'r1' })
      .then((r) => ((done = true), r));
    for (let i = 0; i < 100 && clock.pending() === 0; i++) await Bun.sleep(5);
    expect(fake.callsOf('chat.postMessage')).toHaveLength(1);
    await clock.advance(1999);
    await Bun.sleep(20);
    expect(done).toBe(false);
    expect(fake.callsOf('chat.postMessage')).toHaveLength(1);
    await clock.advance(1);
    const receipt = await sending;
    const posts = fake.callsOf('chat.postMessage');
    expect(posts).toHaveLength(2); // the refused one and the one that went through
    expect(receipt.platformMessageId).toMatch(/^\d+\.\d+$/);
  });

  test('rate limiting that does not end becomes a retryable ChannelError with the wait', async () => {
    const { adapter } = await startAdapter({}, { maxRateLimitWaits: 0 });
    fake.failNext('chat.postMessage', { status: 429, retryAfterSeconds: 7 });
    const error = await adapter
      .send({ chatId: 'C1', kind: 'group' }, { text: 'x' }, { idempotencyKey: 'r2' })
      .catch((e) => e);
    expect(error).toBeInstanceOf(ChannelError);
    expect(error).toMatchObject({ retryable: true, retryAfterMs: 7000, status: 429 });
  });

  test('5xx is retryable, a platform error is not, and nothing is retried by the client itself', async () => {
    const { adapter } = await startAdapter({});
    const chat = { chatId: 'C0CHAN01', kind: 'group' as const };
    fake.failNext('chat.postMessage', { status: 503 }, { error: 'channel_not_found' });
    const e5xx = await adapter.send(chat, { text: 'a' }, { idempotencyKey: 'f1' }).catch((e) => e);
    const e4xx = await adapter.send(chat, { text: 'b' }, { idempotencyKey: 'f2' }).catch((e) => e);
    expect(e5xx).toMatchObject({ name: 'ChannelError', retryable: true, status: 503 });
    expect(e4xx).toMatchObject({ name: 'ChannelError', retryable: false });
    expect(e4xx.message).toContain('channel_not_found');
    expect(fake.callsOf('chat.postMessage')).toHaveLength(2);
  });

  test('long replies are split at 4000 characters into the same thread; a retry does not repost sent chunks', async () => {
    const { adapter } = await startAdapter({});
    const paragraph = 'word '.repeat(300).trim(); // 1499 chars
    const text = Array.from({ length: 6 }, () => paragraph).join('\n\n');
    const chat = { chatId: 'C0CHAN01', threadId: '1712345678.000200', kind: 'group' as const };
    fake.failNext('chat.postMessage', { passThrough: true }, { status: 500 });
    const failed = await adapter.send(chat, { text }, { idempotencyKey: 'long' }).catch((e) => e);
    expect(failed).toMatchObject({ retryable: true });
    await adapter.send(chat, { text }, { idempotencyKey: 'long' });
    const posts = fake.callsOf('chat.postMessage');
    // first chunk ok, second failed (500), then the retry sends chunks 2 and 3 only.
    expect(posts.map((p) => p.params.text)).toEqual([
      posts[0].params.text,
      posts[1].params.text,
      posts[1].params.text,
      posts[3].params.text,
    ]);
    const delivered = [posts[0], posts[2], posts[3]].map((p) => p.params.text);
    for (const chunk of delivered) expect(chunk.length).toBeLessThanOrEqual(4000);
    expect(delivered.join('\n\n')).toBe(text);
    expect(posts.every((p) => p.params.thread_ts === '1712345678.000200')).toBe(true);
  });

  test('typing uses assistant.threads.setStatus when available and clears it', async () => {
    const { adapter } = await startAdapter({});
    const chat = { chatId: 'D0DM0001', threadId: '1712345800.000100', kind: 'direct' as const };
    await adapter.typing(chat, true);
    await adapter.typing(chat, false);
    const calls = fake.callsOf('assistant.threads.setStatus');
    expect(calls.map((c) => c.params)).toEqual([
      { channel_id: 'D0DM0001', thread_ts: '1712345800.000100', status: 'is thinking…' },
      { channel_id: 'D0DM0001', thread_ts: '1712345800.000100', status: '' },
    ]);
    expect(fake.callsOf('reactions.add')).toHaveLength(0);
  });

  test('typing falls back to an hourglass reaction on the triggering message and removes it', async () => {
    await fake.stop();
    fake = new FakeSlack({ unknownMethods: ['assistant.threads.setStatus'] }).start();
    const { adapter, ctx } = await startAdapter({});
    await signedPost(adapter, eventCallback(mention({ ts: '1712345678.000777' })));
    const inbound = ctx.ingested[0];
    await adapter.typing(inbound.chat, true, inbound);
    expect(fake.callsOf('reactions.add').map((c) => c.params)).toEqual([
      { channel: 'C0CHAN01', timestamp: '1712345678.000777', name: 'hourglass_flowing_sand' },
    ]);
    await adapter.typing(inbound.chat, false, inbound);
    expect(fake.callsOf('reactions.remove').map((c) => c.params)).toEqual([
      { channel: 'C0CHAN01', timestamp: '1712345678.000777', name: 'hourglass_flowing_sand' },
    ]);
    // setStatus is tried once, not on every turn.
    await adapter.typing(inbound.chat, true, inbound);
    expect(fake.callsOf('assistant.threads.setStatus')).toHaveLength(1);
    expect(fake.callsOf('reactions.add')).toHaveLength(2);
  });
});

describe('Slack Socket Mode', () => {
  test('an events_api envelope over the WebSocket is ingested, then acked, and the reply posts in its thread', async () => {
    const { adapter, ctx } = await startAdapter({ slack_app_token: APP_TOKEN, slack_signing_secret: undefined });
    await ctx.waitForStatus('connected');
    const open = fake.callsOf('apps.connections.open');
    expect(open).toHaveLength(1);
    expect(open[0].token).toBe(APP_TOKEN);

    const order: string[] = [];
    ctx.ingestHook = async () => {
      await Bun.sleep(20);
      order.push('ingested');
    };
    const envelopeId = fake.pushEvent(eventCallback(mention({ ts: '1712346000.000100' }), { eventId: 'Ev0SOCKET01' }));
    const ack = await fake.waitForAck(envelopeId);
    order.push('acked');
    expect(ack.envelope_id).toBe(envelopeId);
    expect(order).toEqual(['ingested', 'acked']);

    const msg = ctx.ingested[0];
    expect(msg.chat).toEqual({ chatId: 'C0CHAN01', threadId: '1712346000.000100', kind: 'group' });
    expect(msg.text).toBe('what is the weather?');
    await adapter.send(msg.chat, { text: 'Over the socket.' }, { idempotencyKey: 's1' });
    expect(fake.callsOf('chat.postMessage')[0].params).toMatchObject({
      channel: 'C0CHAN01',
      thread_ts: '1712346000.000100',
      text: 'Over the socket.',
    });
  });

  test('an envelope whose inbox write fails is not acked (Slack redelivers it)', async () => {
    const { ctx } = await startAdapter({ slack_app_token: APP_TOKEN });
    await ctx.waitForStatus('connected');
    ctx.ingestHook = async () => {
      throw new Error('disk full');
    };
    const envelopeId = fake.pushEvent(eventCallback(mention()));
    await expect(fake.waitForAck(envelopeId, 300)).rejects.toThrow('no ack');
    expect(ctx.ingested).toHaveLength(1);
  });

  test('a refused apps.connections.open is reported as an error at once (the client is not retrying on its own)', async () => {
    fake.failNext('apps.connections.open', { status: 500 });
    const { ctx } = await startAdapter({ slack_app_token: APP_TOKEN });
    await ctx.waitForStatus('error', 1000);
    expect(ctx.lastStatus.reason).toContain('Socket Mode');
    expect(fake.callsOf('apps.connections.open')).toHaveLength(1);
  });
});

describe('shared files', () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);

  test('file_share and app_mention with files carry media items; the text stays, a file alone gets a placeholder', async () => {
    const { adapter, ctx } = await startAdapter({});
    fake.files.set('F0IMG001', { bytes: png, mimetype: 'image/png', name: 'a.png' });
    fake.files.set('F0PDF001', { bytes: png, mimetype: 'application/pdf', name: 'b.pdf' });
    await signedPost(
      adapter,
      eventCallback({
        type: 'message',
        subtype: 'file_share',
        channel_type: 'im',
        channel: 'D0DM0001',
        user: 'U0USER01',
        text: '',
        ts: '1712350000.000001',
        files: [fake.fileObject('F0PDF001'), { id: 'F0GONE01', mode: 'tombstone' }],
      }),
    );
    await signedPost(
      adapter,
      eventCallback(
        mention({ ts: '1712350000.000002', text: '<@UBOT0001> look', files: [fake.fileObject('F0IMG001')] }),
      ),
    );
    // A file shared in a channel without a mention is channel chatter, like text.
    await signedPost(
      adapter,
      eventCallback({
        type: 'message',
        subtype: 'file_share',
        channel_type: 'channel',
        channel: 'C0CHAN01',
        user: 'U0USER01',
        text: '',
        ts: '1712350000.000003',
        files: [fake.fileObject('F0IMG001')],
      }),
    );
    expect(ctx.ingested).toHaveLength(2);
    const [doc, img] = ctx.ingested;
    expect(doc).toMatchObject({ text: '[document]', contentType: 'document' });
    expect(doc.media).toEqual([
      {
        type: 'document',
        mimeType: 'application/pdf',
        filename: 'b.pdf',
        sizeBytes: png.byteLength,
        ref: { fileId: 'F0PDF001', url: fake.fileUrl('F0PDF001') },
      },
    ]);
    expect(img).toMatchObject({ text: 'look', contentType: 'image', mentioned: true });
    expect(img.media?.[0]).toMatchObject({ type: 'image', ref: { fileId: 'F0IMG001' } });
  });

  test('fetchMedia sends the bot token to the file URL, bounds the size, and never sends the token to another host', async () => {
    const { adapter, ctx } = await startAdapter({}, { fetch });
    fake.files.set('F0IMG001', { bytes: png, mimetype: 'image/png', name: 'a.png' });
    await signedPost(
      adapter,
      eventCallback(mention({ ts: '1712350001.000001', files: [fake.fileObject('F0IMG001')] })),
    );
    const item = ctx.ingested[0].media![0];
    const signal = new AbortController().signal;
    const got = await adapter.fetchMedia(item, { maxBytes: 1024, signal });
    expect([...got.bytes]).toEqual([...png]);
    expect(fake.downloads).toEqual([{ fileId: 'F0IMG001', token: BOT_TOKEN, served: true }]);

    await expect(adapter.fetchMedia(item, { maxBytes: 4, signal })).rejects.toThrow('larger than 4 bytes');

    const elsewhere = { ...item, ref: { fileId: 'F0IMG001', url: 'https://files.example.com/F0IMG001/a.png' } };
    const refused = await adapter.fetchMedia(elsewhere, { maxBytes: 1024, signal }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ChannelError);
    expect((refused as ChannelError).retryable).toBe(false);
    expect(fake.downloads).toHaveLength(2);
  });
});
