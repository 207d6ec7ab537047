// A Telegram message (or edited message) → InboundMessage, or null when it is not for the agent.
import type { Message, MessageEntity } from 'grammy/types';
import type { ContentType, InboundMedia, InboundMessage } from '../../core/message.ts';

/** What the mapping needs to know about the bot itself (from getMe). */
export interface BotIdentity {
  id: number;
  username: string;
}

export interface InboundOptions {
  /** Groups: only messages that mention the bot, reply to it or give it a command. */
  requireMention: boolean;
  /** The update was `edited_message`: kept as a record, not a new turn. */
  edited: boolean;
}

/**
 * - Private chats are direct; groups and supergroups are groups; channel posts are not taken.
 * - A forum topic is a thread: `message_thread_id` when `is_topic_message` (the General topic has
 *   none and is the chat itself).
 * - providerMessageId is `{chat id}:{message id}` (message ids are per chat), so a redelivered
 *   update is the same inbox row; an edit is `{chat id}:{message id}:edit:{edit_date}`.
 * - Media arrive as a typed placeholder (caption or `[image]`, …) with the file ids in
 *   `extra.media`; `media` asks the gateway to fetch the bytes (the adapter's fetchMedia, getFile).
 */
export function toInbound(
  instanceId: string,
  m: Message,
  me: BotIdentity,
  opts: InboundOptions,
): InboundMessage | null {
  const chat = m.chat;
  if (chat.type !== 'private' && chat.type !== 'group' && chat.type !== 'supergroup') return null;
  // Another bot (bots in groups do not see each other, but an anonymous admin is "GroupAnonymousBot"
  // with sender_chat set).
  if (!m.sender_chat && (m.from?.is_bot || !m.from)) return null;
  if (m.from?.id === me.id) return null;

  const body = m.text ?? m.caption ?? '';
  const entities = m.entities ?? m.caption_entities ?? [];
  const contentType = contentTypeOf(m);
  if (contentType === null) return null; // service message: joins, pins, topic created, …

  const direct = chat.type === 'private';
  const command = commandOf(body, entities, me);
  if (command === 'other-bot') return null;
  const mentioned = direct || command !== null || mentionsBot(body, entities, me) || repliesToBot(m, me);
  if (!direct && opts.requireMention && !mentioned) return null;

  let text = stripMention(body, me);
  if (text === '' && contentType !== 'text') text = `[${contentType}]`;
  const threadId = m.is_topic_message && m.message_thread_id !== undefined ? String(m.message_thread_id) : undefined;
  const sender = m.sender_chat
    ? { id: String(m.sender_chat.id), name: 'title' in m.sender_chat ? m.sender_chat.title : undefined }
    : { id: String(m.from!.id), name: personName(m.from!) };

  const extra: Record<string, unknown> = { messageId: m.message_id };
  if (m.from?.username) extra.username = m.from.username;
  if (command) {
    extra.command = command.name;
    if (command.args) extra.commandArgs = command.args;
  }
  const media = mediaOf(m);
  if (media) extra.media = media;
  if (m.reply_to_message && !isTopicRoot(m)) extra.replyToMessageId = String(m.reply_to_message.message_id);
  if (opts.edited) extra.edited = true;

  return {
    instanceId,
    providerMessageId: opts.edited
      ? `${chat.id}:${m.message_id}:edit:${m.edit_date ?? m.date}`
      : `${chat.id}:${m.message_id}`,
    chat: { chatId: String(chat.id), ...(threadId ? { threadId } : {}), kind: direct ? 'direct' : 'group' },
    sender,
    text,
    contentType,
    timestamp: (opts.edited ? (m.edit_date ?? m.date) : m.date) * 1000,
    // In a group the reply quotes the question (several people talk there); a private chat is one conversation.
    ...(direct ? {} : { replyToMessageId: String(m.message_id) }),
    mentioned,
    ...(opts.edited ? { recordOnly: `edit of message ${m.message_id}: recorded, not answered` } : {}),
    extra,
    ...(media && contentType !== 'text' ? { media: [inboundMedia(contentType, media, m)] } : {}),
  };
}

