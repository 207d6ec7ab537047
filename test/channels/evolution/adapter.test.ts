import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import type { Clock, Timer } from '../../../actors/runtime/clock.ts';
import { EvolutionAdapter } from '../../../src/channels/evolution/adapter.ts';
import {
  connect,
  connectionState,
  createInstance,
  type EvolutionInstanceConfig,
  evolutionConfigOf,
  logout,
  provisionInstance,
  restart,
  sendText,
  setWebhook,
} from '../../../src/channels/evolution/client.ts';
import { parseEvolutionWebhook, timestampToMs } from '../../../src/channels/evolution/parse.ts';
import type { AdapterContext } from '../../../src/channels/types.ts';
import { ChannelError } from '../../../src/core/errors.ts';
import type { Instance, InstanceStatus } from '../../../src/core/instance.ts';
import type { InboundMessage } from '../../../src/core/message.ts';
import { silentLogger } from '../../../src/log.ts';
import { type FakeEvolution, startFakeEvolution } from '../../fakes/evolution.ts';

const fixtures = (await Bun.file(
  new URL('../../fixtures/whatsapp-baileys-real-payloads.json', import.meta.url),
).json()) as {
  messages: Record<string, Array<{ id: string; payload: any }>>;
  events: Record<string, unknown[]>;
};

const wrap = (data: unknown, event = 'messages.upsert') => ({
  event,
  instance: 'whatsapp-leo-bot',
  data,
  server_url: 'https://evolution.example.com',
  apikey: 'EVOLUTION-KEY',
  date_time: '2026-01-31T03:21:53.000Z',
  sender: '5511988880000@s.whatsapp.net',
});

// Every fixture message, by id: what a user must see the bot receive, or why it is dropped.
const EXPECTED: Record<string, { text: string; contentType: string } | { ignored: RegExp }> = {
  AC23570AE54CCF58A8923E45CC6089E8: { text: 'Buenas como q tão as coisas aí', contentType: 'text' },
  ACE0753E3FBE3A88FF726FC52ED6FB77: { text: 'Mensagem será deletada', contentType: 'text' },
  ACB6DD980250AADFEF6008DF275A8855: { ignored: /fromMe/ },
  ACDEB3DF3FA0B9571674641550949444: { text: '[audio]', contentType: 'audio' },
  ACFD2E3DC8F0340204B5DB6EAE0A7092: { text: '[image]', contentType: 'image' },
  AC987AA4C405005A3EF0CE66A18C1806: { text: '[sticker]', contentType: 'sticker' },
  AC71EDD10CE851493E4C5AECF1697A75: { text: '[contact: Alice Test]', contentType: 'contact' },
  ACDAD8DFE4203A41711722E96E24EEC4: { text: '[location: 0,0]', contentType: 'location' },
  AC04809E9F816ACEB5F794B6081EEAD3: { text: '[poll: Quero saber]', contentType: 'poll' },
  ACF0EAFB791F6D4412E0860FF2FA3104: { ignored: /poll vote/ },
  AC9AE42507791AC1DF757D432CBDDF20: { ignored: /poll vote/ },
  AC413C7EB86E02D0B4E09CC3075763B5: { ignored: /poll vote/ },
  ACB074BC15DEE3599BE8570DF8A43372: { ignored: /fromMe/ },
  ACDE3788F24CCAD757CCA6E7FA4AA48C: { ignored: /fromMe/ },
  AC19F8A92E5173E9BC213A6A78C23EC7: { text: 'Quoting a message here', contentType: 'text' },
  ACD1D321398037D659387DABEDFE8A03: { text: 'Essa mensagem será encaminhada', contentType: 'text' },
  ACAA1E0EE9C054130248E6826B75C8B7: { ignored: /fromMe/ },
  AC82299425112ACDEAA583417745403C: { text: '[event: Então na loca]', contentType: 'other' },
  ACB3BD49DB830E5114F0E5AC37EEDACF: { ignored: /protocol message \(REVOKE\)/ },
  AC4D1AE3B43F2AE48CBFF925F9EE6AC0: { ignored: /unsupported message type interactiveMessage/ },
};

