// The Baileys adapter driven through a stand-in socket and a virtual clock: lifecycle, QR
// rounds, reconnect schedule and the re-link stops, inbound mapping, sending, faults.

import type { Database } from 'bun:sqlite';
import { afterEach, describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VirtualClock } from '../../../actors/runtime/virtual-clock.ts';
import { openDatabase } from '../../../db/open.ts';
import type { AdapterContext } from '../../../src/channels/types.ts';
import { BaileysAdapter } from '../../../src/channels/whatsapp/adapter.ts';
import { hasStoredAuth, useSqliteAuthState } from '../../../src/channels/whatsapp/auth-state.ts';
import { qrToPngDataUrl } from '../../../src/channels/whatsapp/qr.ts';
import { ChannelError } from '../../../src/core/errors.ts';
import type { Instance, InstanceStatus } from '../../../src/core/instance.ts';
import type { InboundMessage } from '../../../src/core/message.ts';
import { silentLogger } from '../../../src/log.ts';
import { fakeSocketFactory } from '../../fakes/baileys-socket.ts';

const FIXTURES = join(import.meta.dir, '..', '..', 'fixtures', 'whatsapp-baileys-real-payloads.json');
const fixtures = JSON.parse(readFileSync(FIXTURES, 'utf8')) as {
  messages: Record<string, Array<{ id: string; payload: any }>>;
};
const textFixture = fixtures.messages.text[0].payload; // "Buenas como q tão as coisas aí" from a LID chat

type StatusEvent = { status: InstanceStatus; reason?: string; qr?: string | null; pairingCode?: string | null };

const opened: Database[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) db.close();
});

function insertInstance(db: Database, id: string): void {
  const now = new Date().toISOString();
  db.query(
    `INSERT INTO instances (id, seq, name, channel, webhook_secret, created_at, updated_at)
     VALUES (?, 1, ?, 'whatsapp-baileys', 'secret', ?, ?)`,
  ).run(id, id, now, now);
}

function setup(
  config: Record<string, unknown> = {},
  opts: { random?: () => number; ingest?: (m: InboundMessage) => Promise<void> } = {},
) {
  const db = openDatabase(':memory:');
  opened.push(db);
  insertInstance(db, 'wa-1');
  const clock = new VirtualClock();
  const fake = fakeSocketFactory();
  const statuses: StatusEvent[] = [];
  const ingested: InboundMessage[] = [];
  const instance = {
    id: 'wa-1',
    seq: 1,
    name: 'wa-1',
    channel: 'whatsapp-baileys',
    isActive: true,
    isDefault: false,
    config,
    settings: { replyMode: 'final', errorReply: null, accessMode: 'disabled', maxTextLength: null },
    webhookSecret: 'secret',
    status: 'disconnected',
    statusReason: null,
  } as unknown as Instance;
  const ctx: AdapterContext = {
    instance,
    log: silentLogger,
    async ingest(m) {
      ingested.push(m);
      await opts.ingest?.(m);
      return { status: 'accepted', traceId: `t-${m.providerMessageId}` };
    },
    setStatus(status, detail) {
      statuses.push({ status, ...detail });
    },
  };
  const adapter = new BaileysAdapter({ db, socketFactory: fake.factory, clock, random: opts.random ?? (() => 0) });
  const lastStatus = () => statuses.at(-1)!;
  return { db, clock, fake, statuses, ingested, ctx, adapter, lastStatus };
}

async function connected(config: Record<string, unknown> = {}, opts: Parameters<typeof setup>[1] = {}) {
  const t = setup(config, opts);
  await t.adapter.start(t.ctx);
  t.fake.last().emitOpen();
  await t.clock.flush();
  return { ...t, sock: t.fake.last() };
}

