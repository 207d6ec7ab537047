// Slack Events API event → InboundMessage, or null for events we do not answer.
import type { ContentType, InboundMedia, InboundMessage, MediaKind } from '../../core/message.ts';

/** The fields of a `message` / `app_mention` event we read (Slack sends many more). */
export interface SlackMessageEvent {
  type: string;
  subtype?: string;
  user?: string;
  bot_id?: string;
  text?: string;
  ts?: string;
  thread_ts?: string;
  channel?: string;
  channel_type?: string;
  team?: string;
  /** Files shared with the message (`subtype: file_share`; an app_mention may carry them too). */
  files?: SlackFile[];
}

/** The fields of a Slack file object we read. */
export interface SlackFile {
  id?: string;
  name?: string;
  mimetype?: string;
  size?: number;
  /** `hosted`, `snippet`, …; `external` (a link to another service) and `tombstone` (deleted) are not fetched. */
  mode?: string;
  url_private?: string;
  url_private_download?: string;
}

/** At most this many files of one message are fetched (Slack allows 10 per message). */
const MAX_FILES = 10;

export interface SlackEventBody {
  type?: string;
  event_id?: string;
  team_id?: string;
  event?: SlackMessageEvent;
}

/**
 * Which events become inbound messages:
 * - `message` only in DMs (`channel_type: im`); channel messages come as `app_mention` instead,
 *   so a channel message is never taken twice.
 * - no bot messages (`bot_id`), no subtypes but `file_share` (edits, deletes, joins, bot_message,
 *   ... are not taken), nothing from our own bot user.
 * - Files (`files`, with a private URL) become media items the gateway downloads with the bot
 *   token (the adapter's fetchMedia); the text stays the text, or `[image]`, … without one.
 *
 * providerMessageId is `{channel}:{ts}`: Slack's `ts` is unique within a channel, so it is the same
 * for a retried delivery (same event_id) AND for the same user message delivered as two event
 * types (e.g. `message` + `app_mention` for a mention in a DM), while event_id differs between those
 * two. The inbox dedupes on it either way. The event_id is kept in `extra.eventId`.
 */
export function toInboundMessage(
  instanceId: string,
  body: SlackEventBody,
  botUserId: string | undefined,
): InboundMessage | null {
  const event = body.event;
  if (!event?.channel || !event.ts || !event.user) return null;
  if ((event.subtype !== undefined && event.subtype !== 'file_share') || event.bot_id !== undefined) return null;
  if (botUserId !== undefined && event.user === botUserId) return null;

  const channelType = event.channel_type ?? (event.channel.startsWith('D') ? 'im' : undefined);
  if (event.type === 'message' && channelType !== 'im') return null;
  if (event.type !== 'message' && event.type !== 'app_mention') return null;

  const rawText = event.text ?? '';
  const mentionsBot = botUserId !== undefined && mentionPattern(botUserId).test(rawText);
  const text =
    botUserId === undefined
      ? rawText.trim()
      : rawText
          .replace(mentionPattern(botUserId, 'g'), ' ')
          .replace(/\s{2,}/g, ' ')
          .trim();
  const media = mediaOf(event.files);
  if (event.subtype === 'file_share' && media.length === 0 && text === '') return null;
  const contentType: ContentType = media[0]?.type ?? 'text';

  return {
    instanceId,
    providerMessageId: `${event.channel}:${event.ts}`,
    chat: {
      chatId: event.channel,
      // Replying in the message's thread starts one for a top-level message and continues an existing one.
      threadId: event.thread_ts ?? event.ts,
      kind: channelType === 'im' ? 'direct' : 'group',
    },
    sender: { id: event.user },
    text: text !== '' || media.length === 0 ? text : `[${contentType}]`,
    contentType,
    timestamp: slackTsToMs(event.ts),
    replyToMessageId: event.ts,
    mentioned: event.type === 'app_mention' || mentionsBot,
    extra: { eventId: body.event_id, eventType: event.type, ts: event.ts, teamId: body.team_id ?? event.team },
    ...(media.length > 0 ? { media } : {}),
  };
}

/** Files with a private URL; `ref.url` is fetched with the bot token (never a plain `url`: it needs credentials). */
function mediaOf(files: SlackFile[] | undefined): InboundMedia[] {
  if (!Array.isArray(files)) return [];
  const media: InboundMedia[] = [];
  for (const f of files) {
    const url = f?.url_private_download ?? f?.url_private;
    if (typeof url !== 'string' || url === '' || f.mode === 'external' || f.mode === 'tombstone') continue;
    media.push({
      type: kindOf(f.mimetype),
      ...(f.mimetype ? { mimeType: f.mimetype } : {}),
      ...(f.name ? { filename: f.name } : {}),
      ...(typeof f.size === 'number' ? { sizeBytes: f.size } : {}),
      ref: { fileId: f.id, url },
    });
    if (media.length >= MAX_FILES) break;
  }
  return media;
}

function kindOf(mimetype: string | undefined): MediaKind {
  const type = mimetype ?? '';
  if (type.startsWith('image/')) return 'image';
  if (type.startsWith('video/')) return 'video';
  if (type.startsWith('audio/')) return 'audio';
  return 'document';
}

function mentionPattern(botUserId: string, flags = ''): RegExp {
  // `<@U123>` or the older `<@U123|name>` form.
  return new RegExp(`<@${botUserId}(?:\\|[^>]*)?>`, flags);
}

/** "1712345678.123456" → 1712345678123 (ms), without float rounding. */
export function slackTsToMs(ts: string): number {
  const [sec, frac = ''] = ts.split('.');
  return Number(sec) * 1000 + Number(`${frac}000`.slice(0, 3));
}
