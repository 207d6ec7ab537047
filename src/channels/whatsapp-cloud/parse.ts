// Meta's `messages` webhook (WhatsApp Cloud API) → inbound messages and delivery receipts.
//
// Shape: {object: "whatsapp_business_account", entry: [{id: WABA id, changes: [{field: "messages",
// value: {metadata: {phone_number_id, …}, contacts: [{wa_id, profile: {name}}], messages: [...],
// statuses: [...], errors: [...]}}]}]}. One POST may carry several entries, changes, messages and
// statuses; each is taken on its own and anything unusable is listed in `ignored` with the reason.
//
// Persons: a Cloud API user is their phone number (`wa_id`), addressed by the same phone JID the
// other WhatsApp channels use (`<digits>@s.whatsapp.net`, sender.phone `+<digits>`), so the same
// number is the same person and conversation key whichever WhatsApp channel saw it.
//
// Inbound media (image, audio, video, document, sticker): the text says what it is (or is the
// caption), `extra.media` keeps Meta's media id, type and checksum, and `media` asks the gateway to
// fetch the bytes into the media store before the agent call (the adapter's fetchMedia, by the id).
import type { ContentType, DeliveryStatus, InboundMedia, InboundMessage } from '../../core/message.ts';
import { META_ERRORS } from './client.ts';