describe('lifecycle and reconnect policy', () => {
  test('connecting → connected on open; the reconnect delays grow 2 s × 1.8 up to 30 s', async () => {
    const t = setup();
    await t.adapter.start(t.ctx);
    expect(t.lastStatus().status).toBe('connecting');
    expect(t.fake.sockets).toHaveLength(1);
    t.fake.last().emitOpen();
    expect(t.lastStatus().status).toBe('connected');

    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const before = t.fake.sockets.length;
      t.fake.last().emitClose(428, 'Connection Terminated');
      expect(t.lastStatus().status).toBe('connecting');
      expect(t.lastStatus().reason).toContain('428');
      const due = t.clock.nextDue()! - t.clock.monotonic();
      delays.push(due);
      await t.clock.advance(due - 1);
      expect(t.fake.sockets).toHaveLength(before); // never early
      await t.clock.advance(1);
      expect(t.fake.sockets).toHaveLength(before + 1);
    }
    expect(delays.map((d) => Math.round(d))).toEqual([2000, 3600, 6480, 11664, 20995, 30000, 30000]);
    expect(t.adapter.status().lastDisconnect).toMatchObject({ statusCode: 428, reason: 'Connection Terminated' });
  });

  test('jitter only shortens the delay; a connection open for 60 s resets the backoff', async () => {
    const t = setup({}, { random: () => 1 }); // maximum jitter
    await t.adapter.start(t.ctx);
    t.fake.last().emitClose(408);
    expect(t.clock.nextDue()).toBe(1500); // 2000 × (1 − 0.25)
    await t.clock.advance(1500);
    t.fake.last().emitClose(408);
    expect(t.clock.nextDue()! - t.clock.monotonic()).toBe(2700); // 3600 × 0.75
    await t.clock.advance(2700);

    // Open for 10 s: not stable, the schedule goes on.
    t.fake.last().emitOpen();
    await t.clock.advance(10_000);
    t.fake.last().emitClose(428);
    expect(t.clock.nextDue()! - t.clock.monotonic()).toBeCloseTo(6480 * 0.75, 5);
    await t.clock.advance(6480);

    // Open for 60 s: stable, back to the first delay.
    t.fake.last().emitOpen();
    await t.clock.advance(60_000);
    t.fake.last().emitClose(428);
    expect(t.clock.nextDue()! - t.clock.monotonic()).toBe(1500);
  });

  for (const [code, words, clears] of [
    [401, /logged out/, true],
    [403, /refused/, false],
    [440, /replaced/, false],
  ] as const) {
    test(`close ${code} stops: logged_out, no reconnect${clears ? ', auth cleared' : ', auth kept'}`, async () => {
      const t = await connected();
      t.sock.emitCreds({ me: { id: '5511999990000:7@s.whatsapp.net' }, registered: true });
      expect(hasStoredAuth(t.db, 'wa-1')).toBe(true);
      t.sock.emitClose(code);
      expect(t.lastStatus().status).toBe('logged_out');
      expect(t.lastStatus().reason).toMatch(words);
      expect(t.lastStatus().reason).toContain(String(code));
      expect(t.clock.pending()).toBe(0);
      await t.clock.advance(10 * 60_000);
      expect(t.fake.sockets).toHaveLength(1);
      expect(hasStoredAuth(t.db, 'wa-1')).toBe(!clears);
      expect(t.adapter.status()).toMatchObject({ status: 'logged_out', lastDisconnect: { statusCode: code } });
      // restart() is the way back.
      await t.adapter.restart();
      expect(t.fake.sockets).toHaveLength(2);
      expect(t.lastStatus().status).toBe('connecting');
    });
  }

  test('creds.update is persisted and used by the next socket', async () => {
    const t = await connected();
    t.sock.emitCreds({ me: { id: '5511999990000:7@s.whatsapp.net', name: 'Bot' }, registered: true });
    t.sock.emitClose(515, 'restart required');
    await t.clock.advance(2000);
    expect(t.fake.sockets).toHaveLength(2);
    expect(t.fake.last().options.auth.creds.me?.id).toBe('5511999990000:7@s.whatsapp.net');
    expect(useSqliteAuthState(t.db, 'wa-1').state.creds.registered).toBe(true);
  });

  test('stop() ends the socket and nothing reconnects', async () => {
    const t = await connected();
    await t.adapter.stop('instance deactivated');
    expect(t.sock.ended).toBe(true);
    expect(t.lastStatus()).toMatchObject({ status: 'disconnected', reason: 'instance deactivated' });
    await t.clock.advance(60_000);
    expect(t.fake.sockets).toHaveLength(1);
  });

  test('logout() unlinks on the socket and deletes the auth state', async () => {
    const t = await connected();
    t.sock.emitCreds({ registered: true });
    await t.adapter.logout();
    expect(t.sock.calls.some((c) => c.kind === 'logout')).toBe(true);
    expect(hasStoredAuth(t.db, 'wa-1')).toBe(false);
    expect(t.lastStatus().status).toBe('logged_out');
    await t.clock.advance(60_000);
    expect(t.fake.sockets).toHaveLength(1);
  });
});

