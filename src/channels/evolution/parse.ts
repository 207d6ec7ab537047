// Evolution API webhook → InboundMessage. Pure: no I/O, no clock unless the payload lacks a time.
//
// The webhook is `{event, instance, data, server_url, apikey, date_time, sender}` where `data` is a
// Baileys WAMessage (or an array of them). Only `messages.upsert` carries user messages.
//
// Addressing choice: when a message arrives under LID addressing (`…@lid`) and Evolution also reports
// the phone JID (`remoteJidAlt` / `senderPn`), the chat and the sender are keyed by the PHONE JID and
// the LID goes to `sender.altId`. Replies then go to plain digits, which every Evolution version
// accepts, and a contact keeps one conversation whichever addressing WhatsApp happens to use.
// Without a known phone, the LID JID itself is the chat id and is sent as `number` verbatim
// (Evolution ≥ 2.3 accepts `…@lid` there).
import type { ContentType, InboundMedia, InboundMessage } from '../../core/message.ts';

export interface EvolutionParseResult {
  messages: InboundMessage[];
  /** One human-readable reason per item that was deliberately not turned into a message. */
  ignored: string[];
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** `messages.upsert`, `MESSAGES_UPSERT`, `Messages_Upsert` → `messages.upsert`. */
export function normalizeEvolutionEvent(event: unknown): string {
  return typeof event === 'string' ? event.trim().toLowerCase().replace(/_/g, '.') : '';
}

/** Strips the device suffix: `5511999990001:12@s.whatsapp.net` → `5511999990001@s.whatsapp.net`. */
export function normalizeJid(jid: string): string {
  const at = jid.indexOf('@');
  if (at < 0) return jid;
  const user = jid.slice(0, at);
  const colon = user.indexOf(':');
  return (colon >= 0 ? user.slice(0, colon) : user) + jid.slice(at);
}

export function isPhoneJid(jid: string): boolean {
  return /^\d+@(s\.whatsapp\.net|c\.us)$/.test(jid);
}

export function isGroupJid(jid: string): boolean {
  return jid.endsWith('@g.us');
}

/** `+` + digits for a phone JID, else undefined. */
export function phoneOfJid(jid: string): string | undefined {
  return isPhoneJid(jid) ? `+${jid.slice(0, jid.indexOf('@'))}` : undefined;
}

/** Seconds as number, numeric string or protobuf Long `{low, high}` → ms. */
export function timestampToMs(v: unknown): number | undefined {
  let seconds: number | undefined;
  if (typeof v === 'number' && Number.isFinite(v)) seconds = v;
  else if (typeof v === 'string' && /^\d+$/.test(v.trim())) seconds = Number(v.trim());
  else if (isObj(v) && typeof v.low === 'number' && typeof v.high === 'number') {
    seconds = v.high * 4294967296 + (v.low >>> 0);
  }
  if (seconds === undefined || seconds <= 0) return undefined;
  // Some senders already report ms; a seconds value stays below 1e11 until the year 5138.
  return seconds > 1e11 ? Math.round(seconds) : Math.round(seconds * 1000);
}

// Containers whose `.message` holds the real content.
const WRAPPERS = [
  'ephemeralMessage',
  'viewOnceMessage',
  'viewOnceMessageV2',
  'viewOnceMessageV2Extension',
  'documentWithCaptionMessage',
  'groupMentionedMessage',
  'botInvokeMessage',
];

function unwrap(message: Obj): Obj {
  let m = message;
  for (let depth = 0; depth < 5; depth++) {
    const wrapper = WRAPPERS.find((w) => isObj(m[w]) && isObj((m[w] as Obj).message));
    if (!wrapper) break;
    m = (m[wrapper] as Obj).message as Obj;
  }
  return m;
}

interface Content {
  text: string;
  contentType: ContentType;
  contextInfo?: Obj;
  messageType: string;
  /** For media messages: what WhatsApp says about the file (the bytes come from the gateway). */
  media?: InboundMedia;
}

const caption = (o: Obj): string | undefined => str(o.caption)?.trim() || undefined;

/** fileLength as number, numeric string or protobuf Long. */
function sizeOf(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && /^\d+$/.test(v)) return Number(v);
  if (isObj(v) && typeof v.low === 'number' && typeof v.high === 'number') return v.high * 4294967296 + (v.low >>> 0);
  return undefined;
}

