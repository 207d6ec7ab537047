// WAMessage → InboundMessage. Pure (type-only Baileys import) so the Evolution channel, whose
// webhooks wrap the same WAMessage as JSON, can reuse it without loading Baileys.
import { BufferJSON, type WAMessage } from '@whiskeysockets/baileys';
import type { ContentType, InboundMedia, InboundMessage } from '../../core/message.ts';

export interface ParseOptions {
  instanceId: string;
  /** Accept messages sent from the owner's phone (fromMe); they are marked fromOwner. */
  selfMessages?: boolean;
  /** In groups, keep only messages that mention the bot or reply to it. */
  groupMentionOnly?: boolean;
  /** The bot's own JIDs (phone JID and LID, device suffix allowed) for mention detection. */
  selfIds?: Array<string | null | undefined>;
  /** LID → phone JID lookup learned from lid-mapping events / contacts. */
  lidToPhone?: (lid: string) => string | undefined;
  /** Fallback timestamp (ms) when the message has none. */
  nowMs?: number;
}

export type ParseResult = InboundMessage | { ignored: string };

export function isIgnored(r: ParseResult): r is { ignored: string } {
  return 'ignored' in r;
}

type AnyMessage = Record<string, any>;

/** "5511...:12@s.whatsapp.net" → "5511...@s.whatsapp.net" (drops the device part). */
export function normalizeJid(jid: string | null | undefined): string {
  if (!jid) return '';
  const at = jid.indexOf('@');
  if (at < 0) return jid;
  const user = jid.slice(0, at).split(':')[0];
  return `${user}${jid.slice(at)}`;
}

function isPhoneJid(jid: string | undefined | null): jid is string {
  return !!jid && /^\d+(:\d+)?@(s\.whatsapp\.net|c\.us)$/.test(jid);
}

function phoneOf(jid: string): string {
  return `+${jid.split('@')[0].split(':')[0]}`;
}

/** Seconds (number | numeric string | protobuf Long) → ms. */
function timestampMs(ts: unknown, fallback: number): number {
  let s: number | undefined;
  if (typeof ts === 'number') s = ts;
  else if (typeof ts === 'string' && ts.trim() !== '') s = Number(ts);
  else if (ts && typeof ts === 'object') {
    const long = ts as { toNumber?: () => number; low?: number; high?: number };
    if (typeof long.toNumber === 'function') s = long.toNumber();
    else if (typeof long.low === 'number') s = (long.high ?? 0) * 2 ** 32 + (long.low >>> 0);
  }
  return s !== undefined && Number.isFinite(s) && s > 0 ? s * 1000 : fallback;
}

/** Unwraps the containers WhatsApp puts around real content (ephemeral, view-once, ...). */
export function unwrapMessage(message: AnyMessage | null | undefined): AnyMessage | undefined {
  let m = message ?? undefined;
  for (let depth = 0; m && depth < 5; depth++) {
    const inner =
      m.ephemeralMessage?.message ??
      m.viewOnceMessage?.message ??
      m.viewOnceMessageV2?.message ??
      m.viewOnceMessageV2Extension?.message ??
      m.documentWithCaptionMessage?.message ??
      m.deviceSentMessage?.message ??
      m.botInvokeMessage?.message;
    if (!inner) break;
    m = inner;
  }
  return m;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.trim() !== '' ? v : undefined;
}

function vcardPhone(vcard: unknown): string | undefined {
  if (typeof vcard !== 'string') return undefined;
  const m = /TEL[^:\n]*:([+\d][\d\s\-()]*)/i.exec(vcard);
  return m ? m[1].replace(/[\s\-()]/g, '') : undefined;
}

interface Content {
  text: string;
  contentType: ContentType;
  contextInfo?: AnyMessage;
  /** For media messages: what WhatsApp says about the file (the gateway downloads it). */
  media?: InboundMedia;
}

function mediaOf(type: InboundMedia['type'], o: AnyMessage, extra: Partial<InboundMedia> = {}): InboundMedia {
  const len = o.fileLength;
  const size =
    typeof len === 'number'
      ? len
      : typeof len === 'string' && /^\d+$/.test(len)
        ? Number(len)
        : typeof len?.low === 'number'
          ? (len.high ?? 0) * 2 ** 32 + (len.low >>> 0)
          : undefined;
  return {
    type,
    ...(str(o.mimetype) ? { mimeType: o.mimetype } : {}),
    ...(str(o.caption) ? { caption: o.caption } : {}),
    ...(size !== undefined && Number.isFinite(size) ? { sizeBytes: size } : {}),
    ...extra,
  };
}