describe('pairing', () => {
  test('QR rotation is reported; after max rounds unanswered the instance stops and says so', async () => {
    const t = setup({ whatsapp_max_qr_rounds: 3 });
    await t.adapter.start(t.ctx);
    const s = t.fake.last();
    s.emitQr('2@first,aaa,bbb,ccc');
    expect(t.lastStatus()).toEqual({ status: 'connecting', qr: '2@first,aaa,bbb,ccc' });
    const shown = t.adapter.currentQr()!;
    expect(shown.qr).toBe('2@first,aaa,bbb,ccc');
    expect(Date.parse(shown.expiresAt) - t.clock.now()).toBe(60_000);
    await t.clock.advance(60_000);
    expect(t.adapter.currentQr()).toBeNull(); // expired
    s.emitQr('2@second');
    expect(Date.parse(t.adapter.currentQr()!.expiresAt) - t.clock.now()).toBe(20_000);
    // Baileys ran out of refs for this connection: reconnect, the round count goes on.
    s.emitClose(408, 'QR refs attempts ended');
    await t.clock.advance(2000);
    const s2 = t.fake.last();
    expect(s2).not.toBe(s);
    s2.emitQr('2@third');
    expect(t.lastStatus().qr).toBe('2@third');
    s2.emitQr('2@fourth');
    expect(t.lastStatus()).toEqual({
      status: 'disconnected',
      reason: 'QR not scanned after 3 rounds; reconnect to try again',
      qr: null,
    });
    expect(s2.ended).toBe(true);
    expect(t.adapter.currentQr()).toBeNull();
    expect(t.clock.pending()).toBe(0);
    await t.clock.advance(10 * 60_000);
    expect(t.fake.sockets).toHaveLength(2);

    await t.adapter.restart();
    t.fake.last().emitQr('2@fresh');
    expect(t.lastStatus().qr).toBe('2@fresh');
  });

  test('a close after the last allowed QR round stops instead of opening another round', async () => {
    const t = setup({ whatsapp_max_qr_rounds: 2 });
    await t.adapter.start(t.ctx);
    t.fake.last().emitQr('2@one');
    t.fake.last().emitQr('2@two');
    t.fake.last().emitClose(408, 'QR refs attempts ended');
    expect(t.lastStatus()).toMatchObject({
      status: 'disconnected',
      reason: 'QR not scanned after 2 rounds; reconnect to try again',
    });
    expect(t.clock.pending()).toBe(0);
    await t.clock.advance(60_000);
    expect(t.fake.sockets).toHaveLength(1);
  });

  test('the QR decodes from the PNG the endpoints serve', async () => {
    const { PNG } = await import('pngjs');
    const jsQR = (await import('jsqr')).default;
    const t = setup();
    await t.adapter.start(t.ctx);
    const qr = '2@Xk9pL0mN3qR5sT7vW9yZ1aB3cD5eF7gH9iJ1kL3mN5oP7qR9sT1uV3wX5yZ7aB9c,Zm9vYmFy,YmF6cXV4,MTIz';
    t.fake.last().emitQr(qr);
    const url = await qrToPngDataUrl(t.adapter.currentQr()!.qr);
    expect(url.startsWith('data:image/png;base64,')).toBe(true);
    const png = PNG.sync.read(Buffer.from(url.slice('data:image/png;base64,'.length), 'base64'));
    const decoded = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
    expect(decoded?.data).toBe(qr);
  });

  test('pairing code: waits for the server to offer pairing, then returns the code', async () => {
    const t = setup();
    await t.adapter.start(t.ctx);
    const pending = t.adapter.requestPairingCode('+55 (11) 99999-0000');
    await t.clock.flush();
    expect(t.fake.calls.filter((c) => c.kind === 'pairing')).toHaveLength(0);
    t.fake.last().emitQr('2@offer');
    expect(await pending).toBe('ABCD1234');
    expect(t.fake.calls.find((c) => c.kind === 'pairing')).toEqual({ kind: 'pairing', phone: '5511999990000' });
    expect(t.lastStatus()).toMatchObject({ status: 'connecting', pairingCode: 'ABCD1234' });
    await expect(t.adapter.requestPairingCode('12ab')).rejects.toMatchObject({ retryable: false, status: 400 });
  });
});