function mediaOf(type: InboundMedia['type'], o: Obj, extra: Partial<InboundMedia> = {}): InboundMedia {
  const size = sizeOf(o.fileLength);
  return {
    type,
    ...(str(o.mimetype) ? { mimeType: str(o.mimetype) } : {}),
    ...(caption(o) ? { caption: caption(o) } : {}),
    ...(size !== undefined ? { sizeBytes: size } : {}),
    ...extra,
  };
}

/** Returns the content, or a string saying why the message is ignored. */
function extractContent(m: Obj): Content | string {
  const pick = (type: string) => (isObj(m[type]) ? (m[type] as Obj) : undefined);
  const ctx = (o: Obj | undefined) => (o && isObj(o.contextInfo) ? (o.contextInfo as Obj) : undefined);

  if (pick('protocolMessage')) return `protocol message (${str(pick('protocolMessage')!.type) ?? 'unknown'})`;
  if (pick('reactionMessage')) return 'reaction';
  if (pick('editedMessage')) return 'edit of an earlier message';
  if (pick('pollUpdateMessage')) return 'poll vote';

  if (typeof m.conversation === 'string' && m.conversation.length > 0) {
    return { text: m.conversation, contentType: 'text', messageType: 'conversation' };
  }
  const ext = pick('extendedTextMessage');
  if (ext && typeof ext.text === 'string') {
    return { text: ext.text, contentType: 'text', contextInfo: ctx(ext), messageType: 'extendedTextMessage' };
  }
  const image = pick('imageMessage');
  if (image)
    return {
      text: caption(image) ?? '[image]',
      contentType: 'image',
      contextInfo: ctx(image),
      messageType: 'imageMessage',
      media: mediaOf('image', image),
    };
  const video = pick('videoMessage') ?? pick('ptvMessage');
  if (video)
    return {
      text: caption(video) ?? '[video]',
      contentType: 'video',
      contextInfo: ctx(video),
      messageType: 'videoMessage',
      media: mediaOf('video', video),
    };
  const doc = pick('documentMessage');
  if (doc) {
    const name = str(doc.fileName) ?? str(doc.title);
    return {
      text: caption(doc) ?? (name ? `[document: ${name}]` : '[document]'),
      contentType: 'document',
      contextInfo: ctx(doc),
      messageType: 'documentMessage',
      media: mediaOf('document', doc, name ? { filename: name } : {}),
    };
  }
  const audio = pick('audioMessage');
  if (audio)
    return {
      text: '[audio]',
      contentType: 'audio',
      contextInfo: ctx(audio),
      messageType: 'audioMessage',
      media: mediaOf('audio', audio, audio.ptt === true ? { voiceNote: true } : {}),
    };
  const sticker = pick('stickerMessage');
  if (sticker)
    return {
      text: '[sticker]',
      contentType: 'sticker',
      contextInfo: ctx(sticker),
      messageType: 'stickerMessage',
      media: mediaOf('sticker', sticker),
    };
  const loc = pick('locationMessage') ?? pick('liveLocationMessage');
  if (loc) {
    const lat = Number(loc.degreesLatitude ?? 0);
    const lng = Number(loc.degreesLongitude ?? 0);
    return {
      text: `[location: ${lat},${lng}]`,
      contentType: 'location',
      contextInfo: ctx(loc),
      messageType: 'locationMessage',
    };
  }
  const contact = pick('contactMessage');
  if (contact)
    return {
      text: `[contact: ${str(contact.displayName) ?? 'unknown'}]`,
      contentType: 'contact',
      contextInfo: ctx(contact),
      messageType: 'contactMessage',
    };
  const contacts = pick('contactsArrayMessage');
  if (contacts) {
    const names = Array.isArray(contacts.contacts)
      ? contacts.contacts.map((c) => (isObj(c) ? str(c.displayName) : undefined)).filter(Boolean)
      : [];
    return {
      text: `[contact: ${names.join(', ') || str(contacts.displayName) || 'unknown'}]`,
      contentType: 'contact',
      messageType: 'contactsArrayMessage',
    };
  }
  const poll = pick('pollCreationMessage') ?? pick('pollCreationMessageV2') ?? pick('pollCreationMessageV3');
  if (poll)
    return {
      text: `[poll: ${str(poll.name) ?? ''}]`,
      contentType: 'poll',
      contextInfo: ctx(poll),
      messageType: 'pollCreationMessage',
    };
  const event = pick('eventMessage');
  if (event) return { text: `[event: ${str(event.name) ?? ''}]`, contentType: 'other', messageType: 'eventMessage' };
  // Taps on buttons/lists the bot sent carry a visible text: treat it as what the user said.
  const buttonReply = pick('buttonsResponseMessage') ?? pick('templateButtonReplyMessage');
  if (buttonReply && str(buttonReply.selectedDisplayText)) {
    return { text: str(buttonReply.selectedDisplayText)!, contentType: 'text', messageType: 'buttonsResponseMessage' };
  }
  const listReply = pick('listResponseMessage');
  if (listReply && str(listReply.title))
    return { text: str(listReply.title)!, contentType: 'text', messageType: 'listResponseMessage' };

  // `base64`/`mediaUrl` are Evolution's media extras, not content types.
  const meaningless = new Set(['messageContextInfo', 'senderKeyDistributionMessage', 'base64', 'mediaUrl']);
  const types = Object.keys(m).filter((k) => !meaningless.has(k));
  return types.length === 0 ? 'no content' : `unsupported message type ${types[0]}`;
}

