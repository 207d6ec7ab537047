// Telegram updates as the Bot API delivers them (the fields the gateway reads), for the stand-in's
// getUpdates queue and for webhook posts.
import type { Message, Update } from 'grammy/types';

export const ALICE = { id: 4242, is_bot: false, first_name: 'Alice', last_name: 'Doe', username: 'alice' };
export const BOB = { id: 4343, is_bot: false, first_name: 'Bob' };
export const GROUP_ID = -1001234567890;

let updateSeq = 9000;
let messageSeq = 100;

interface MessageOpts {
  chatId?: number;
  chatType?: 'private' | 'group' | 'supergroup';
  from?: typeof ALICE | typeof BOB | { id: number; is_bot: boolean; first_name: string; username?: string };
  messageId?: number;
  /** A forum topic (supergroup with topics). */
  topicId?: number;
  replyTo?: Partial<Message> & { message_id: number };
  entities?: Message['entities'];
  extra?: Record<string, unknown>;
}

export function message(text: string, o: MessageOpts = {}): Message {
  const from = o.from ?? ALICE;
  const chatType = o.chatType ?? (o.chatId !== undefined && o.chatId < 0 ? 'supergroup' : 'private');
  const chat =
    chatType === 'private'
      ? { id: o.chatId ?? from.id, type: 'private' as const, first_name: from.first_name }
      : {
          id: o.chatId ?? GROUP_ID,
          type: chatType,
          title: 'Test group',
          ...(o.topicId !== undefined ? { is_forum: true as const } : {}),
        };
  return {
    message_id: o.messageId ?? ++messageSeq,
    date: Math.floor(Date.now() / 1000),
    chat,
    from,
    text,
    ...(o.entities ? { entities: o.entities } : {}),
    ...(o.topicId !== undefined
      ? {
          message_thread_id: o.topicId,
          is_topic_message: true,
          reply_to_message: o.replyTo ?? {
            message_id: o.topicId,
            date: 0,
            chat,
            forum_topic_created: { name: 'Topic', icon_color: 0 },
          },
        }
      : o.replyTo
        ? { reply_to_message: o.replyTo }
        : {}),
    ...o.extra,
  } as unknown as Message;
}

/** A `@username` mention entity for `text` (its first occurrence). */
export function mentionEntity(text: string, username: string): NonNullable<Message['entities']> {
  const handle = `@${username}`;
  return [{ type: 'mention', offset: text.indexOf(handle), length: handle.length }];
}

/** A `/command` entity at the start of `text`. */
export function commandEntity(text: string): NonNullable<Message['entities']> {
  return [{ type: 'bot_command', offset: 0, length: text.split(/\s/)[0].length }];
}

export function messageUpdate(m: Message, updateId = ++updateSeq): Update {
  return { update_id: updateId, message: m } as Update;
}

export function editedUpdate(m: Message, newText: string, updateId = ++updateSeq): Update {
  return {
    update_id: updateId,
    edited_message: { ...m, text: newText, edit_date: m.date + 5 },
  } as Update;
}
