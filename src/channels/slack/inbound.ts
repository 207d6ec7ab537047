// Slack Events API event → InboundMessage, or null for events we do not answer.
import type { InboundMessage } from '../../core/message.ts';

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
}

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
 * - no bot messages (`bot_id`), no subtypes (edits, deletes, joins, bot_message, ...), nothing from
 *   our own bot user.
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
  if (event.subtype !== undefined || event.bot_id !== undefined) return null;
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
    text,
    contentType: 'text',
    timestamp: slackTsToMs(event.ts),
    replyToMessageId: event.ts,
    mentioned: event.type === 'app_mention' || mentionsBot,
    extra: { eventId: body.event_id, eventType: event.type, ts: event.ts, teamId: body.team_id ?? event.team },
  };
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