interface ParseContext {
  instanceId: string;
  ownerJid?: string;
  fallbackTime: () => number;
}

function parseOne(item: unknown, pc: ParseContext): InboundMessage | string {
  if (!isObj(item) || !isObj(item.key)) return 'item without key';
  const key = item.key;
  const id = str(key.id);
  const rawRemote = str(key.remoteJid);
  if (!id || !rawRemote) return 'key without id or remoteJid';
  const tag = (reason: string) => `${reason} (${id})`;
  if (key.fromMe === true) return tag('fromMe');
  const remoteJid = normalizeJid(rawRemote);
  if (remoteJid.endsWith('@broadcast'))
    return tag(remoteJid === 'status@broadcast' ? 'status broadcast' : 'broadcast list');
  if (remoteJid.endsWith('@newsletter')) return tag('newsletter');
  if (!isObj(item.message)) return tag(item.messageStubType !== undefined ? 'stub message' : 'no message');

  const content = extractContent(unwrap(item.message));
  if (typeof content === 'string') return tag(content);

  const group = isGroupJid(remoteJid);
  let chatId: string;
  let senderJid: string;
  let senderAlt: string | undefined;
  if (group) {
    const participant = str(key.participant) ?? str(item.participant);
    if (!participant) return tag('group message without participant');
    senderJid = normalizeJid(participant);
    const alt = str(key.participantAlt) ?? str(key.participantPn);
    senderAlt = alt ? normalizeJid(alt) : undefined;
    chatId = remoteJid;
  } else {
    senderJid = remoteJid;
    const alt = str(key.remoteJidAlt) ?? str(key.senderPn);
    senderAlt = alt ? normalizeJid(alt) : undefined;
    chatId = remoteJid;
  }
  // Prefer the phone JID as the identity (see the addressing note at the top).
  if (senderAlt && !isPhoneJid(senderJid) && isPhoneJid(senderAlt)) {
    [senderJid, senderAlt] = [senderAlt, senderJid];
  }
  if (!group) chatId = senderJid;
  if (senderAlt === senderJid) senderAlt = undefined;

  const dataCtx = isObj(item.contextInfo) ? item.contextInfo : undefined;
  const contextInfo = content.contextInfo ?? dataCtx;
  const quotedId = contextInfo ? str(contextInfo.stanzaId) : undefined;

  let mentioned: boolean | undefined;
  if (group) {
    const owner = pc.ownerJid;
    const mentions = contextInfo && Array.isArray(contextInfo.mentionedJid) ? contextInfo.mentionedJid : [];
    const quotedAuthor = contextInfo ? str(contextInfo.participant) : undefined;
    mentioned =
      !!owner &&
      (mentions.some((j) => typeof j === 'string' && normalizeJid(j) === owner) ||
        (quotedAuthor !== undefined && normalizeJid(quotedAuthor) === owner));
  }

  const msg: InboundMessage = {
    instanceId: pc.instanceId,
    providerMessageId: id,
    chat: { chatId, kind: group ? 'group' : 'direct' },
    sender: { id: senderJid },
    text: content.text,
    contentType: content.contentType,
    timestamp: timestampToMs(item.messageTimestamp) ?? pc.fallbackTime(),
    extra: {
      // The JID exactly as WhatsApp addressed this message: needed to quote or react to it.
      remoteJid: rawRemote,
      messageType: str(item.messageType) ?? content.messageType,
      ...(group ? { participant: str(key.participant) ?? str(item.participant) } : {}),
      ...(quotedId ? { quotedMessageId: quotedId } : {}),
    },
  };
  const name = str(item.pushName)?.trim();
  if (name) msg.sender.name = name;
  const phone = phoneOfJid(senderJid);
  if (phone) msg.sender.phone = phone;
  if (senderAlt) msg.sender.altId = senderAlt;
  if (mentioned !== undefined) msg.mentioned = mentioned;
  if (content.media) {
    // The adapter can ask Evolution for the bytes by the message key. With the instance's
    // webhook_base64 on, Evolution sends them along (`message.base64`): kept out of the serialised
    // message (non-enumerable) and written to the media store at ingest instead.
    const media: InboundMedia = { ...content.media, ref: { id, remoteJid: rawRemote, fromMe: false } };
    const base64 = str((item.message as Obj).base64);
    if (base64) Object.defineProperty(media, 'base64', { value: base64, enumerable: false, configurable: true });
    msg.media = [media];
  }
  return msg;
}