describe('parseEvolutionWebhook: real WAMessage fixtures wrapped as Evolution data', () => {
  const all = Object.entries(fixtures.messages).flatMap(([kind, items]) => items.map((it) => ({ kind, ...it })));

  test('the fixture file still holds exactly the classified messages', () => {
    expect(all.length).toBeGreaterThan(15);
    expect(all.map((m) => m.id).sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const item of all) {
    test(`${item.kind} ${item.id}`, () => {
      const { messages, ignored } = parseEvolutionWebhook(wrap(item.payload), 'inst-1');
      expect(messages.length + ignored.length).toBe(1);
      const want = EXPECTED[item.id];
      if ('ignored' in want) {
        expect(messages).toEqual([]);
        expect(ignored[0]).toMatch(want.ignored);
        expect(ignored[0]).toContain(item.id);
        return;
      }
      expect(ignored).toEqual([]);
      const m = messages[0];
      expect(m.text).toBe(want.text);
      expect(m.contentType as string).toBe(want.contentType);
      expect(m.instanceId).toBe('inst-1');
      expect(m.providerMessageId).toBe(item.id);
      // LID addressing with the phone known: the conversation is keyed by the phone number.
      expect(m.chat).toEqual({ chatId: '5511999990001@s.whatsapp.net', kind: 'direct' });
      expect(m.sender).toEqual({
        id: '5511999990001@s.whatsapp.net',
        name: 'Alice Test',
        phone: '+5511999990001',
        altId: '100000000000001@lid',
      });
      expect(m.timestamp).toBe(Number(item.payload.messageTimestamp) * 1000);
      expect(m.extra?.remoteJid).toBe('100000000000001@lid');
    });
  }

  test('a quoted reply keeps the id of the quoted message', () => {
    const quoting = fixtures.messages.extendedText[0];
    const { messages } = parseEvolutionWebhook(wrap(quoting.payload), 'inst-1');
    expect(messages[0].extra?.quotedMessageId).toBe('AC23570AE54CCF58A8923E45CC6089E8');
  });

  test('non-message events from the fixtures are ignored with their event name', () => {
    const names: Record<string, string> = {
      call: 'call',
      presence: 'presence.update',
      chatsUpdate: 'chats.update',
      contactsUpdate: 'contacts.update',
      groupParticipantsUpdate: 'group-participants.update',
      messageReceiptUpdate: 'messages.update',
      groupsUpdate: 'groups.update',
      historySync: 'messaging-history.set',
    };
    for (const [kind, payloads] of Object.entries(fixtures.events)) {
      const r = parseEvolutionWebhook(wrap(payloads[0] ?? {}, names[kind] ?? kind), 'i');
      expect(r.messages).toEqual([]);
      expect(r.ignored).toEqual([`event ${names[kind] ?? kind}`]);
    }
    expect(parseEvolutionWebhook(wrap({}, 'CONNECTION_UPDATE'), 'i').ignored).toEqual(['event CONNECTION_UPDATE']);
    expect(parseEvolutionWebhook(wrap({}, 'qrcode.updated'), 'i').ignored).toEqual(['event qrcode.updated']);
    expect(parseEvolutionWebhook('not json', 'i').ignored).toEqual(['body is not a JSON object']);
    expect(parseEvolutionWebhook({ data: fixtures.messages.text[0].payload }, 'i').ignored).toEqual(['event (none)']);
  });
});

describe('parseEvolutionWebhook: shapes Evolution sends', () => {
  test("the guide's Postman payload parses", () => {
    const body = {
      event: 'messages.upsert',
      data: {
        key: { remoteJid: '919391189719@s.whatsapp.net', fromMe: false, id: 'test_pavan_postman_001' },
        messageTimestamp: 1765375800,
        pushName: 'Pavan',
        status: 'PENDING',
        message: { conversation: 'give me a java code to check greatest of 3 numbers ' },
      },
    };
    const { messages, ignored } = parseEvolutionWebhook(body, 'leo');
    expect(ignored).toEqual([]);
    expect(messages).toEqual([
      {
        instanceId: 'leo',
        providerMessageId: 'test_pavan_postman_001',
        chat: { chatId: '919391189719@s.whatsapp.net', kind: 'direct' },
        sender: { id: '919391189719@s.whatsapp.net', name: 'Pavan', phone: '+919391189719' },
        text: 'give me a java code to check greatest of 3 numbers ',
        contentType: 'text',
        timestamp: 1765375800000,
        extra: { remoteJid: '919391189719@s.whatsapp.net', messageType: 'conversation' },
      },
    ]);
  });

  test('MESSAGES_UPSERT spelling and data as an array', () => {
    const [a, b, mine] = [fixtures.messages.text[0], fixtures.messages.text[1], fixtures.messages.text[2]];
    const r = parseEvolutionWebhook(wrap([a.payload, mine.payload, b.payload], 'MESSAGES_UPSERT'), 'i');
    expect(r.messages.map((m) => m.providerMessageId)).toEqual([a.id, b.id]);
    expect(r.ignored).toEqual([`fromMe (${mine.id})`]);
  });

  test('status broadcast, reactions, protocol messages and stubs are ignored', () => {
    const key = { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id: 'X1' };
    const cases: Array<[unknown, RegExp]> = [
      [
        {
          key: { ...key, remoteJid: 'status@broadcast', participant: '5511999990001@s.whatsapp.net' },
          message: { conversation: 'story' },
        },
        /status broadcast/,
      ],
      [{ key, message: { reactionMessage: { key: { id: 'Y' }, text: '👍' } } }, /reaction/],
      [{ key, message: { protocolMessage: { type: 'MESSAGE_EDIT' } } }, /protocol message \(MESSAGE_EDIT\)/],
      [{ key, messageStubType: 2 }, /stub message/],
      [{ key, message: { messageContextInfo: {}, senderKeyDistributionMessage: {} } }, /no content/],
      [
        { key: { ...key, remoteJid: '120363000000000001@newsletter' }, message: { conversation: 'news' } },
        /newsletter/,
      ],
      [
        { key: { ...key, remoteJid: '120363000000000001@g.us' }, message: { conversation: 'who?' } },
        /group message without participant/,
      ],
    ];
    for (const [data, reason] of cases) {
      const r = parseEvolutionWebhook(wrap(data), 'i');
      expect(r.messages).toEqual([]);
      expect(r.ignored[0]).toMatch(reason);
    }
  });

  test('a group message: chat is the group, sender the participant (phone preferred), mention of the bot detected', () => {
    const data = {
      key: {
        remoteJid: '120363000000000001@g.us',
        fromMe: false,
        id: 'G1',
        participant: '100000000000003@lid',
        participantAlt: '5511999990002@s.whatsapp.net',
      },
      pushName: 'Carol',
      messageTimestamp: '1769830000',
      message: {
        extendedTextMessage: { text: '@bot hello', contextInfo: { mentionedJid: ['5511988880000@s.whatsapp.net'] } },
      },
    };
    const [m] = parseEvolutionWebhook(wrap(data), 'i').messages;
    expect(m.chat).toEqual({ chatId: '120363000000000001@g.us', kind: 'group' });
    expect(m.sender).toEqual({
      id: '5511999990002@s.whatsapp.net',
      name: 'Carol',
      phone: '+5511999990002',
      altId: '100000000000003@lid',
    });
    expect(m.mentioned).toBe(true);
    expect(m.timestamp).toBe(1769830000000);
    expect(m.extra?.participant).toBe('100000000000003@lid');

    const other = { ...data, key: { ...data.key, id: 'G2' }, message: { conversation: 'just chatting' } };
    expect(parseEvolutionWebhook(wrap(other), 'i').messages[0].mentioned).toBe(false);
  });

  test('LID without a known phone: the LID is the chat and the sender, no phone claimed', () => {
    const data = {
      key: { remoteJid: '100000000000009@lid', fromMe: false, id: 'L1' },
      message: { conversation: 'hi' },
      messageTimestamp: 1769830000,
    };
    const [m] = parseEvolutionWebhook(wrap(data), 'i').messages;
    expect(m.chat.chatId).toBe('100000000000009@lid');
    expect(m.sender).toEqual({ id: '100000000000009@lid' });
  });

  test('webhook_base64: a multi-megabyte base64 body is not text; the caption is', () => {
    const base64 = 'A'.repeat(8 * 1024 * 1024);
    const data = {
      key: { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id: 'B64' },
      messageType: 'imageMessage',
      messageTimestamp: 1769830000,
      message: { imageMessage: { mimetype: 'image/jpeg', caption: 'look at this' }, base64 },
    };
    const started = performance.now();
    const { messages } = parseEvolutionWebhook(wrap(data), 'i');
    expect(performance.now() - started).toBeLessThan(250);
    expect(messages[0].text).toBe('look at this');
    expect(messages[0].contentType).toBe('image');
    expect(JSON.stringify(messages[0]).length).toBeLessThan(1000);

    const doc = {
      ...data,
      key: { ...data.key, id: 'B65' },
      message: { documentWithCaptionMessage: { message: { documentMessage: { fileName: 'report.pdf' } } }, base64 },
    };
    expect(parseEvolutionWebhook(wrap(doc), 'i').messages[0].text).toBe('[document: report.pdf]');
    const video = {
      ...data,
      key: { ...data.key, id: 'B66' },
      message: { ephemeralMessage: { message: { videoMessage: { caption: 'clip' } } } },
    };
    expect(parseEvolutionWebhook(wrap(video), 'i').messages[0]).toMatchObject({ text: 'clip', contentType: 'video' });
  });

  test('timestamps: number, numeric string, Long {low, high}; missing → the webhook date_time', () => {
    expect(timestampToMs(1769829698)).toBe(1769829698000);
    expect(timestampToMs('1769829698')).toBe(1769829698000);
    expect(timestampToMs({ low: 1769829698, high: 0, unsigned: true })).toBe(1769829698000);
    // A low word above 2^31 arrives negative from protobufjs.
    expect(timestampToMs({ low: 3000000000 | 0, high: 0 })).toBe(3000000000000);
    expect(timestampToMs(undefined)).toBeUndefined();
    const data = {
      key: { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id: 'T1' },
      message: { conversation: 'x' },
    };
    expect(parseEvolutionWebhook(wrap(data), 'i').messages[0].timestamp).toBe(Date.parse('2026-01-31T03:21:53.000Z'));
  });
});

// --- client against the fake ---------------------------------------------------------------

/** A clock whose timers fire only when the test says so. */
function manualClock(): Clock & { fireAll(): void; pending(): number } {
  const timers: Array<{ fn: () => void; live: boolean }> = [];
  return {
    now: () => Date.now(),
    monotonic: () => performance.now(),
    setTimeout(fn: () => void): Timer {
      const t = { fn, live: true };
      timers.push(t);
      return {
        cancel: () => {
          t.live = false;
        },
      };
    },
    sleep: () => Promise.resolve(),
    fireAll() {
      for (const t of timers.splice(0)) if (t.live) t.fn();
    },
    pending: () => timers.filter((t) => t.live).length,
  };
}

function decodeQr(dataUrl: string): string | undefined {
  const png = PNG.sync.read(Buffer.from(dataUrl.replace(/^data:image\/png;base64,/, ''), 'base64'));
  return jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data;
}

async function rejection(p: Promise<unknown>): Promise<ChannelError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ChannelError);
    return err as ChannelError;
  }
  throw new Error('expected a rejection');
}