describe('inbound', () => {
  test('a notify upsert is mapped and ingested; append and own messages are not', async () => {
    const t = await connected({ whatsapp_read_receipts: true });
    t.sock.emitMessages([textFixture]);
    t.sock.emitMessages([{ ...textFixture, key: { ...textFixture.key, id: 'HIST1' } }], 'append');
    t.sock.emitMessages([fixtures.messages.text[2].payload]); // fromMe
    await t.clock.flush();
    expect(t.ingested).toHaveLength(1);
    expect(t.ingested[0]).toMatchObject({
      instanceId: 'wa-1',
      providerMessageId: 'AC23570AE54CCF58A8923E45CC6089E8',
      chat: { chatId: '100000000000001@lid', kind: 'direct' },
      sender: {
        id: '100000000000001@lid',
        name: 'Alice Test',
        phone: '+5511999990001',
        altId: '5511999990001@s.whatsapp.net',
      },
      text: 'Buenas como q tão as coisas aí',
      contentType: 'text',
      timestamp: 1769829698000,
    });
    // read receipt after the inbox write
    expect(t.sock.calls.filter((c) => c.kind === 'read')).toEqual([
      {
        kind: 'read',
        keys: [{ remoteJid: '100000000000001@lid', id: 'AC23570AE54CCF58A8923E45CC6089E8', fromMe: false }],
      },
    ]);
  });

  test('self messages when enabled; group mention gating uses the connected account ids', async () => {
    const t = await connected({ whatsapp_self_messages: true, whatsapp_group_mention_only: true });
    t.sock.emitMessages([fixtures.messages.text[2].payload]);
    const group = (id: string, contextInfo?: object) => ({
      key: { remoteJid: '120363000000000001@g.us', id, fromMe: false, participant: '100000000000003@lid' },
      messageTimestamp: 1769830000,
      message: { extendedTextMessage: { text: `msg ${id}`, contextInfo } },
    });
    t.sock.emitMessages([group('G1'), group('G2', { mentionedJid: ['100000000000009@lid'] })]);
    await t.clock.flush();
    expect(t.ingested.map((m) => m.providerMessageId)).toEqual(['ACB6DD980250AADFEF6008DF275A8855', 'G2']);
    expect(t.ingested[0].fromOwner).toBe(true);
    expect(t.ingested[1]).toMatchObject({
      mentioned: true,
      chat: { kind: 'group' },
      sender: { id: '100000000000003@lid' },
    });
  });

  test('lid-mapping.update fills in the phone for LID senders without an alt', async () => {
    const t = await connected();
    t.sock.emit('lid-mapping.update', { lid: '100000000000077@lid', pn: '5511999990077@s.whatsapp.net' });
    t.sock.emitMessages([
      {
        key: { remoteJid: '100000000000077@lid', id: 'L1', fromMe: false },
        messageTimestamp: 5,
        message: { conversation: 'oi' },
      },
    ]);
    await t.clock.flush();
    expect(t.ingested[0].sender).toEqual({
      id: '100000000000077@lid',
      phone: '+5511999990077',
      altId: '5511999990077@s.whatsapp.net',
    });
  });

  test('malformed events and a failing inbox write are skipped; the adapter keeps working', async () => {
    let failNext = true;
    const t = await connected(
      {},
      {
        ingest: async () => {
          if (failNext) {
            failNext = false;
            throw new Error('inbox full');
          }
        },
      },
    );
    t.sock.emit('messages.upsert', null);
    t.sock.emit('messages.upsert', { messages: 'nope', type: 'notify' });
    t.sock.emit('connection.update', null);
    t.sock.emit('lid-mapping.update', 42);
    t.sock.emit('messaging-history.set', { contacts: 'x', lidPnMappings: [null] });
    t.sock.emitMessages([
      null,
      { key: {} },
      'garbage',
      { key: { remoteJid: 'x@s.whatsapp.net', id: 'F1' }, message: { conversation: 'first' } },
    ]);
    t.sock.emitMessages([{ key: { remoteJid: 'x@s.whatsapp.net', id: 'F2' }, message: { conversation: 'second' } }]);
    await t.clock.flush();
    expect(t.ingested.map((m) => m.text)).toEqual(['first', 'second']); // first one failed to store, second went on
    expect(t.adapter.status().status).toBe('connected');
    await t.adapter.send(
      { chatId: 'x@s.whatsapp.net', kind: 'direct' },
      { text: 'still here' },
      { idempotencyKey: 'k' },
    );
    expect(t.sock.sent().at(-1)?.content.text).toBe('still here');
  });

  test('end to end: upsert → agent → typing, send, paused — in order', async () => {
    const order: string[] = [];
    let t!: Awaited<ReturnType<typeof connected>>;
    const pipeline = async (m: InboundMessage) => {
      // A stand-in for the conversation actor: typing while the agent works, then the reply.
      await t.adapter.typing(m.chat, true);
      order.push('agent');
      await t.adapter.send(
        m.chat,
        { text: `echo: ${m.text}` },
        { idempotencyKey: `wa-1:${m.providerMessageId}`, inbound: m },
      );
      await t.adapter.typing(m.chat, false);
    };
    const runs: Promise<void>[] = [];
    t = await connected({ whatsapp_quote_replies: true }, { ingest: async (m) => void runs.push(pipeline(m)) });
    t.sock.calls.length = 0;
    const origSend = t.sock.sendMessage.bind(t.sock);
    t.sock.sendMessage = async (...a) => {
      order.push('sendMessage');
      return origSend(...a);
    };
    t.sock.emitMessages([textFixture]);
    await t.clock.flush();
    await Promise.all(runs);
    expect(t.sock.calls.map((c) => (c.kind === 'presence' ? `presence:${c.type}` : c.kind))).toEqual([
      'presence:composing',
      'sendMessage',
      'presence:paused',
    ]);
    expect(order).toEqual(['agent', 'sendMessage']);
    const sent = t.sock.sent()[0];
    expect(sent.jid).toBe('100000000000001@lid');
    expect(sent.content).toEqual({ text: 'echo: Buenas como q tão as coisas aí', linkPreview: null });
    expect(sent.opts?.quoted).toEqual({
      key: { remoteJid: '100000000000001@lid', id: 'AC23570AE54CCF58A8923E45CC6089E8', fromMe: false },
      message: { conversation: 'Buenas como q tão as coisas aí' },
    });
    expect(t.sock.calls[0]).toEqual({ kind: 'presence', type: 'composing', jid: '100000000000001@lid' });
  });
});

