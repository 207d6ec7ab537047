// pino logger: JSON lines; pretty when LOG_LEVEL=debug on a TTY. Secrets are redacted by path.
import pino, { type Logger } from 'pino';

export const REDACT_PATHS = [
  'apiKey',
  '*.apiKey',
  'api_key',
  '*.api_key',
  'evolution_key',
  '*.evolution_key',
  'agent_api_key',
  '*.agent_api_key',
  'discord_bot_token',
  '*.discord_bot_token',
  'slack_bot_token',
  '*.slack_bot_token',
  'slack_signing_secret',
  '*.slack_signing_secret',
  'slack_app_token',
  '*.slack_app_token',
  // Every channel's secret fields, v1 and v2 names (test/log.test.ts checks the registry against this list).
  ...[
    'evolutionKey',
    'access_token',
    'accessToken',
    'app_secret',
    'appSecret',
    'discordBotToken',
    'discord_webhook_url',
    'discordWebhookUrl',
    'slackBotToken',
    'slackSigningSecret',
    'slackAppToken',
    'telegram_bot_token',
    'telegramBotToken',
  ].flatMap((k) => [k, `*.${k}`]),
  'token',
  '*.token',
  'secret',
  '*.secret',
  'webhookSecret',
  '*.webhookSecret',
  'password',
  '*.password',
  'authorization',
  '*.authorization',
  'headers["x-api-key"]',
  'req.headers["x-api-key"]',
  'headers.authorization',
];

export function createLogger(
  level: string,
  opts: { pretty?: boolean; destination?: pino.DestinationStream } = {},
): Logger {
  const pretty = opts.pretty ?? (level === 'debug' && process.stdout.isTTY === true);
  const base: pino.LoggerOptions = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (pretty) return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  return opts.destination ? pino(base, opts.destination) : pino(base);
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