/**
 * Turns an Evolution webhook body into inbound messages. Never throws: anything it cannot use is
 * listed in `ignored` with the reason (the webhook answers 200 `ignored` for those).
 */
export function parseEvolutionWebhook(
  body: unknown,
  instanceId: string,
  opts: { now?: () => number } = {},
): EvolutionParseResult {
  const result: EvolutionParseResult = { messages: [], ignored: [] };
  if (!isObj(body)) {
    result.ignored.push('body is not a JSON object');
    return result;
  }
  const event = normalizeEvolutionEvent(body.event);
  if (event !== 'messages.upsert') {
    // Only a string is named: String() on an object with its own toString would throw.
    result.ignored.push(`event ${typeof body.event === 'string' ? body.event.slice(0, 100) : '(none)'}`);
    return result;
  }
  const data = body.data;
  // Evolution sends one WAMessage; some versions/relays send an array or Baileys' {messages:[...]}.
  const items: unknown[] = Array.isArray(data)
    ? data
    : isObj(data) && !isObj(data.key) && Array.isArray(data.messages)
      ? data.messages
      : [data];
  const dateTime = typeof body.date_time === 'string' ? Date.parse(body.date_time) : NaN;
  const pc: ParseContext = {
    instanceId,
    ownerJid: str(body.sender) ? normalizeJid(str(body.sender)!) : undefined,
    fallbackTime: () => (Number.isFinite(dateTime) ? dateTime : (opts.now ?? Date.now)()),
  };
  for (const item of items) {
    const parsed = parseOne(item, pc);
    if (typeof parsed === 'string') result.ignored.push(parsed);
    else result.messages.push(parsed);
  }
  return result;
}