describe('outbound', () => {
  test('long text is split under 4000 with stable message ids; only the first chunk quotes', async () => {
    const t = await connected({ whatsapp_quote_replies: true, whatsapp_send_rate_per_second: 100 });
    const paragraph = 'lorem ipsum dolor sit amet '.repeat(40).trim(); // ~1080 chars
    const text = Array.from({ length: 9 }, (_, i) => `${i}: ${paragraph}`).join('\n\n');
    const inbound = {
      providerMessageId: 'IN1',
      chat: { chatId: '5511999990001@s.whatsapp.net', kind: 'direct' },
      sender: { id: '5511999990001@s.whatsapp.net' },
      text: 'q',
      extra: { key: { remoteJid: '5511999990001@s.whatsapp.net', id: 'IN1', fromMe: false } },
    } as unknown as InboundMessage;
    const send = t.adapter.send(
      { chatId: '5511999990001@s.whatsapp.net', kind: 'direct' },
      { text },
      { idempotencyKey: 'k1', inbound },
    );
    await t.clock.runAll();
    const receipt = await send;
    const sent = t.sock.sent();
    expect(sent.length).toBe(3);
    for (const s of sent) expect((s.content.text as string).length).toBeLessThanOrEqual(4000);
    expect(sent.map((s) => s.content.text).join('\n\n')).toBe(text);
    expect(sent[0].opts?.quoted).toBeDefined();
    expect(sent[1].opts?.quoted).toBeUndefined();
    expect(receipt.platformMessageId).toBe(sent[2].opts?.messageId as string);
    const ids = sent.map((s) => s.opts?.messageId);
    expect(new Set(ids).size).toBe(3);
    // Same idempotency key → same WhatsApp ids (a retried send is recognisable).
    const again = t.adapter.send(
      { chatId: '5511999990001@s.whatsapp.net', kind: 'direct' },
      { text },
      { idempotencyKey: 'k1' },
    );
    await t.clock.runAll();
    await again;
    expect(
      t.sock
        .sent()
        .slice(3)
        .map((s) => s.opts?.messageId),
    ).toEqual(ids);
  });

  test('media from URL with caption, voice notes, documents, reactions', async () => {
    const t = await connected({ whatsapp_send_rate_per_second: 100 });
    const to = { chatId: '+55 11 99999-0001', kind: 'direct' as const };
    await t.adapter.send(
      to,
      { text: '', media: { url: 'http://127.0.0.1:1/cat.jpg', mediaType: 'image', caption: 'a cat' } },
      { idempotencyKey: 'm1' },
    );
    await t.adapter.send(
      to,
      { text: 'listen', media: { url: 'http://127.0.0.1:1/v.ogg', mediaType: 'audio', voiceNote: true } },
      { idempotencyKey: 'm2' },
    );
    await t.adapter.send(
      to,
      { text: '', media: { base64: Buffer.from('%PDF').toString('base64'), mediaType: 'document', filename: 'r.pdf' } },
      { idempotencyKey: 'm3' },
    );
    await t.adapter.send(to, { text: '', reaction: { messageId: 'ABC', emoji: '👍' } }, { idempotencyKey: 'm4' });
    const sent = t.sock.sent();
    expect(sent.every((s) => s.jid === '5511999990001@s.whatsapp.net')).toBe(true);
    expect(sent[0].content).toEqual({ image: { url: 'http://127.0.0.1:1/cat.jpg' }, caption: 'a cat' });
    expect(sent[1].content).toMatchObject({ audio: { url: 'http://127.0.0.1:1/v.ogg' }, ptt: true });
    expect(sent[2].content).toEqual({ text: 'listen', linkPreview: null }); // audio has no caption
    expect(Buffer.isBuffer(sent[3].content.document)).toBe(true);
    expect(sent[3].content.fileName).toBe('r.pdf');
    expect(sent[4].content).toEqual({
      react: { text: '👍', key: { remoteJid: '5511999990001@s.whatsapp.net', id: 'ABC', fromMe: false } },
    });
  });

  test('token bucket: a burst of 5, then 1 per second; jitter adds a random delay', async () => {
    const t = await connected({}, { random: () => 0 });
    const to = { chatId: '5511999990001@s.whatsapp.net', kind: 'direct' as const };
    const sends = Array.from({ length: 8 }, (_, i) =>
      t.adapter.send(to, { text: `m${i}` }, { idempotencyKey: `b${i}`, inbound: {} as InboundMessage }),
    );
    await t.clock.flush();
    expect(t.sock.sent()).toHaveLength(5);
    await t.clock.advance(999);
    expect(t.sock.sent()).toHaveLength(5);
    await t.clock.advance(1);
    expect(t.sock.sent()).toHaveLength(6);
    await t.clock.advance(2000);
    expect(t.sock.sent()).toHaveLength(8);
    await Promise.all(sends);
    expect(t.sock.sent().map((s) => s.content.text)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);

    const j = await connected({ whatsapp_send_jitter_ms: 800 }, { random: () => 0.5 });
    const p = j.adapter.send(to, { text: 'hi' }, { idempotencyKey: 'j1', inbound: {} as InboundMessage });
    await j.clock.advance(399);
    expect(j.sock.sent()).toHaveLength(0);
    await j.clock.advance(1);
    await p;
    expect(j.sock.sent()).toHaveLength(1);
  });

  test('invalid numbers and 4xx answers are permanent errors; transport trouble is retryable', async () => {
    const t = await connected({ whatsapp_send_rate_per_second: 100 });
    const err = async (p: Promise<unknown>) =>
      p.then(
        () => {
          throw new Error('expected a failure');
        },
        (e) => e as ChannelError,
      );

    const bad = await err(
      t.adapter.send({ chatId: 'not-a-number', kind: 'direct' }, { text: 'x' }, { idempotencyKey: 'e1' }),
    );
    expect(bad).toBeInstanceOf(ChannelError);
    expect(bad).toMatchObject({ retryable: false, status: 400 });

    t.sock.notOnWhatsApp.add('5511000000000@s.whatsapp.net');
    const missing = await err(
      t.adapter.send({ chatId: '5511000000000', kind: 'direct' }, { text: 'x' }, { idempotencyKey: 'e2' }),
    );
    expect(missing).toMatchObject({ retryable: false, status: 404 });
    expect(missing.message).toContain('not on WhatsApp');
    expect(t.sock.sent()).toHaveLength(0);

    t.sock.sendErrors.push(Object.assign(new Error('bad-request'), { output: { statusCode: 400 } }));
    expect(
      await err(t.adapter.send({ chatId: '5511999990001', kind: 'direct' }, { text: 'x' }, { idempotencyKey: 'e3' })),
    ).toMatchObject({ retryable: false, status: 400 });
    t.sock.sendErrors.push(Object.assign(new Error('Connection Closed'), { output: { statusCode: 428 } }));
    expect(
      await err(t.adapter.send({ chatId: '5511999990001', kind: 'direct' }, { text: 'x' }, { idempotencyKey: 'e4' })),
    ).toMatchObject({ retryable: true });

    expect(
      await err(t.adapter.send({ chatId: '5511999990001', kind: 'direct' }, { text: '  ' }, { idempotencyKey: 'e0' })),
    ).toMatchObject({ retryable: false, status: 400 });

    t.sock.emitClose(428);
    expect(
      await err(t.adapter.send({ chatId: '5511999990001', kind: 'direct' }, { text: 'x' }, { idempotencyKey: 'e5' })),
    ).toMatchObject({ retryable: true, status: 503 });
  });

  test('typing maps to composing / paused presence', async () => {
    const t = await connected();
    await t.adapter.typing({ chatId: '120363000000000001@g.us', kind: 'group' }, true);
    await t.adapter.typing({ chatId: '120363000000000001@g.us', kind: 'group' }, false);
    expect(t.sock.calls.filter((c) => c.kind === 'presence')).toEqual([
      { kind: 'presence', type: 'composing', jid: '120363000000000001@g.us' },
      { kind: 'presence', type: 'paused', jid: '120363000000000001@g.us' },
    ]);
  });
});

