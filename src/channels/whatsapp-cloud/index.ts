// WhatsApp through Meta's official Cloud API (WhatsApp Business Platform): a business phone number
// with an access token, Meta's signed webhook in, Graph API calls out. Same platform as the other
// WhatsApp channels: a phone number is one person and one conversation key whichever channel saw it.
import { randomToken } from '../../services/ids.ts';
import { phoneOrJid } from '../addressing.ts';
import { field } from '../fields.ts';
import type { ChannelDefinition } from '../types.ts';
import { CLOUD_CAPABILITIES, handshakeAnswer, WhatsAppCloudAdapter } from './adapter.ts';

export const whatsappCloudChannel: ChannelDefinition = {
  kind: 'whatsapp-cloud',
  platform: 'whatsapp',
  name: 'WhatsApp Cloud API (official)',
  library: 'Graph API (HTTP)',
  version: 'Graph API v23.0',
  capabilities: CLOUD_CAPABILITIES,
  fields: [
    field('phone_number_id', 'string', { required: true, form: { label: 'Phone number ID' } }),
    field('access_token', 'secret', { required: true, form: { label: 'Access token (system user)' } }),
    field('app_secret', 'secret', {
      required: true,
      form: { label: 'App secret', hint: 'Checks the X-Hub-Signature-256 of every webhook' },
    }),
    field('verify_token', 'string', {
      form: { label: 'Webhook verify token', hint: 'Generated when left empty; enter it in the Meta app' },
    }),
    field('waba_id', 'string', { form: { label: 'WhatsApp Business Account ID' } }),
    field('graph_api_version', 'string', { form: { label: 'Graph API version', hint: 'Defaults to v23.0' } }),
    field('whatsapp_cloud_api_url', 'http', { receives: ['access_token'], env: 'WHATSAPP_CLOUD_API_URL' }),
    field('preview_url', 'bool'),
  ],
  inferredFrom: ['phone_number_id'],
  fillDefaults(config) {
    if (!config.verify_token) config.verify_token = randomToken(18);
  },
  createAdapter: (inst, d) =>
    new WhatsAppCloudAdapter(inst, { fetch: d.fetch, clock: d.clock, defaultApiUrl: d.config.whatsappCloudApiUrl }),
  webhook: {
    path: 'whatsapp-cloud',
    mode: 'adapter',
    docs: {
      summary: 'WhatsApp Cloud API webhook',
      description:
        "Meta's `messages` notifications (messages and statuses). Signed with the app secret (X-Hub-Signature-256, HMAC-SHA256 of the raw body), checked before parsing; answered after the durable write. GET on the same path answers Meta's subscription check (hub.verify_token → hub.challenge).",
      body: 'WhatsApp Business Account notification ({object, entry: [{changes: [{field, value}]}]}), signed',
    },
    handler: (adapter) =>
      adapter instanceof WhatsAppCloudAdapter ? (body, headers) => adapter.handleWebhook(body, headers) : null,
    handshake: (inst, query) => handshakeAnswer(inst.config.verify_token, query),
  },
  chatFor(to) {
    const chat = phoneOrJid(to);
    if ('chatId' in chat && chat.kind === 'group')
      return { problem: 'the Cloud API sends to phone numbers only, not groups', expected: 'E.164 number' };
    return chat;
  },
  phoneSenderIds: true,
  agentSource: 'whatsapp-cloud-api',
  traceSteps: { sent: 'cloud_api_called' },
};