let evo: FakeEvolution;
let cfg: EvolutionInstanceConfig;
beforeAll(async () => {
  evo = await startFakeEvolution({ apikey: 'evo-secret-key-123' });
  cfg = { url: evo.url, apiKey: evo.apikey, instanceName: 'whatsapp-leo-bot' };
});
afterAll(() => evo.stop());
afterEach(() => evo.reset());

describe('Evolution client', () => {
  test('sendText posts {number, text, delay, quoted} with the apikey header and returns key.id', async () => {
    const quoted = {
      key: { id: 'Q1', remoteJid: '100000000000001@lid', fromMe: false },
      message: { conversation: 'hi' },
    };
    const id = await sendText(cfg, '5511999990001', 'Hello from Leo', { delay: 100, quoted });
    expect(evo.sent).toHaveLength(1);
    const s = evo.sent[0];
    expect(id).toBe(s.id);
    expect(s.instance).toBe('whatsapp-leo-bot');
    expect(s.apikey).toBe('evo-secret-key-123');
    expect(s.body).toEqual({ number: '5511999990001', text: 'Hello from Leo', delay: 100, quoted });
    expect(evo.calls[0].path).toBe('/message/sendText/whatsapp-leo-bot');
  });

  test('a wrong apikey is a permanent error that names the setting, never the key', async () => {
    const err = await rejection(sendText({ ...cfg, apiKey: 'wrong-key-456' }, '1', 'x'));
    expect(err.status).toBe(401);
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('evolution_key');
    expect(err.message).not.toContain('wrong-key-456');
    expect(evo.sent).toHaveLength(0);
  });

  test('5xx and 429 are retryable (Retry-After honoured); other 4xx are not', async () => {
    evo.fail('sendText', 503);
    const e503 = await rejection(sendText(cfg, '1', 'x'));
    expect([e503.retryable, e503.status]).toEqual([true, 503]);
    expect(e503.message).toContain('HTTP 503');

    evo.fail('sendText', 429, 1, { retryAfter: '7' });
    const e429 = await rejection(sendText(cfg, '1', 'x'));
    expect([e429.retryable, e429.retryAfterMs, e429.status]).toEqual([true, 7000, 429]);

    evo.fail('sendText', 400, 1, {
      body: { status: 400, error: 'Bad Request', response: { message: [{ exists: false, number: '1' }] } },
    });
    const e400 = await rejection(sendText(cfg, '1', 'x'));
    expect([e400.retryable, e400.status]).toEqual([false, 400]);
    // Our reason for the refusal, not Evolution's body (messages reach API callers).
    expect(e400.message).toContain('the number is not on WhatsApp');
    expect(e400.message).not.toContain('"exists":false');

    const e404 = await rejection(connect({ ...cfg, instanceName: 'nope' }));
    expect([e404.retryable, e404.status]).toEqual([false, 404]);
    expect(e404.message).toContain('Evolution instance "nope" not found');
    expect(evo.sent).toHaveLength(0);
  });

  test('an unreachable server gives a clear, retryable reason', async () => {
    const dead = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') });
    const url = `http://127.0.0.1:${dead.port}`;
    dead.stop(true);
    const err = await rejection(sendText({ ...cfg, url }, '1', 'x'));
    expect(err.retryable).toBe(true);
    expect(err.message.startsWith(`Evolution API unreachable at ${url}: `)).toBe(true);
  });

  test('a server that does not answer times out (driven by the clock) as retryable', async () => {
    evo.delay(3000, 'sendText');
    const clock = manualClock();
    const pending = sendText(cfg, '1', 'x', {}, { clock, timeoutMs: 15_000 });
    while (evo.calls.length === 0) await Bun.sleep(1);
    expect(clock.pending()).toBe(1);
    clock.fireAll();
    const err = await rejection(pending);
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('did not answer sendText within 15000 ms');
  });

  test("the caller's AbortSignal cancels the call", async () => {
    evo.delay(3000, 'connectionState');
    const ac = new AbortController();
    const pending = connectionState(cfg, { signal: ac.signal });
    while (evo.calls.length === 0) await Bun.sleep(1);
    ac.abort(new Error('shutting down'));
    await expect(pending).rejects.toThrow('shutting down');
  });

  test('instance lifecycle: create (idempotent), webhook, QR, state, logout, restart', async () => {
    const inst = { ...cfg, instanceName: 'lifecycle-bot' };
    const first = await provisionInstance(inst, {
      url: 'http://gw.local/webhook/evolution/lifecycle-bot?token=t',
      base64: true,
    });
    expect(first.created).toBe(true);
    expect(decodeQr(first.qr!.qr!)).toBe(evo.instances.get('lifecycle-bot')!.qrCode!);
    expect(evo.calls.find((c) => c.route === 'create')!.body).toEqual({
      instanceName: 'lifecycle-bot',
      qrcode: true,
      integration: 'WHATSAPP-BAILEYS',
    });
    expect(evo.instances.get('lifecycle-bot')!.webhook).toEqual({
      enabled: true,
      url: 'http://gw.local/webhook/evolution/lifecycle-bot?token=t',
      base64: true,
      byEvents: false,
      events: ['MESSAGES_UPSERT'],
    });
    // Evolution answers 403 "already in use" the second time: that is fine.
    expect((await createInstance(inst)).created).toBe(false);
    await setWebhook(inst, { url: 'http://gw.local/other', base64: false });
    expect(evo.instances.get('lifecycle-bot')!.webhook!.url).toBe('http://gw.local/other');

    expect(await connectionState(inst)).toBe('connecting');
    const qr = await connect(inst);
    expect(qr.qr!.startsWith('data:image/png;base64,')).toBe(true);
    expect(decodeQr(qr.qr!)).toBe(qr.code!);

    evo.setState('lifecycle-bot', 'open');
    expect(await connect(inst)).toEqual({ qr: null, code: null, pairingCode: null, state: 'open' });
    expect(await connectionState(inst)).toBe('open');
    await restart(inst);
    await logout(inst);
    expect(await connectionState(inst)).toBe('close');
    expect(evo.calls.every((c) => c.apikey === 'evo-secret-key-123')).toBe(true);
  });

  test('evolutionConfigOf reads snake_case settings and refuses missing credentials', () => {
    const c = evolutionConfigOf({
      name: 'bot',
      config: { evolution_url: 'https://evo.example.com/', evolution_key: 'k' },
    });
    expect(c).toEqual({ url: 'https://evo.example.com', apiKey: 'k', instanceName: 'bot' });
    expect(() => evolutionConfigOf({ name: 'bot', config: { evolution_key: 'k' } })).toThrow('has no evolution_url');
  });
});