function inboundMedia(contentType: ContentType, media: Record<string, unknown>, m: Message): InboundMedia {
  const type: InboundMedia['type'] =
    contentType === 'image' || contentType === 'video' || contentType === 'audio' || contentType === 'sticker'
      ? contentType
      : 'document';
  return {
    type,
    ...(typeof media.mimeType === 'string' ? { mimeType: media.mimeType } : {}),
    ...(typeof media.filename === 'string' ? { filename: media.filename } : {}),
    ...(typeof media.sizeBytes === 'number' ? { sizeBytes: media.sizeBytes } : {}),
    ...(m.caption ? { caption: m.caption } : {}),
    ...(media.voiceNote ? { voiceNote: true } : {}),
    ref: { fileId: media.fileId },
  };
}

function personName(u: { first_name: string; last_name?: string; username?: string }): string {
  return [u.first_name, u.last_name].filter(Boolean).join(' ') || u.username || '';
}

/** A bot command at the start: `/start`, `/ask@ourbot text`; one addressed to another bot is not ours. */
function commandOf(
  text: string,
  entities: MessageEntity[],
  me: BotIdentity,
): { name: string; args: string } | 'other-bot' | null {
  const e = entities.find((x) => x.type === 'bot_command' && x.offset === 0);
  if (!e) return null;
  const raw = text.slice(1, e.length);
  const at = raw.indexOf('@');
  if (at >= 0 && raw.slice(at + 1).toLowerCase() !== me.username.toLowerCase()) return 'other-bot';
  return { name: at >= 0 ? raw.slice(0, at) : raw, args: text.slice(e.length).trim() };
}

function mentionsBot(text: string, entities: MessageEntity[], me: BotIdentity): boolean {
  const handle = `@${me.username}`.toLowerCase();
  return entities.some(
    (e) =>
      (e.type === 'mention' && text.slice(e.offset, e.offset + e.length).toLowerCase() === handle) ||
      (e.type === 'text_mention' && e.user.id === me.id),
  );
}

/** In a forum, every topic message "replies" to the topic's first (service) message: not a reply. */
function isTopicRoot(m: Message): boolean {
  const r = m.reply_to_message;
  return Boolean(r && (r.forum_topic_created || (m.is_topic_message && r.message_id === m.message_thread_id)));
}

function repliesToBot(m: Message, me: BotIdentity): boolean {
  return m.reply_to_message?.from?.id === me.id && !isTopicRoot(m);
}

/** `@ourbot` out of the text, and `/cmd@ourbot` → `/cmd`. */
function stripMention(text: string, me: BotIdentity): string {
  const name = me.username.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return text
    .replace(new RegExp(`^(/\\w+)@${name}\\b`, 'i'), '$1')
    .replace(new RegExp(`(^|\\s)@${name}\\b`, 'gi'), '$1')
    .replace(/[ \t]{2,}/g, ' ')
    .trim();
}

function contentTypeOf(m: Message): ContentType | null {
  if (m.text !== undefined) return 'text';
  if (m.photo) return 'image';
  if (m.video || m.animation || m.video_note) return 'video';
  if (m.voice || m.audio) return 'audio';
  if (m.document) return 'document';
  if (m.sticker) return 'sticker';
  if (m.location || m.venue) return 'location';
  if (m.contact) return 'contact';
  if (m.poll) return 'poll';
  return null;
}

/** File references for the media store: enough to call getFile later. */
function mediaOf(m: Message): Record<string, unknown> | null {
  const file =
    m.photo?.at(-1) ?? m.video ?? m.animation ?? m.video_note ?? m.voice ?? m.audio ?? m.document ?? m.sticker;
  if (!file) return null;
  return {
    fileId: file.file_id,
    fileUniqueId: file.file_unique_id,
    ...('mime_type' in file && file.mime_type ? { mimeType: file.mime_type } : {}),
    ...(file.file_size !== undefined ? { sizeBytes: file.file_size } : {}),
    ...('file_name' in file && file.file_name ? { filename: file.file_name } : {}),
    ...(m.voice ? { voiceNote: true } : {}),
  };
}