describe('corrupted auth state', () => {
  test('a corrupt creds row: logged_out with a clear reason, no socket, no crash', async () => {
    const t = setup();
    useSqliteAuthState(t.db, 'wa-1').saveCreds();
    t.db.query(`UPDATE whatsapp_auth SET value = '{broken' WHERE instance_id = 'wa-1'`).run();
    await t.adapter.start(t.ctx);
    expect(t.fake.sockets).toHaveLength(0);
    expect(t.lastStatus().status).toBe('logged_out');
    expect(t.lastStatus().reason).toMatch(/auth state .* is corrupt .*log out/);
    expect(t.clock.pending()).toBe(0);
    // logout clears the broken rows; the next start pairs afresh.
    await t.adapter.logout();
    await t.adapter.restart();
    expect(t.fake.sockets).toHaveLength(1);
    expect(t.lastStatus().status).toBe('connecting');
  });

  test('a corrupt key row met while running stops the socket the same way', async () => {
    const t = await connected();
    t.db
      .query(`INSERT INTO whatsapp_auth (instance_id, kind, key_id, value) VALUES ('wa-1', 'session', 's1', 'garbage')`)
      .run();
    expect(() => t.sock.options.auth.keys.get('session', ['s1'])).toThrow(/corrupt/);
    await t.clock.flush();
    expect(t.lastStatus().status).toBe('logged_out');
    expect(t.lastStatus().reason).toContain('session s1');
    expect(t.sock.ended).toBe(true);
    await t.clock.advance(60_000);
    expect(t.fake.sockets).toHaveLength(1);
  });
});