// --- adapter ------------------------------------------------------------------------------

function makeInstance(config: Record<string, unknown>): Instance {
  return {
    id: 'inst-1',
    seq: 1,
    name: 'whatsapp-leo-bot',
    channel: 'whatsapp-evolution',
    isActive: true,
    isDefault: false,
    agent: {
      url: null,
      apiKey: null,
      type: 'json',
      timeoutSeconds: 120,
      idleTimeoutSeconds: 60,
      defaultAgent: null,
      model: null,
      headers: {},
    },
    config,
    settings: { replyMode: 'final', errorReply: null, accessMode: 'disabled', maxTextLength: null },
    webhookSecret: 's',
    status: 'connecting',
    statusReason: null,
    createdAt: '',
    updatedAt: '',
  };
}

function ctxFor(instance: Instance) {
  const statuses: Array<{ status: InstanceStatus; reason?: string }> = [];
  const ctx: AdapterContext = {
    instance,
    log: silentLogger,
    ingest: async () => ({ status: 'accepted', traceId: 't' }),
    setStatus: (status, detail) => statuses.push({ status, ...(detail?.reason ? { reason: detail.reason } : {}) }),
  };
  return { ctx, statuses };
}

const lidInbound = (): InboundMessage =>
  parseEvolutionWebhook(wrap(fixtures.messages.text[0].payload), 'inst-1').messages[0];

