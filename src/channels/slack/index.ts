// Slack through Bolt: Events API over HTTP (signed; verified by the running adapter) or Socket Mode.
import { channelOrThread } from '../addressing.ts';
import { field } from '../fields.ts';
import type { ChannelDefinition } from '../types.ts';
import type { SlackAdapter } from './adapter.ts';
import { SLACK_CAPABILITIES } from './capabilities.ts';

// The adapter and Bolt load with the first slack instance, not at start: a synchronous require,
// as creating an adapter is synchronous.
const adapterModule = () => require('./adapter.ts') as typeof import('./adapter.ts');
const isSlackAdapter = (a: unknown): a is SlackAdapter => a != null && a instanceof adapterModule().SlackAdapter;

export const slackChannel: ChannelDefinition = {
  kind: 'slack',
  platform: 'slack',
  name: 'Slack',
  library: '@slack/bolt 5.1.0',
  version: '5.1.0',
  capabilities: SLACK_CAPABILITIES,
  fields: [
    field('slack_bot_token', 'secret', { required: true, form: { label: 'Bot token (xoxb-…)' } }),
    field('slack_signing_secret', 'secret', { form: { label: 'Signing secret' } }),
    field('slack_app_token', 'secret', { form: { label: 'App token for Socket Mode (xapp-…)' } }),
    field('slack_api_url', 'http', { receives: ['slack_bot_token', 'slack_app_token'], env: 'SLACK_API_URL' }),
    field('slack_max_text', 'int'),
  ],
  inferredFrom: ['slack_bot_token', 'slack_signing_secret'],
  validate(config) {
    if (config.slack_signing_secret || config.slack_app_token) return [];
    return [{ field: 'slack_signing_secret', problem: 'is required unless slack_app_token (Socket Mode) is set' }];
  },
  createAdapter: (inst, d) =>
    new (adapterModule().SlackAdapter)(inst, { clock: d.clock, fetch: d.fetch, defaultApiUrl: d.config.slackApiUrl }),
  webhook: {
    path: 'slack',
    mode: 'adapter',
    docs: {
      summary: 'Slack Events API',
      description:
        'Signed with the instance signing secret (v0 HMAC-SHA256, 5-minute window). Acked after the durable write.',
      body: 'Slack Events API request (signed)',
    },
    handler: (adapter) =>
      isSlackAdapter(adapter) ? (body, headers) => adapter.handleEventsRequest(body, headers) : null,
  },
  chatFor: channelOrThread,
  traceSteps: { sent: 'channel_sent' },
};
