// Every message kind in the captured Baileys payloads maps to a well-formed inbound message or
// a deliberate ignore; plus the cases the captures lack (groups, mentions, wrappers, malformed).
import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isIgnored, type ParseOptions, parseBaileysMessage } from '../../../src/channels/whatsapp/parse.ts';
import type { InboundMessage } from '../../../src/core/message.ts';

const FIXTURES = join(import.meta.dir, '..', '..', 'fixtures', 'whatsapp-baileys-real-payloads.json');
const fixtures = JSON.parse(readFileSync(FIXTURES, 'utf8')) as {
  messages: Record<string, Array<{ id: string; payload: any }>>;
};

const BOT = { id: '5511999990000:7@s.whatsapp.net', lid: '100000000000009:7@lid' };
const base: ParseOptions = { instanceId: 'inst-1', selfIds: [BOT.id, BOT.lid], nowMs: 1_700_000_000_000 };

function expectWellFormed(m: InboundMessage, payload: any): void {
  expect(m.instanceId).toBe('inst-1');
  expect(m.providerMessageId).toBe(payload.key.id);
  expect(m.chat.chatId).toBe(payload.key.remoteJid);
  expect(['direct', 'group']).toContain(m.chat.kind);
  expect(m.sender.id.length).toBeGreaterThan(0);
  expect(typeof m.text).toBe('string');
  expect(m.text.length).toBeGreaterThan(0);
  expect(m.timestamp).toBe(Number(payload.messageTimestamp) * 1000);
  // Round-trips through JSON (the durable inbox stores it that way).
  expect(JSON.parse(JSON.stringify(m))).toEqual(m);
}

