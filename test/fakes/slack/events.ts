// Signed Events API requests built the way Slack builds them, and event_callback envelopes
// shaped after Slack's Events API documentation (no captured fixtures exist for Slack).
import { createHmac } from 'node:crypto';

/**
 * Slack's request signing: `X-Slack-Signature: v0=hex(HMAC_SHA256(secret, "v0:{ts}:{body}"))`
 * with `X-Slack-Request-Timestamp: {ts}` in Unix seconds.
 */
export function signRequest(
  secret: string,
  body: string,
  timestampSec = Math.floor(Date.now() / 1000),
): Record<string, string> {
  const signature = createHmac('sha256', secret).update(`v0:${timestampSec}:${body}`).digest('hex');
  return {
    'content-type': 'application/json',
    'x-slack-request-timestamp': String(timestampSec),
    'x-slack-signature': `v0=${signature}`,
  };
}

export interface SlackEventFields {
  type: string;
  user?: string;
  text?: string;
  ts: string;
  channel: string;
  channel_type?: string;
  thread_ts?: string;
  subtype?: string;
  bot_id?: string;
  [key: string]: unknown;
}

let eventSeq = 0;

/** An `event_callback` body as Slack POSTs it (and wraps in Socket Mode envelopes). */
export function eventCallback(
  event: SlackEventFields,
  opts: { eventId?: string; teamId?: string } = {},
): Record<string, unknown> {
  const eventId = opts.eventId ?? `Ev${String(++eventSeq).padStart(8, '0')}`;
  const teamId = opts.teamId ?? 'T0000001';
  return {
    token: 'verification-token-unused',
    team_id: teamId,
    api_app_id: 'A0000001',
    event: { event_ts: event.ts, ...event },
    type: 'event_callback',
    event_id: eventId,
    event_time: Math.floor(Number(event.ts)),
    authorizations: [
      { enterprise_id: null, team_id: teamId, user_id: 'UBOT0001', is_bot: true, is_enterprise_install: false },
    ],
    is_ext_shared_channel: false,
    event_context: `4-${eventId}`,
  };
}

export function urlVerification(challenge: string): Record<string, unknown> {
  return { token: 'verification-token-unused', challenge, type: 'url_verification' };
}
