// What Slack can do, apart from the adapter: the registry reads it at start, and the adapter
// (with its client library) is loaded only when the first instance of the kind starts.
import type { ChannelCapabilities } from '../types.ts';

export const SLACK_DEFAULT_MAX_TEXT = 4000;
/** The defaults; an instance may set its own text limit (slack_max_text, settings.maxTextLength). */
export const SLACK_CAPABILITIES: ChannelCapabilities = {
  maxText: SLACK_DEFAULT_MAX_TEXT,
  edit: true,
  typing: true,
  threads: true,
  reactions: true,
  media: [],
  pairing: 'token',
};
