// The Telegram fields of an instance's channel config (stored under their v1 snake_case names),
// and the webhook secret the gateway generates for Telegram's X-Telegram-Bot-Api-Secret-Token.
import { createHmac } from 'node:crypto';
import type { ChannelConfig, Instance } from '../../core/instance.ts';
import { configBool, configString } from '../config-values.ts';

export const TELEGRAM_API_DEFAULT = 'https://api.telegram.org';
export const TELEGRAM_MODES = ['webhook', 'polling'] as const;
export type TelegramMode = (typeof TELEGRAM_MODES)[number];

export interface TelegramSettings {
  botToken: string | null;
  /** Bot API root without a trailing slash (grammY's `client.apiRoot`). */
  apiUrl: string;
  mode: TelegramMode;
  /** In groups, answer only when mentioned, replied to or given a command. Private chats always pass. */
  requireMention: boolean;
}

/**
 * Without `telegram_mode`: webhook when the gateway has an https PUBLIC_URL (Telegram only calls
 * https webhooks), polling otherwise.
 */
export function readTelegramSettings(
  config: ChannelConfig,
  env: { apiUrl?: string | null; publicUrl?: string | null } = {},
): TelegramSettings {
  const mode = configString(config.telegram_mode);
  return {
    botToken: configString(config.telegram_bot_token),
    apiUrl: (configString(config.telegram_api_url) ?? env.apiUrl ?? TELEGRAM_API_DEFAULT).replace(/\/+$/, ''),
    mode: mode === 'webhook' || mode === 'polling' ? mode : env.publicUrl?.startsWith('https:') ? 'webhook' : 'polling',
    requireMention: configBool(config.telegram_require_mention, true),
  };
}

/**
 * The `secret_token` given to setWebhook: derived from the instance's generated webhook secret, so
 * it is the same on every node and after a restart, and never the webhook token itself. Telegram
 * allows 1–256 characters of A-Z, a-z, 0-9, _ and -: base64url of a SHA-256 HMAC is 43 of them.
 */
export function webhookSecretToken(inst: Pick<Instance, 'webhookSecret'>): string {
  return createHmac('sha256', inst.webhookSecret).update('telegram secret_token').digest('base64url');
}
