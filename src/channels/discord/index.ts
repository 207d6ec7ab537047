// Discord through discord.js: a bot token links it; the invite URL adds the bot to a server.
import { channelOrThread } from '../addressing.ts';
import { field } from '../fields.ts';
import type { ChannelDefinition } from '../types.ts';
import { DISCORD_CAPABILITIES } from './capabilities.ts';
import { inviteUrl } from './config.ts';

// The adapter and discord.js load with the first discord instance, not at start: a synchronous require,
// as creating an adapter is synchronous.
const adapterModule = () => require('./adapter.ts') as typeof import('./adapter.ts');

/** View Channel, Send Messages, Send Messages in Threads, Read Message History, Add Reactions. */
export const DEFAULT_DISCORD_PERMISSIONS = '274877975616';

export const discordChannel: ChannelDefinition = {
  kind: 'discord',
  platform: 'discord',
  name: 'Discord',
  library: 'discord.js 14.28.1',
  version: '14.28.1',
  capabilities: DISCORD_CAPABILITIES,
  fields: [
    field('discord_bot_token', 'secret', { required: true, form: { label: 'Bot token' } }),
    field('discord_client_id', 'string', { form: { label: 'Application (client) id' } }),
    field('discord_guild_id', 'string'),
    field('discord_default_channel_id', 'string'),
    // Stored and accepted as in the v1 guide; voice channels are not joined here (text only).
    field('discord_voice_enabled', 'bool'),
    // The guide's optional webhook for outbound notifications: stored (a Discord webhook URL carries
    // its token in the path, so it is kept as a secret) and not called by the gateway.
    field('discord_webhook_url', 'secret'),
    field('discord_slash_commands_enabled', 'bool'),
    field('discord_permissions', 'intOrString'),
    field('discord_api_url', 'http', { receives: ['discord_bot_token'], env: 'DISCORD_API_URL' }),
    field('discord_listen_channel_ids', 'strings'),
    field('discord_require_mention', 'bool', { form: { label: 'Answer only when mentioned' } }),
    field('discord_max_replies_per_minute', 'int'),
  ],
  inferredFrom: ['discord_bot_token'],
  createAdapter: (_inst, d) =>
    new (adapterModule().DiscordAdapter)({ clock: d.clock, defaultApiUrl: d.config.discordApiUrl }),
  chatFor: channelOrThread,
  remote: {
    invite(ctx) {
      const { name, config } = ctx.instance;
      const clientId = config.discord_client_id;
      if (typeof clientId !== 'string' || !clientId)
        throw ctx.fail('VALIDATION_ERROR', `Instance '${name}' has no discord_client_id`, [
          { field: 'discord_client_id', problem: 'is required for an invite URL' },
        ]);
      const perms = config.discord_permissions;
      return inviteUrl(
        clientId,
        typeof perms === 'number' || typeof perms === 'string' ? perms : DEFAULT_DISCORD_PERMISSIONS,
      );
    },
  },
  traceSteps: { sent: 'channel_sent' },
};
