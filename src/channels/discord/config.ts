// The Discord fields of an instance's channel config (stored under their v1 snake_case names).
import type { ChannelConfig } from '../../core/instance.ts';
import { configBool, configString } from '../config-values.ts';

export const DISCORD_API_DEFAULT = 'https://discord.com/api';

export interface DiscordSettings {
  botToken: string | null;
  clientId: string | null;
  guildId: string | null;
  defaultChannelId: string | null;
  slashCommandsEnabled: boolean;
  permissions: string;
  /** REST base without the version segment, e.g. https://discord.com/api. */
  apiUrl: string;
  /** Guild channels to listen in; empty = all. A thread matches by its own id or its parent's. */
  listenChannelIds: string[];
  /** In guilds, answer only when mentioned or replied to. DMs always pass. */
  requireMention: boolean;
  maxRepliesPerMinute: number;
}

export function readDiscordSettings(config: ChannelConfig, fallbackApiUrl?: string | null): DiscordSettings {
  const apiUrl = configString(config.discord_api_url) ?? fallbackApiUrl ?? DISCORD_API_DEFAULT;
  return {
    botToken: configString(config.discord_bot_token),
    clientId: configString(config.discord_client_id),
    guildId: configString(config.discord_guild_id),
    defaultChannelId: configString(config.discord_default_channel_id),
    slashCommandsEnabled: configBool(config.discord_slash_commands_enabled, false),
    permissions: configString(config.discord_permissions) ?? '0',
    // discord.js appends /v10 itself; accept a base that already carries a version.
    apiUrl: apiUrl.replace(/\/+$/, '').replace(/\/v\d+$/, ''),
    listenChannelIds: list(config.discord_listen_channel_ids),
    requireMention: configBool(config.discord_require_mention, true),
    maxRepliesPerMinute: positiveInt(config.discord_max_replies_per_minute, 20),
  };
}

/** Accepts a JSON array or a comma-separated string (v1 forms). */
function list(v: unknown): string[] {
  if (Array.isArray(v)) return v.map((x) => String(x).trim()).filter(Boolean);
  if (typeof v === 'string')
    return v
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  return [];
}

function positiveInt(v: unknown, dflt: number): number {
  const n = typeof v === 'string' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : dflt;
}

/** OAuth2 URL that adds the bot (with slash commands) to a server. */
export function inviteUrl(clientId: string, permissions: string | number = '0'): string {
  const q = new URLSearchParams({ client_id: clientId, permissions: String(permissions) });
  return `https://discord.com/oauth2/authorize?${q.toString()}&scope=bot%20applications.commands`;
}
