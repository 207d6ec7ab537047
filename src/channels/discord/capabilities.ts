// What Discord can do, apart from the adapter: the registry reads it at start, and the adapter
// (with its client library) is loaded only when the first instance of the kind starts.
import type { ChannelCapabilities } from '../types.ts';

export const DISCORD_MAX_CHARS = 2000;
// Discord clients collapse long messages at roughly 17 lines; stay below that.
export const DISCORD_MAX_LINES = 17;
export const DISCORD_CAPABILITIES: ChannelCapabilities = {
  maxText: DISCORD_MAX_CHARS,
  maxLines: DISCORD_MAX_LINES,
  edit: true,
  typing: true,
  threads: true,
  reactions: true,
  media: ['image', 'video', 'audio', 'document'],
  pairing: 'token',
};
