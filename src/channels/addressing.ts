// How the send API's `to` names a chat, by addressing style (a channel picks one in its definition).
import type { ChatAddress } from './types.ts';

/**
 * WhatsApp: a number (any punctuation) becomes the phone JID — the chat id inbound messages of that
 * user carry, so the send lands in the same conversation (and Evolution strips it back to digits);
 * a JID (with '@') is used as is.
 */
export function phoneOrJid(to: string): ChatAddress {
  const raw = to.trim();
  if (raw.includes('@')) return { chatId: raw, kind: raw.endsWith('@g.us') ? 'group' : 'direct' };
  const digits = raw.replace(/[\s()+\-.]/g, '');
  if (!/^\d{6,20}$/.test(digits))
    return { problem: 'expected a phone number (E.164 digits) or a WhatsApp JID', expected: 'E.164 number or JID' };
  return { chatId: `${digits}@s.whatsapp.net`, kind: 'direct' };
}

/** A channel id, optionally `channel/thread` (Discord, Slack). */
export function channelOrThread(to: string): ChatAddress {
  const raw = to.trim();
  if (!raw) return { problem: 'must not be empty' };
  const slash = raw.indexOf('/');
  if (slash > 0) return { chatId: raw.slice(0, slash), threadId: raw.slice(slash + 1), kind: 'group' };
  return { chatId: raw, kind: 'group' };
}

/** Any non-empty id, used as is. */
export function plainChat(to: string): ChatAddress {
  const raw = to.trim();
  if (!raw) return { problem: 'must not be empty' };
  return { chatId: raw, kind: 'group' };
}
