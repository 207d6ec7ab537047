// Every Cloud API webhook fixture (written from Meta's documented examples) parses into the
// message or receipt it describes; a batch keeps every entry, change and message; what cannot be
// used is listed with its reason.
import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCloudWebhook } from '../../../src/channels/whatsapp-cloud/parse.ts';

const fixture = (name: string) =>
  JSON.parse(readFileSync(join(import.meta.dir, '../../fixtures/whatsapp-cloud', `${name}.json`), 'utf8'));
const PNID = '106540352242922';
const parse = (name: string) => parseCloudWebhook(fixture(name), 'inst-1', { phoneNumberId: PNID, now: () => 42 });
const one = (name: string) => {
  const r = parse(name);
  expect(r.ignored).toEqual([]);
  expect(r.messages).toHaveLength(1);
  return r.messages[0]!;
};

describe('Cloud API webhook messages', () => {
  test('text: the wa_id is the phone JID the other WhatsApp channels use; the profile name is the sender name', () => {
    const m = one('text');
    expect(m).toMatchObject({
      instanceId: 'inst-1',
      providerMessageId: 'wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=',
      chat: { chatId: '16505551234@s.whatsapp.net', kind: 'direct' },
      sender: { id: '16505551234@s.whatsapp.net', phone: '+16505551234', name: 'Sheena Nelson' },
      text: 'Does it come in another color?',
      contentType: 'text',
      timestamp: 1749416383000,
    });
  });

  test('a reply carries the quoted message id (context)', () => {
    const m = one('text-reply');
    expect(m.text).toBe('Yes, the blue one please');
    expect(m.extra?.quotedMessageId).toBe('wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA');
  });

  test('media become typed placeholders that keep the media id for a later fetch', () => {
    const image = one('image');
    expect(image.contentType).toBe('image');
    expect(image.text).toBe('This color?');
    expect(image.extra?.media).toEqual({
      id: '1003383421387256',
      type: 'image',
      mimeType: 'image/jpeg',
      sha256: 'AN4Xr1gJ5D0V4CJXFmc4rRsXoKMu7pzUvtJq3LhJkkE=',
      caption: 'This color?',
    });
    const audio = one('audio');
    expect(audio).toMatchObject({ contentType: 'audio', text: '[voice note]' });
    expect(audio.extra?.media).toMatchObject({
      id: '1003383421387257',
      voice: true,
      mimeType: 'audio/ogg; codecs=opus',
    });
    expect(one('video')).toMatchObject({ contentType: 'video', text: 'Unboxing' });
    const doc = one('document');
    expect(doc).toMatchObject({ contentType: 'document', text: '[document: invoice-0042.pdf]' });
    expect(doc.extra?.media).toMatchObject({ filename: 'invoice-0042.pdf', mimeType: 'application/pdf' });
    expect(one('sticker')).toMatchObject({ contentType: 'sticker', text: '[sticker]' });
  });

  test('location and contacts', () => {
    const loc = one('location');
    expect(loc.contentType).toBe('location');
    expect(loc.text).toBe('[location: 37.4847483,-122.1473294 Philz Coffee, 101 Forest Ave, Palo Alto, CA 94301]');
    expect(loc.extra?.location).toMatchObject({ latitude: 37.4847483, longitude: -122.1473294 });
    const c = one('contacts');
    expect(c.contentType).toBe('contact');
    expect(c.text).toBe('[contact: Barbara J. Johnson]');
    expect(c.extra?.contacts).toEqual([
      { name: 'Barbara J. Johnson', phones: [{ phone: '+1 (940) 555-1234', waId: '19405551234' }] },
    ]);
  });

  test('interactive replies: the title is what the user said, the id what they picked', () => {
    const b = one('interactive-button-reply');
    expect(b).toMatchObject({ contentType: 'text', text: 'Large' });
    expect(b.extra?.interactive).toEqual({ type: 'button_reply', id: 'size-l', title: 'Large' });
    expect(b.extra?.quotedMessageId).toBe('wamid.HBgLMTU1NTA3ODM4ODEVAgARGBJCVVRUT05TMDAwMDAwMDAwMQA=');
    const l = one('interactive-list-reply');
    expect(l).toMatchObject({ contentType: 'text', text: '10:00' });
    expect(l.extra?.interactive).toEqual({
      type: 'list_reply',
      id: 'slot-10',
      title: '10:00',
      description: 'Tomorrow morning',
    });
  });

  test('a reaction names the message and the emoji', () => {
    const r = one('reaction');
    expect(r.contentType).toBe('reaction');
    expect(r.extra?.reaction).toEqual({
      messageId: 'wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA',
      emoji: '❤️',
    });
  });

  test('an unsupported message is ignored with its type and Meta error code', () => {
    const r = parse('unsupported');
    expect(r.messages).toEqual([]);
    expect(r.ignored).toEqual([
      'unsupported message type unsupported (Meta error 131051) (wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzVU5TVVBQT1JURUQwMDAwMDAwMQA=)',
    ]);
  });
});

describe('Cloud API webhook statuses', () => {
  test('sent, delivered and read become receipts for the wamid we sent', () => {
    const id = 'wamid.HBgLMTY1MDU1NTEyMzQVAgARGBJSRVBMWTAwMDAwMDAwMDAwMQA=';
    expect(parse('status-sent').statuses).toEqual([
      { platformMessageId: id, status: 'sent', timestamp: 1749416390000 },
    ]);
    expect(parse('status-delivered').statuses).toEqual([
      { platformMessageId: id, status: 'delivered', timestamp: 1749416391000 },
    ]);
    expect(parse('status-read').statuses).toEqual([
      { platformMessageId: id, status: 'read', timestamp: 1749416400000 },
    ]);
    for (const n of ['status-sent', 'status-delivered', 'status-read']) expect(parse(n).messages).toEqual([]);
  });

  test('failed carries the error code; 131047 says to send a template', () => {
    const [s] = parse('status-failed').statuses;
    expect(s).toMatchObject({ status: 'failed', error: { code: 131047 } });
    expect(s!.error!.reason).toContain('24-hour');
    expect(s!.error!.reason).toContain('template');
  });
});

describe('batches and other notifications', () => {
  test('several entries, changes and messages in one POST; another number and other fields are ignored', () => {
    const r = parse('batch');
    expect(r.messages.map((m) => m.text)).toEqual(['first', 'second', 'third, from another user']);
    expect(r.messages[2]!.sender).toEqual({ id: '447700900123@s.whatsapp.net', phone: '+447700900123', name: 'Ada' });
    expect(r.statuses.map((s) => s.status)).toEqual(['delivered']);
    expect(r.ignored).toEqual(['another phone number (999999999999999)', 'field account_update']);
  });

  test('without a phone number id every number is taken; a body that is not a WABA notification is ignored', () => {
    expect(parseCloudWebhook(fixture('batch'), 'i').messages).toHaveLength(4);
    expect(parseCloudWebhook({ object: 'page', entry: [] }, 'i').ignored).toEqual([
      'not a whatsapp_business_account notification',
    ]);
    expect(parseCloudWebhook(null, 'i').messages).toEqual([]);
  });
});