/** Text + kind of one unwrapped message, or the reason it is deliberately ignored. */
function extractContent(m: AnyMessage): Content | { ignored: string } {
  if (m.protocolMessage) return { ignored: `protocol message (${m.protocolMessage.type ?? 'unknown'})` };
  if (m.reactionMessage || m.encReactionMessage) return { ignored: 'reaction' };
  if (m.pollUpdateMessage) return { ignored: 'poll vote (encrypted update)' };

  if (str(m.conversation)) return { text: m.conversation, contentType: 'text' };
  if (m.extendedTextMessage && typeof m.extendedTextMessage.text === 'string') {
    return { text: m.extendedTextMessage.text, contentType: 'text', contextInfo: m.extendedTextMessage.contextInfo };
  }
  if (m.imageMessage) {
    return {
      text: str(m.imageMessage.caption) ?? '[image]',
      contentType: 'image',
      contextInfo: m.imageMessage.contextInfo,
      media: mediaOf('image', m.imageMessage),
    };
  }
  const video = m.videoMessage ?? m.ptvMessage;
  if (video)
    return {
      text: str(video.caption) ?? '[video]',
      contentType: 'video',
      contextInfo: video.contextInfo,
      media: mediaOf('video', video),
    };
  if (m.documentMessage) {
    const d = m.documentMessage;
    const name = str(d.fileName) ?? str(d.title);
    return {
      text: str(d.caption) ?? (name ? `[document: ${name}]` : '[document]'),
      contentType: 'document',
      contextInfo: d.contextInfo,
      media: mediaOf('document', d, name ? { filename: name } : {}),
    };
  }
  if (m.audioMessage) {
    return {
      text: m.audioMessage.ptt ? '[voice note]' : '[audio]',
      contentType: 'audio',
      contextInfo: m.audioMessage.contextInfo,
      media: mediaOf('audio', m.audioMessage, m.audioMessage.ptt ? { voiceNote: true } : {}),
    };
  }
  if (m.stickerMessage)
    return {
      text: '[sticker]',
      contentType: 'sticker',
      contextInfo: m.stickerMessage.contextInfo,
      media: mediaOf('sticker', m.stickerMessage),
    };
  const loc = m.locationMessage ?? m.liveLocationMessage;
  if (loc) {
    const lat = Number(loc.degreesLatitude ?? 0);
    const lng = Number(loc.degreesLongitude ?? 0);
    const label = [str(loc.name), str(loc.address)].filter(Boolean).join(', ');
    return {
      text: `[location: ${lat},${lng}${label ? ` ${label}` : ''}]`,
      contentType: 'location',
      contextInfo: loc.contextInfo,
    };
  }
  if (m.contactMessage) {
    const c = m.contactMessage;
    const parts = [str(c.displayName), vcardPhone(c.vcard)].filter(Boolean);
    return { text: `[contact: ${parts.join(' ') || 'unknown'}]`, contentType: 'contact', contextInfo: c.contextInfo };
  }
  if (m.contactsArrayMessage) {
    const list = (m.contactsArrayMessage.contacts ?? []) as AnyMessage[];
    const names = list.map((c) => [str(c.displayName), vcardPhone(c.vcard)].filter(Boolean).join(' ')).filter(Boolean);
    return {
      text: `[contacts: ${names.join('; ') || 'unknown'}]`,
      contentType: 'contact',
      contextInfo: m.contactsArrayMessage.contextInfo,
    };
  }
  const poll = m.pollCreationMessage ?? m.pollCreationMessageV2 ?? m.pollCreationMessageV3 ?? m.pollCreationMessageV5;
  if (poll) {
    const options = ((poll.options ?? []) as AnyMessage[])
      .map((o) => o.optionName)
      .filter((o) => typeof o === 'string');
    return {
      text: `[poll: ${poll.name ?? ''}${options.length ? ` — ${options.join(' / ')}` : ''}]`,
      contentType: 'poll',
      contextInfo: poll.contextInfo,
    };
  }
  if (m.eventMessage) {
    const e = m.eventMessage;
    return {
      text: `[event: ${str(e.name) ?? 'untitled'}${str(e.description) ? ` — ${e.description}` : ''}]`,
      contentType: 'other',
      contextInfo: e.contextInfo,
    };
  }
  // Replies to buttons/lists the bot sent: the user's choice is the text.
  const choice =
    str(m.buttonsResponseMessage?.selectedDisplayText) ??
    str(m.templateButtonReplyMessage?.selectedDisplayText) ??
    str(m.listResponseMessage?.title) ??
    str(m.interactiveResponseMessage?.body?.text);
  if (choice) return { text: choice, contentType: 'text' };

  const kinds = Object.keys(m).filter((k) => k !== 'messageContextInfo' && k !== 'senderKeyDistributionMessage');
  if (kinds.length === 0) return { ignored: 'no content (key distribution / context only)' };
  return { ignored: `unsupported message kind: ${kinds.join(',')}` };
}

/**
 * Maps one Baileys WAMessage to the gateway's InboundMessage, or says why it is ignored.
 * Ignore reasons that start with "malformed" mean the event itself was broken.
 */
