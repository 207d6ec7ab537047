// How the send API's `to` becomes a chat, per addressing style, and the error the send API gives.
import { describe, expect, test } from 'bun:test';
import { channelOrThread, phoneOrJid, plainChat } from '../../src/channels/addressing.ts';
import { CHANNELS } from '../../src/channels/registry.ts';
import type { Instance } from '../../src/core/instance.ts';
import { chatFor } from '../../src/services/messages.ts';

describe('addressing styles', () => {
  test('phone or JID: a number becomes the phone JID; a JID is kept; anything else is a problem', () => {
    expect(phoneOrJid(' +55 (11) 98765-4321 ')).toEqual({ chatId: '5511987654321@s.whatsapp.net', kind: 'direct' });
    expect(phoneOrJid('1203634@g.us')).toEqual({ chatId: '1203634@g.us', kind: 'group' });
    expect(phoneOrJid('123@lid')).toEqual({ chatId: '123@lid', kind: 'direct' });
    expect(phoneOrJid('')).toHaveProperty('problem');
    expect(phoneOrJid('12ab')).toHaveProperty('problem');
  });

  test('channel or thread: channel/thread splits; empty is a problem', () => {
    expect(channelOrThread('C1/171.5')).toEqual({ chatId: 'C1', threadId: '171.5', kind: 'group' });
    expect(channelOrThread(' C1 ')).toEqual({ chatId: 'C1', kind: 'group' });
    expect(channelOrThread('/x')).toEqual({ chatId: '/x', kind: 'group' });
    expect(channelOrThread('  ')).toEqual({ problem: 'must not be empty' });
  });

  test('plain: used as is, slash included', () => {
    expect(plainChat('a/b')).toEqual({ chatId: 'a/b', kind: 'group' });
    expect(plainChat('')).toEqual({ problem: 'must not be empty' });
  });
});

describe('chatFor (send API)', () => {
  const inst = (channel: string) => ({ channel }) as Instance;

  test('a problem is a VALIDATION_ERROR on `to`, with the expected form when the channel gives one', () => {
    for (const d of CHANNELS) {
      let err: any = null;
      try {
        chatFor(inst(d.kind), '');
      } catch (e) {
        err = e;
      }
      expect(err?.code).toBe('VALIDATION_ERROR');
      expect(err.message).toStartWith('to: ');
      expect(err.details.field).toBe('to');
    }
    const wa = CHANNELS.find((d) => d.chatFor === phoneOrJid)!;
    try {
      chatFor(inst(wa.kind), 'nope');
      throw new Error('no error');
    } catch (e: any) {
      expect(e.message).toBe('to: expected a phone number (E.164 digits) or a WhatsApp JID');
      expect(e.details).toEqual({ field: 'to', received: 'nope', expected: 'E.164 number or JID' });
    }
  });
});
