// What Telegram can do, apart from the adapter: the registry reads it at start, and the adapter
// (with its client library) is loaded only when the first instance of the kind starts.
import type { ChannelCapabilities } from '../types.ts';

export const TELEGRAM_MAX_TEXT = 4096;
export const TELEGRAM_CAPABILITIES: ChannelCapabilities = {
  maxText: TELEGRAM_MAX_TEXT,
  edit: true,
  typing: true,
  threads: true,
  reactions: true,
  media: ['image', 'video', 'audio', 'document'],
  pairing: 'token',
};
