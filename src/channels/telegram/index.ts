// Telegram through grammY: a bot token links it; updates come by webhook (secret-token checked by
// the running adapter) or by long polling on the node that runs the instance.
import { field } from '../fields.ts';
import type { ChannelDefinition, ChatAddress } from '../types.ts';
import type { TelegramAdapter } from './adapter.ts';
import { TELEGRAM_CAPABILITIES } from './capabilities.ts';
import { TELEGRAM_MODES } from './settings.ts';

// The adapter and grammY load with the first telegram instance, not at start: a synchronous require,
// as creating an adapter is synchronous.
const adapterModule = () => require('./adapter.ts') as typeof import('./adapter.ts');
const isTelegramAdapter = (a: unknown): a is TelegramAdapter =>
  a != null && a instanceof adapterModule().TelegramAdapter;

/** A chat id (`123`, `-100123`, `@channel`), optionally `chat/topic` for a forum topic. */
function telegramChat(to: string): ChatAddress {
  const m = /^\s*(-?\d+|@\w{4,})(?:\/(\d+))?\s*$/.exec(to);
  if (!m) return { problem: 'expected a Telegram chat id, optionally chat/topic', expected: '123456 or -100123/42' };
  const [, chatId, threadId] = m;
  const kind = /^\d+$/.test(chatId) ? 'direct' : 'group'; // users have positive ids, groups negative
  return threadId ? { chatId, threadId, kind } : { chatId, kind };
}

export const telegramChannel: ChannelDefinition = {
  kind: 'telegram',
  platform: 'telegram',
  name: 'Telegram',
  library: 'grammY 1.46.0',
  version: '1.46.0',
  capabilities: TELEGRAM_CAPABILITIES,
  fields: [
    field('telegram_bot_token', 'secret', { required: true, form: { label: 'Bot token (from @BotFather)' } }),
    field('telegram_mode', 'string', {
      form: { label: 'Updates by', hint: 'webhook (needs an https PUBLIC_URL) or polling; default: by PUBLIC_URL' },
    }),
    field('telegram_api_url', 'http', { receives: ['telegram_bot_token'], env: 'TELEGRAM_API_URL' }),
    field('telegram_require_mention', 'bool', { form: { label: 'In groups, answer only when mentioned' } }),
  ],
  inferredFrom: ['telegram_bot_token'],
  validate(config) {
    const mode = config.telegram_mode;
    if (mode === undefined || mode === null || (TELEGRAM_MODES as readonly unknown[]).includes(mode)) return [];
    return [{ field: 'telegram_mode', problem: `must be one of ${TELEGRAM_MODES.join(', ')}` }];
  },
  createAdapter: (inst, d) =>
    new (adapterModule().TelegramAdapter)(inst, {
      clock: d.clock,
      fetch: d.fetch,
      db: d.db,
      defaultApiUrl: d.config.telegramApiUrl,
      publicUrl: d.config.publicUrl,
    }),
  webhook: {
    path: 'telegram',
    mode: 'adapter',
    docs: {
      summary: 'Telegram Bot API webhook',
      description:
        'Set by the gateway (setWebhook) when the instance starts in webhook mode. X-Telegram-Bot-Api-Secret-Token must be the secret given to setWebhook (else 401, nothing stored). Acked after the durable write.',
      body: 'Telegram Update (JSON)',
    },
    handler: (adapter) =>
      isTelegramAdapter(adapter) ? (body, headers) => adapter.handleWebhookRequest(body, headers) : null,
  },
  chatFor: telegramChat,
  traceSteps: { sent: 'channel_sent' },
};
