export type { DiscordAdapterOptions, DiscordInteractionRef } from './adapter.ts';
export {
  ASK_COMMAND,
  DISCORD_MAX_CHARS,
  DISCORD_MAX_LINES,
  DiscordAdapter,
  nonceFor,
  toChannelError,
} from './adapter.ts';
export type { DiscordSettings } from './config.ts';
export { DISCORD_API_DEFAULT, inviteUrl, readDiscordSettings } from './config.ts';