export interface CloudParseResult {
  messages: InboundMessage[];
  statuses: DeliveryStatus[];
  ignored: string[];
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The phone JID of a wa_id (digits), as the other WhatsApp channels key a user. */
export function jidOfWaId(waId: string): string {
  return `${waId}@s.whatsapp.net`;
}

/** Digits for the Cloud API `to` from a chat id (phone JID or bare number). */
export function waIdOfChat(chatId: string): string {
  const at = chatId.indexOf('@');
  return (at >= 0 ? chatId.slice(0, at) : chatId).replace(/\D/g, '');
}

/** Meta's timestamps are seconds as a string. */
function secondsToMs(v: unknown): number | undefined {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : typeof v === 'number' ? v : Number.NaN;
  return Number.isFinite(n) && n > 0 ? n * 1000 : undefined;
}

const MEDIA_TYPES = ['image', 'video', 'audio', 'document', 'sticker'] as const;

interface Content {
  text: string;
  contentType: ContentType;
  extra?: Obj;
  media?: InboundMedia;
}

/** The content of one message by its `type`, or why it is ignored. */
function contentOf(m: Obj): Content | string {
  const type = str(m.type) ?? '(none)';
  const body = isObj(m[type]) ? (m[type] as Obj) : undefined;
  if (type === 'text') {
    const text = str(body?.body);
    return text ? { text, contentType: 'text' } : 'text without body';
  }
  if ((MEDIA_TYPES as readonly string[]).includes(type)) {
    if (!body || !str(body.id)) return `${type} without media id`;
    const caption = str(body.caption)?.trim();
    const filename = str(body.filename);
    const voice = type === 'audio' && body.voice === true;
    const label = voice ? 'voice note' : type === 'document' && filename ? `document: ${filename}` : type;
    return {
      text: caption ?? `[${label}]`,
      contentType: type as ContentType,
      extra: {
        media: {
          id: body.id,
          type,
          mimeType: str(body.mime_type) ?? null,
          sha256: str(body.sha256) ?? null,
          ...(filename ? { filename } : {}),
          ...(caption ? { caption } : {}),
          ...(voice ? { voice: true } : {}),
          ...(body.animated === true ? { animated: true } : {}),
        },
      },
      media: {
        type: type as InboundMedia['type'],
        ...(str(body.mime_type) ? { mimeType: str(body.mime_type) } : {}),
        ...(filename ? { filename } : {}),
        ...(caption ? { caption } : {}),
        ...(voice ? { voiceNote: true } : {}),
        ref: { mediaId: body.id },
      },
    };
  }
  if (type === 'location') {
    const lat = Number(body?.latitude);
    const lng = Number(body?.longitude);
    if (!Number.isFinite(lat) || !Number.isFinite(lng)) return 'location without coordinates';
    const named = [str(body?.name), str(body?.address)].filter(Boolean).join(', ');
    return {
      text: `[location: ${lat},${lng}${named ? ` ${named}` : ''}]`,
      contentType: 'location',
      extra: {
        location: { latitude: lat, longitude: lng, name: str(body?.name) ?? null, address: str(body?.address) ?? null },
      },
    };
  }
  if (type === 'contacts') {
    const cards = list(m.contacts).filter(isObj);
    if (cards.length === 0) return 'contacts without a card';
    const contacts = cards.map((c) => ({
      name: (isObj(c.name) ? str(c.name.formatted_name) : undefined) ?? null,
      phones: list(c.phones)
        .filter(isObj)
        .map((p) => ({ phone: str(p.phone) ?? null, waId: str(p.wa_id) ?? null })),
    }));
    return {
      text: `[contact: ${contacts.map((c) => c.name ?? c.phones[0]?.phone ?? 'unknown').join(', ')}]`,
      contentType: 'contact',
      extra: { contacts },
    };
  }
  if (type === 'interactive') {
    // A tap on a button or list row we sent: its title is what the user said, its id what they picked.
    const kind = str(body?.type);
    const reply = kind && isObj(body?.[kind]) ? (body[kind] as Obj) : undefined;
    if ((kind !== 'button_reply' && kind !== 'list_reply') || !reply || !str(reply.title))
      return `interactive ${kind ?? '(no type)'}`;
    return {
      text: str(reply.title)!,
      contentType: 'text',
      extra: {
        interactive: {
          type: kind,
          id: str(reply.id) ?? null,
          title: str(reply.title)!,
          ...(str(reply.description) ? { description: str(reply.description) } : {}),
        },
      },
    };
  }
  if (type === 'button') {
    // A quick-reply button of a template.
    const text = str(body?.text);
    return text
      ? { text, contentType: 'text', extra: { button: { text, payload: str(body?.payload) ?? null } } }
      : 'button without text';
  }
  if (type === 'reaction') {
    const messageId = str(body?.message_id);
    const emoji = str(body?.emoji);
    if (!messageId) return 'reaction without message id';
    if (!emoji) return 'reaction removed';
    return { text: `[reaction: ${emoji}]`, contentType: 'reaction', extra: { reaction: { messageId, emoji } } };
  }
  const codes = list(m.errors)
    .filter(isObj)
    .map((e) => e.code)
    .filter((c) => typeof c === 'number');
  return `unsupported message type ${type.slice(0, 40)}${codes.length ? ` (Meta error ${codes.join(', ')})` : ''}`;
}

function parseMessage(m: unknown, names: Map<string, string>, instanceId: string, now: () => number) {
  if (!isObj(m)) return 'message is not an object';
  const id = str(m.id);
  const from = str(m.from);
  if (!id || !from) return 'message without id or from';
  const waId = from.replace(/\D/g, '');
  if (!waId) return `message from a non-phone sender (${id})`;
  const content = contentOf(m);
  if (typeof content === 'string') return `${content} (${id})`;
  const jid = jidOfWaId(waId);
  const context = isObj(m.context) ? m.context : undefined;
  const quoted = str(context?.id);
  const msg: InboundMessage = {
    instanceId,
    providerMessageId: id,
    chat: { chatId: jid, kind: 'direct' },
    sender: { id: jid, phone: `+${waId}` },
    text: content.text,
    contentType: content.contentType,
    timestamp: secondsToMs(m.timestamp) ?? now(),
    extra: {
      messageType: str(m.type),
      ...content.extra,
      ...(quoted ? { quotedMessageId: quoted } : {}),
      ...(context?.forwarded === true || context?.frequently_forwarded === true ? { forwarded: true } : {}),
    },
  };
  if (content.media) msg.media = [content.media];
  const name = names.get(from)?.trim();
  if (name) msg.sender.name = name;
  return msg;
}

const RECEIPTS = new Set(['sent', 'delivered', 'read', 'failed']);

function parseStatus(s: unknown, now: () => number): DeliveryStatus | string {
  if (!isObj(s) || !str(s.id)) return 'status without id';
  const status = str(s.status) ?? '(none)';
  if (!RECEIPTS.has(status)) return `status ${status.slice(0, 40)} (${s.id})`;
  const first = list(s.errors).find(isObj);
  const code = typeof first?.code === 'number' ? first.code : null;
  return {
    platformMessageId: str(s.id)!,
    status: status as DeliveryStatus['status'],
    timestamp: secondsToMs(s.timestamp) ?? now(),
    ...(status === 'failed'
      ? {
          error: {
            code,
            // Meta's title is a fixed phrase per code (e.g. "Re-engagement message"), not user content.
            reason:
              code === META_ERRORS.outsideWindow
                ? 'outside the 24-hour customer service window: send a template'
                : (str(first?.title) ?? str(first?.message) ?? 'delivery failed').slice(0, 200),
          },
        }
      : {}),
  };
}

/**
 * Turns a Cloud API webhook body into messages and receipts. Never throws. With `phoneNumberId`,
 * changes for another number of the same account are ignored (Meta sends an app's events to one URL).
 */
export function parseCloudWebhook(
  body: unknown,
  instanceId: string,
  opts: { phoneNumberId?: string; now?: () => number } = {},
): CloudParseResult {
  const result: CloudParseResult = { messages: [], statuses: [], ignored: [] };
  const now = opts.now ?? Date.now;
  if (!isObj(body) || body.object !== 'whatsapp_business_account') {
    result.ignored.push('not a whatsapp_business_account notification');
    return result;
  }
  for (const entry of list(body.entry)) {
    for (const change of isObj(entry) ? list(entry.changes) : []) {
      if (!isObj(change)) continue;
      if (change.field !== 'messages' || !isObj(change.value)) {
        result.ignored.push(`field ${typeof change.field === 'string' ? change.field.slice(0, 60) : '(none)'}`);
        continue;
      }
      const value = change.value;
      const number = isObj(value.metadata) ? str(value.metadata.phone_number_id) : undefined;
      if (opts.phoneNumberId && number !== opts.phoneNumberId) {
        result.ignored.push(`another phone number (${(number ?? '(none)').slice(0, 40)})`);
        continue;
      }
      const names = new Map<string, string>();
      for (const c of list(value.contacts)) {
        if (!isObj(c)) continue;
        const name = isObj(c.profile) ? str(c.profile.name) : undefined;
        if (str(c.wa_id) && name) names.set(str(c.wa_id)!, name);
      }
      for (const m of list(value.messages)) {
        const parsed = parseMessage(m, names, instanceId, now);
        if (typeof parsed === 'string') result.ignored.push(parsed);
        else result.messages.push(parsed);
      }
      for (const s of list(value.statuses)) {
        const parsed = parseStatus(s, now);
        if (typeof parsed === 'string') result.ignored.push(parsed);
        else result.statuses.push(parsed);
      }
      for (const e of list(value.errors))
        result.ignored.push(`error notification (Meta error ${isObj(e) && typeof e.code === 'number' ? e.code : '?'})`);
    }
  }
  return result;
}
