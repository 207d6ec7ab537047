export { DiscordAdapter, nonceFor, toChannelError, ASK_COMMAND, DISCORD_MAX_CHARS, DISCORD_MAX_LINES } from './adapter.ts';
export type { DiscordAdapterOptions, DiscordInteractionRef } from './adapter.ts';
export { inviteUrl, readDiscordSettings, DISCORD_API_DEFAULT } from './config.ts';
export type { DiscordSettings } from './config.ts';
