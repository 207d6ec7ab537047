// WhatsApp directly (Baileys): the socket runs in the instance actor; pairing by QR or phone number.
import { phoneOrJid } from '../addressing.ts';
import { field } from '../fields.ts';
import type { ChannelDefinition, LifecycleContext } from '../types.ts';
import type { BaileysAdapter } from './adapter.ts';
import { WHATSAPP_CAPABILITIES } from './capabilities.ts';
import { qrToPngDataUrl } from './qr.ts';

// The adapter and Baileys load with the first whatsapp instance, not at start: a synchronous require,
// as creating an adapter is synchronous.
const adapterModule = () => require('./adapter.ts') as typeof import('./adapter.ts');
const isBaileysAdapter = (a: unknown): a is BaileysAdapter => a != null && a instanceof adapterModule().BaileysAdapter;

function running(ctx: LifecycleContext): BaileysAdapter {
  if (!isBaileysAdapter(ctx.adapter)) throw ctx.notRunning();
  return ctx.adapter;
}

export const whatsappChannel: ChannelDefinition = {
  kind: 'whatsapp-baileys',
  platform: 'whatsapp',
  name: 'WhatsApp (direct, Baileys)',
  library: '@whiskeysockets/baileys 7.0.0-rc14',
  version: '7.0.0-rc14',
  capabilities: WHATSAPP_CAPABILITIES,
  fields: [
    field('whatsapp_ws_url', 'ws', { env: 'WHATSAPP_WS_URL' }),
    field('auto_qr', 'bool'),
    field('whatsapp_self_messages', 'bool'),
    field('whatsapp_group_mention_only', 'bool', { form: { label: 'In groups, answer only when mentioned' } }),
    field('whatsapp_read_receipts', 'bool', { form: { label: 'Send read receipts' } }),
    field('whatsapp_quote_replies', 'bool'),
    field('whatsapp_send_rate_per_second', 'number'),
    field('whatsapp_send_jitter_ms', 'int'),
    field('whatsapp_max_qr_rounds', 'int'),
  ],
  // A v1 create naming no other channel's fields is a WhatsApp number paired by QR.
  inferredFrom: 'otherwise',
  createAdapter: (_inst, d) =>
    new (adapterModule().BaileysAdapter)({ db: d.db, clock: d.clock, socketFactory: d.baileysSocketFactory }),
  chatFor: phoneOrJid,
  phoneSenderIds: true,
  pairing: {
    async qr(ctx) {
      const a = running(ctx);
      const current = a.currentQr();
      if (current) return { qr: await qrToPngDataUrl(current.qr), expiresAt: current.expiresAt };
      const s = a.status();
      if (s.status === 'connected')
        throw ctx.fail(
          'CONFLICT',
          `Instance '${ctx.instance.name}' is already linked and connected; no QR code needed`,
        );
      if (s.status === 'logged_out' || s.status === 'disconnected' || s.status === 'error') {
        throw ctx.fail(
          'CONFLICT',
          `No QR code: the instance is ${s.status}${s.reason ? ` (${s.reason})` : ''}; POST /api/v2/instances/${ctx.instance.id}/connect to start pairing`,
        );
      }
      throw ctx.fail('NOT_FOUND', 'No QR code yet: WhatsApp has not offered one; retry in a few seconds', null, 2);
    },
    async code(ctx, phoneNumber) {
      try {
        return await running(ctx).requestPairingCode(phoneNumber);
      } catch (err) {
        throw ctx.failure(err, 'Pairing');
      }
    },
  },
  remote: {
    async status(ctx, base) {
      const a = ctx.adapter;
      if (!isBaileysAdapter(a)) return base;
      const s = a.status();
      return {
        ...base,
        status: s.status,
        reason: s.reason,
        hasQr: a.currentQr() !== null,
        lastDisconnect: s.lastDisconnect,
        qrRounds: s.qrRounds,
        nextReconnectAt: s.nextReconnectAt,
      };
    },
    async restart(ctx) {
      // Baileys' own restart keeps the adapter and gives a fresh QR budget.
      if (!isBaileysAdapter(ctx.adapter)) return false;
      await ctx.adapter.restart();
      return true;
    },
    async logout(ctx) {
      await running(ctx).logout();
      return ctx.status();
    },
  },
  traceSteps: { sent: 'channel_sent' },
};