export function parseBaileysMessage(msg: WAMessage, opts: ParseOptions): ParseResult {
  if (!msg || typeof msg !== 'object') return { ignored: 'malformed: not an object' };
  const key = msg.key as (WAMessage['key'] & { remoteJidAlt?: string; participantAlt?: string }) | undefined;
  if (!key || typeof key !== 'object') return { ignored: 'malformed: no key' };
  const remoteJid = typeof key.remoteJid === 'string' ? key.remoteJid : '';
  const id = typeof key.id === 'string' ? key.id : '';
  if (!remoteJid?.includes('@')) return { ignored: 'malformed: no key.remoteJid' };
  if (!id) return { ignored: 'malformed: no key.id' };

  if (remoteJid === 'status@broadcast') return { ignored: 'status broadcast' };
  if (remoteJid.endsWith('@broadcast')) return { ignored: 'broadcast list' };
  if (remoteJid.endsWith('@newsletter')) return { ignored: 'newsletter' };
  const fromMe = key.fromMe === true;
  if (fromMe && !opts.selfMessages) return { ignored: 'own message (fromMe)' };

  const message = unwrapMessage(msg.message as AnyMessage | null | undefined);
  if (!message) return { ignored: msg.messageStubType ? `stub (${msg.messageStubType})` : 'no message content' };
  const content = extractContent(message);
  if ('ignored' in content) return content;

  const isGroup = remoteJid.endsWith('@g.us');

  let senderId: string;
  let senderAlt: string | undefined;
  if (isGroup) {
    const participant = str(key.participant) ?? str((msg as AnyMessage).participant);
    if (!participant) return { ignored: 'malformed: group message without participant' };
    senderId = participant;
    senderAlt = str(key.participantAlt);
  } else {
    senderId = remoteJid;
    senderAlt = str(key.remoteJidAlt);
  }
  if (fromMe) {
    // Sent from the owner's phone: the sender is the account itself, not the chat partner.
    const self = opts.selfIds?.find((j) => !!j);
    senderId = self ? normalizeJid(self) : senderId;
    senderAlt = undefined;
  }

  const selfSet = new Set((opts.selfIds ?? []).filter((j): j is string => !!j).map(normalizeJid));
  let mentioned: boolean | undefined;
  if (isGroup) {
    const ctx = content.contextInfo;
    const mentions = Array.isArray(ctx?.mentionedJid) ? (ctx!.mentionedJid as unknown[]) : [];
    const mentionedBot = mentions.some((j) => typeof j === 'string' && selfSet.has(normalizeJid(j)));
    const repliedToBot =
      typeof ctx?.participant === 'string' && !!ctx.stanzaId && selfSet.has(normalizeJid(ctx.participant));
    mentioned = mentionedBot || repliedToBot;
    if (opts.groupMentionOnly && !mentioned && !fromMe) return { ignored: 'group message without mention of the bot' };
  }

  const ctx = content.contextInfo;
  const extra: Record<string, unknown> = {
    key: { remoteJid, id, fromMe, ...(isGroup ? { participant: senderId } : {}) },
  };
  if (str(ctx?.stanzaId)) {
    extra.quotedMessageId = ctx!.stanzaId;
    const quoted = unwrapMessage(ctx!.quotedMessage);
    const qt = quoted && extractContent(quoted);
    if (qt && !('ignored' in qt)) extra.quotedText = qt.text;
  }
  if (ctx?.isForwarded) extra.forwarded = true;

  const sender: InboundMessage['sender'] = { id: senderId };
  const name = str(msg.pushName);
  if (name && !fromMe) sender.name = name;
  if (!fromMe && !senderAlt && senderId.endsWith('@lid')) {
    // No alt in the key: fall back to what the session learned (lid-mapping.update, contacts).
    const pn = opts.lidToPhone?.(normalizeJid(senderId));
    if (isPhoneJid(pn)) senderAlt = pn;
  }
  const phoneJid = isPhoneJid(senderId) ? senderId : isPhoneJid(senderAlt) ? senderAlt : undefined;
  if (phoneJid) sender.phone = phoneOf(phoneJid);
  if (senderAlt && senderAlt !== senderId) sender.altId = senderAlt;

  const inbound: InboundMessage = {
    instanceId: opts.instanceId,
    providerMessageId: id,
    chat: { chatId: remoteJid, kind: isGroup ? 'group' : 'direct' },
    sender,
    text: content.text,
    contentType: content.contentType,
    timestamp: timestampMs(msg.messageTimestamp, opts.nowMs ?? 0),
    extra,
  };
  if (mentioned !== undefined) inbound.mentioned = mentioned;
  if (fromMe) inbound.fromOwner = true;
  if (content.media) {
    // The adapter downloads it later with Baileys (media key, direct path): the message is kept
    // JSON-safe (Baileys' BufferJSON keeps its byte fields).
    const ref = JSON.parse(JSON.stringify({ key: msg.key, message: msg.message }, BufferJSON.replacer));
    inbound.media = [{ ...content.media, ref: { waMessage: ref } }];
  }
  return inbound;
}