/** What each captured message must become: expected text/kind, or an ignore reason pattern. */
const EXPECTED: Record<string, (p: any) => { text?: string | RegExp; contentType?: string; ignored?: RegExp }> = {
  AC23570AE54CCF58A8923E45CC6089E8: () => ({ text: 'Buenas como q tão as coisas aí', contentType: 'text' }),
  ACE0753E3FBE3A88FF726FC52ED6FB77: () => ({ text: 'Mensagem será deletada', contentType: 'text' }),
  ACB6DD980250AADFEF6008DF275A8855: () => ({ text: 'Perdi as ligações aqui', contentType: 'text' }),
  ACDEB3DF3FA0B9571674641550949444: () => ({ text: '[voice note]', contentType: 'audio' }),
  ACFD2E3DC8F0340204B5DB6EAE0A7092: () => ({ text: '[image]', contentType: 'image' }),
  AC987AA4C405005A3EF0CE66A18C1806: () => ({ text: '[sticker]', contentType: 'sticker' }),
  AC71EDD10CE851493E4C5AECF1697A75: () => ({ text: '[contact: Alice Test +5511999990001]', contentType: 'contact' }),
  ACDAD8DFE4203A41711722E96E24EEC4: () => ({ text: '[location: 0,0]', contentType: 'location' }),
  AC04809E9F816ACEB5F794B6081EEAD3: () => ({ text: '[poll: Quero saber — Quem é que / Transa]', contentType: 'poll' }),
  AC19F8A92E5173E9BC213A6A78C23EC7: () => ({ text: 'Quoting a message here', contentType: 'text' }),
  ACD1D321398037D659387DABEDFE8A03: () => ({ text: 'Essa mensagem será encaminhada', contentType: 'text' }),
  AC82299425112ACDEAA583417745403C: () => ({ text: /^\[event: Então na loca/, contentType: 'other' }),
  ACB3BD49DB830E5114F0E5AC37EEDACF: () => ({ ignored: /protocol message \(REVOKE\)/ }),
  AC4D1AE3B43F2AE48CBFF925F9EE6AC0: () => ({ ignored: /unsupported message kind: interactiveMessage/ }),
};

describe('parseBaileysMessage on the captured payloads', () => {
  const all = Object.entries(fixtures.messages).flatMap(([kind, list]) => list.map((m) => ({ kind, ...m })));

  test('the captures are all covered', () => {
    expect(all.length).toBeGreaterThanOrEqual(20);
    const kinds = new Set(all.map((m) => m.kind));
    for (const k of [
      'text',
      'audio',
      'image',
      'sticker',
      'contact',
      'location',
      'poll',
      'pollUpdate',
      'extendedText',
      'other',
    ]) {
      expect(kinds.has(k)).toBe(true);
    }
  });

  for (const { kind, id, payload } of all) {
    test(`${kind} ${id}${payload.key.fromMe ? ' (fromMe)' : ''}`, () => {
      const fromMe = payload.key.fromMe === true;
      if (fromMe) {
        // Own messages are ignored by default; with whatsapp_self_messages they map like the rest.
        const r = parseBaileysMessage(payload, base);
        expect(isIgnored(r) && r.ignored).toMatch(/own message/);
      }
      const r = parseBaileysMessage(payload, fromMe ? { ...base, selfMessages: true } : base);
      const want =
        EXPECTED[id]?.(payload) ??
        (kind === 'pollUpdate'
          ? { ignored: /poll vote/ }
          : kind === 'extendedText'
            ? { text: payload.message.extendedTextMessage.text, contentType: 'text' }
            : undefined);
      if (!want) throw new Error(`fixture ${kind} ${id} has no expectation`);
      if (want.ignored) {
        expect(isIgnored(r)).toBe(true);
        expect((r as { ignored: string }).ignored).toMatch(want.ignored);
        return;
      }
      expect(isIgnored(r)).toBe(false);
      const m = r as InboundMessage;
      expectWellFormed(m, payload);
      if (want.text instanceof RegExp) expect(m.text).toMatch(want.text);
      else expect(m.text).toBe(want.text!);
      expect(m.contentType).toBe(want.contentType as InboundMessage['contentType']);
      // LID addressing: the chat stays the LID, the phone comes from remoteJidAlt.
      expect(m.chat).toEqual({ chatId: '100000000000001@lid', kind: 'direct' });
      if (fromMe) {
        expect(m.fromOwner).toBe(true);
        expect(m.sender).toEqual({ id: '5511999990000@s.whatsapp.net', phone: '+5511999990000' });
        return;
      }
      expect(m.sender).toEqual({
        id: '100000000000001@lid',
        name: 'Alice Test',
        phone: '+5511999990001',
        altId: '5511999990001@s.whatsapp.net',
      });
      expect(m.fromOwner).toBeUndefined();
    });
  }

  test('quoted and forwarded details are kept for the agent', () => {
    const quote = fixtures.messages.extendedText.find((m) => m.id === 'AC19F8A92E5173E9BC213A6A78C23EC7')!;
    const m = parseBaileysMessage(quote.payload, base) as InboundMessage;
    expect(m.extra?.quotedMessageId).toBe('AC23570AE54CCF58A8923E45CC6089E8');
    expect(m.extra?.quotedText).toBe('Buenas como q tão as coisas aí');
    const fwd = fixtures.messages.extendedText.find((m) => m.id === 'ACD1D321398037D659387DABEDFE8A03')!;
    expect((parseBaileysMessage(fwd.payload, base) as InboundMessage).extra?.forwarded).toBe(true);
  });

  test('own messages are accepted with whatsapp_self_messages and marked fromOwner', () => {
    const own = fixtures.messages.text.find((m) => m.payload.key.fromMe)!;
    const m = parseBaileysMessage(own.payload, { ...base, selfMessages: true }) as InboundMessage;
    expect(isIgnored(m)).toBe(false);
    expect(m.text).toBe('Perdi as ligações aqui');
    expect(m.fromOwner).toBe(true);
    expect(m.sender.id).toBe('5511999990000@s.whatsapp.net');
    expect(m.sender.phone).toBe('+5511999990000');
    expect(m.chat.chatId).toBe('100000000000001@lid');
  });
});

describe('parseBaileysMessage beyond the captures', () => {
  const group = (message: any, extraKey: Record<string, unknown> = {}) => ({
    key: {
      remoteJid: '120363000000000001@g.us',
      id: 'GRP1',
      fromMe: false,
      participant: '100000000000003@lid',
      participantAlt: '5511999990002@s.whatsapp.net',
      ...extraKey,
    },
    messageTimestamp: '1769830000',
    pushName: 'Carol',
    message,
  });

  test('group: the participant is the sender, the chat is the group', () => {
    const m = parseBaileysMessage(group({ conversation: 'hello all' }) as any, base) as InboundMessage;
    expect(m.chat).toEqual({ chatId: '120363000000000001@g.us', kind: 'group' });
    expect(m.sender).toEqual({
      id: '100000000000003@lid',
      name: 'Carol',
      phone: '+5511999990002',
      altId: '5511999990002@s.whatsapp.net',
    });
    expect(m.mentioned).toBe(false);
    expect(m.timestamp).toBe(1769830000 * 1000);
    expect(m.extra?.key).toEqual({
      remoteJid: '120363000000000001@g.us',
      id: 'GRP1',
      fromMe: false,
      participant: '100000000000003@lid',
    });
  });

  test('group mention gating: mention by LID or phone JID, or a reply to the bot, passes', () => {
    const opts = { ...base, groupMentionOnly: true };
    expect(parseBaileysMessage(group({ conversation: 'hello all' }) as any, opts)).toEqual({
      ignored: 'group message without mention of the bot',
    });
    const byLid = group({
      extendedTextMessage: { text: '@bot hi', contextInfo: { mentionedJid: ['100000000000009@lid'] } },
    });
    expect((parseBaileysMessage(byLid as any, opts) as InboundMessage).mentioned).toBe(true);
    const byPhone = group({
      extendedTextMessage: { text: '@bot hi', contextInfo: { mentionedJid: ['5511999990000@s.whatsapp.net'] } },
    });
    expect((parseBaileysMessage(byPhone as any, opts) as InboundMessage).mentioned).toBe(true);
    const reply = group({
      extendedTextMessage: {
        text: 'and?',
        contextInfo: {
          stanzaId: 'BOTMSG',
          participant: '5511999990000@s.whatsapp.net',
          quotedMessage: { conversation: 'bot said' },
        },
      },
    });
    const r = parseBaileysMessage(reply as any, opts) as InboundMessage;
    expect(r.mentioned).toBe(true);
    expect(r.extra?.quotedText).toBe('bot said');
    const other = group({
      extendedTextMessage: { text: '@carol', contextInfo: { mentionedJid: ['100000000000004@lid'] } },
    });
    expect(isIgnored(parseBaileysMessage(other as any, opts))).toBe(true);
    // An image caption mentioning the bot counts too.
    const img = group({
      imageMessage: { caption: 'look @bot', contextInfo: { mentionedJid: ['100000000000009@lid'] } },
    });
    expect(parseBaileysMessage(img as any, opts)).toMatchObject({
      text: 'look @bot',
      contentType: 'image',
      mentioned: true,
    });
  });

  test('LID without alt in the key: the phone comes from learned mappings', () => {
    const msg = {
      key: { remoteJid: '100000000000077@lid', id: 'L1', fromMe: false },
      messageTimestamp: 1,
      message: { conversation: 'hi' },
    };
    const without = parseBaileysMessage(msg as any, base) as InboundMessage;
    expect(without.sender).toEqual({ id: '100000000000077@lid' });
    const withMap = parseBaileysMessage(msg as any, {
      ...base,
      lidToPhone: (l) => (l === '100000000000077@lid' ? '5511999990077@s.whatsapp.net' : undefined),
    }) as InboundMessage;
    expect(withMap.sender).toEqual({
      id: '100000000000077@lid',
      phone: '+5511999990077',
      altId: '5511999990077@s.whatsapp.net',
    });
  });

  test('wrappers, captions, documents, video, live location, button replies', () => {
    const k = (id: string) => ({ remoteJid: '5511999990001@s.whatsapp.net', id, fromMe: false });
    const cases: Array<[any, string, string]> = [
      [{ ephemeralMessage: { message: { extendedTextMessage: { text: 'disappearing' } } } }, 'disappearing', 'text'],
      [{ viewOnceMessageV2: { message: { imageMessage: { caption: 'once' } } } }, 'once', 'image'],
      [{ videoMessage: { caption: 'clip' } }, 'clip', 'video'],
      [{ videoMessage: {} }, '[video]', 'video'],
      [
        { documentWithCaptionMessage: { message: { documentMessage: { caption: 'the report', fileName: 'r.pdf' } } } },
        'the report',
        'document',
      ],
      [{ documentMessage: { fileName: 'r.pdf' } }, '[document: r.pdf]', 'document'],
      [{ audioMessage: { ptt: false } }, '[audio]', 'audio'],
      [
        { liveLocationMessage: { degreesLatitude: -23.5, degreesLongitude: -46.6 } },
        '[location: -23.5,-46.6]',
        'location',
      ],
      [
        { locationMessage: { degreesLatitude: 1.5, degreesLongitude: 2, name: 'Office', address: 'Main St' } },
        '[location: 1.5,2 Office, Main St]',
        'location',
      ],
      [{ buttonsResponseMessage: { selectedDisplayText: 'Yes please' } }, 'Yes please', 'text'],
      [{ listResponseMessage: { title: 'Option B' } }, 'Option B', 'text'],
      [
        {
          contactsArrayMessage: {
            contacts: [{ displayName: 'A' }, { displayName: 'B', vcard: 'TEL;type=CELL:+1 555 0100' }],
          },
        },
        '[contacts: A; B +15550100]',
        'contact',
      ],
    ];
    cases.forEach(([message, text, contentType], i) => {
      const m = parseBaileysMessage({ key: k(`W${i}`), messageTimestamp: 10, message } as any, base);
      expect(m).toMatchObject({
        text,
        contentType,
        chat: { chatId: '5511999990001@s.whatsapp.net', kind: 'direct' },
        sender: { phone: '+5511999990001' },
      });
    });
  });

  test('deliberate ignores and malformed input never throw', () => {
    const key = { remoteJid: '5511999990001@s.whatsapp.net', id: 'X1', fromMe: false };
    const cases: Array<[any, RegExp]> = [
      [{ key: { ...key, remoteJid: 'status@broadcast' }, message: { conversation: 'story' } }, /status broadcast/],
      [{ key: { ...key, remoteJid: '123@newsletter' }, message: { conversation: 'news' } }, /newsletter/],
      [{ key, message: { reactionMessage: { text: '👍', key: { id: 'Y' } } } }, /reaction/],
      [{ key, message: { protocolMessage: { type: 'MESSAGE_EDIT' } } }, /protocol message/],
      [{ key, message: { senderKeyDistributionMessage: { groupId: 'g' }, messageContextInfo: {} } }, /no content/],
      [{ key, message: null, messageStubType: 20 }, /stub/],
      [{ key }, /no message content/],
      [
        { key: { ...key, remoteJid: '120363000000000001@g.us' }, message: { conversation: 'x' } },
        /malformed: group message without participant/,
      ],
      [{ key: { id: 'X' }, message: { conversation: 'x' } }, /malformed: no key.remoteJid/],
      [{ key: { remoteJid: '1@s.whatsapp.net' }, message: { conversation: 'x' } }, /malformed: no key.id/],
      [{ message: { conversation: 'x' } }, /malformed: no key/],
      [null, /malformed/],
      ['garbage', /malformed/],
    ];
    for (const [msg, reason] of cases) {
      const r = parseBaileysMessage(msg, base);
      expect(isIgnored(r)).toBe(true);
      expect((r as { ignored: string }).ignored).toMatch(reason);
    }
  });

  test('protobuf Long timestamps and a missing timestamp', () => {
    const key = { remoteJid: '5511999990001@s.whatsapp.net', id: 'T1', fromMe: false };
    const long = { low: 1769830000, high: 0, unsigned: true };
    expect(
      (
        parseBaileysMessage(
          { key, messageTimestamp: long, message: { conversation: 'x' } } as any,
          base,
        ) as InboundMessage
      ).timestamp,
    ).toBe(1769830000 * 1000);
    expect(
      (parseBaileysMessage({ key, message: { conversation: 'x' } } as any, base) as InboundMessage).timestamp,
    ).toBe(base.nowMs!);
  });
});