describe('EvolutionAdapter', () => {
  const base = () => ({ evolution_url: evo.url, evolution_key: evo.apikey, whatsapp_instance: 'evo-bot' });

  test('start reports the Evolution connection state once and never throws', async () => {
    evo.setState('evo-bot', 'open');
    const a = ctxFor(makeInstance(base()));
    await new EvolutionAdapter(a.ctx.instance).start(a.ctx);
    expect(a.statuses).toEqual([{ status: 'connected' }]);

    evo.setState('evo-bot', 'close');
    const b = ctxFor(makeInstance(base()));
    await new EvolutionAdapter(b.ctx.instance).start(b.ctx);
    expect(b.statuses).toEqual([{ status: 'disconnected' }]);

    const c = ctxFor(makeInstance({ ...base(), evolution_url: 'http://127.0.0.1:1' }));
    await new EvolutionAdapter(c.ctx.instance).start(c.ctx);
    expect(c.statuses[0].status).toBe('error');
    expect(c.statuses[0].reason).toContain('Evolution API unreachable at http://127.0.0.1:1');

    const d = ctxFor(makeInstance({ evolution_key: 'k' }));
    await new EvolutionAdapter(d.ctx.instance).start(d.ctx);
    expect(d.statuses).toEqual([{ status: 'error', reason: 'instance "whatsapp-leo-bot" has no evolution_url' }]);
  });

  test('a reply to a LID-addressed chat goes to the phone digits; the receipt carries key.id', async () => {
    const inbound = lidInbound();
    const adapter = new EvolutionAdapter(makeInstance({ ...base(), evolution_send_delay_ms: 250 }));
    const receipt = await adapter.send(inbound.chat, { text: 'Olá!' }, { idempotencyKey: 'k1', inbound });
    expect(evo.sent.map((s) => [s.instance, s.number, s.text])).toEqual([['evo-bot', '5511999990001', 'Olá!']]);
    expect(evo.sent[0].body).toEqual({ number: '5511999990001', text: 'Olá!', delay: 250 });
    expect(receipt.platformMessageId).toBe(evo.sent[0].id);
  });

  test('group replies go to the group JID; quoting when evolution_quote_replies is on', async () => {
    const data = {
      key: { remoteJid: '120363000000000001@g.us', fromMe: false, id: 'G9', participant: '100000000000003@lid' },
      message: { conversation: 'ping' },
      messageTimestamp: 1769830000,
    };
    const inbound = parseEvolutionWebhook(wrap(data), 'inst-1').messages[0];
    const adapter = new EvolutionAdapter(makeInstance({ ...base(), evolution_quote_replies: true }));
    await adapter.send(inbound.chat, { text: 'pong' }, { idempotencyKey: 'k2', inbound });
    expect(evo.sent[0].body).toEqual({
      number: '120363000000000001@g.us',
      text: 'pong',
      quoted: {
        key: { id: 'G9', remoteJid: '120363000000000001@g.us', fromMe: false, participant: '100000000000003@lid' },
        message: { conversation: 'ping' },
      },
    });
  });

  test('a long reply is split at 4000 without breaking a code block, sent in order, quoted once', async () => {
    const para = (n: number) => `Paragraph ${n}. ${'lorem ipsum dolor sit amet '.repeat(40)}`;
    // Blank lines inside the fence: a paragraph splitter that ignored fences would cut here.
    const code =
      '```java\n' +
      Array.from(
        { length: 60 },
        (_, i) => `${i % 10 === 9 ? '\n' : ''}int v${i} = Math.max(a, Math.max(b, c)); // ${i}`,
      ).join('\n') +
      '\n```';
    // The code starts when the first message is half full: it must move to the next message whole.
    const reply = [para(1), para(2), code, para(3), para(4), para(5), para(6)].join('\n\n');
    expect(reply.length).toBeGreaterThan(8000);
    const inbound = lidInbound();
    const adapter = new EvolutionAdapter(makeInstance({ ...base(), evolution_quote_replies: 'true' }));
    await adapter.send(inbound.chat, { text: reply }, { idempotencyKey: 'k3', inbound });
    const texts = evo.sent.map((s) => s.text);
    expect(texts.length).toBeGreaterThan(2);
    for (const t of texts) {
      expect(t.length).toBeLessThanOrEqual(4000);
      expect((t.match(/^```/gm) ?? []).length % 2).toBe(0);
    }
    expect(texts.filter((t) => t.includes(code))).toHaveLength(1);
    // The shared chunker drops only the whitespace at the cuts.
    expect(texts.join('\n\n').replace(/\s+/g, ' ')).toBe(reply.replace(/\s+/g, ' ').trim());
    expect(evo.sent.map((s) => s.body.quoted !== undefined)).toEqual(texts.map((_, i) => i === 0));
    for (let i = 1; i < evo.sent.length; i++) expect(evo.sent[i].at).toBeGreaterThanOrEqual(evo.sent[i - 1].at);
  });

  test('a retried send resumes after the chunks already delivered; 4xx errors are permanent', async () => {
    const reply = ['a'.repeat(3000), 'b'.repeat(3000), 'c'.repeat(3000)].join('\n\n');
    const inbound = lidInbound();
    const adapter = new EvolutionAdapter(makeInstance(base()));
    evo.fail('sendText', 502, 1, { after: 1 });
    const err = await rejection(adapter.send(inbound.chat, { text: reply }, { idempotencyKey: 'k4', inbound }));
    expect(err.retryable).toBe(true);
    expect(evo.sent.map((s) => s.text[0])).toEqual(['a']);
    await adapter.send(inbound.chat, { text: reply }, { idempotencyKey: 'k4', inbound });
    expect(evo.sent.map((s) => s.text[0])).toEqual(['a', 'b', 'c']);

    evo.fail('sendText', 400);
    const bad = await rejection(adapter.send(inbound.chat, { text: 'x' }, { idempotencyKey: 'k5', inbound }));
    expect(bad.retryable).toBe(false);
  });

  test('typing sends a composing presence, best effort', async () => {
    const inbound = lidInbound();
    const adapter = new EvolutionAdapter(makeInstance(base()), { typingMs: 1200 });
    await adapter.typing(inbound.chat, true);
    while (!evo.calls.some((c) => c.route === 'sendPresence')) await Bun.sleep(1);
    expect(evo.calls.find((c) => c.route === 'sendPresence')!.body).toEqual({
      number: '5511999990001',
      presence: 'composing',
      delay: 1200,
    });
    evo.fail('sendPresence', 500);
    await adapter.typing(inbound.chat, false); // must not throw
  });
});
