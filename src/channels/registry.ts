// Channel kind → adapter. The one place that knows every channel; tests inject their own
// factories (e.g. a stand-in Baileys socket).
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { Config } from '../config.ts';
import type { Instance } from '../services/instance-types.ts';
import { ApiChannelAdapter } from './api.ts';
import { DiscordAdapter } from './discord/adapter.ts';
import { EvolutionAdapter } from './evolution/adapter.ts';
import { SlackAdapter } from './slack/adapter.ts';
import type { ChannelAdapter, ChannelCapabilities, ChannelKind } from './types.ts';
import { BaileysAdapter, type BaileysAdapterOptions } from './whatsapp/adapter.ts';

export interface AdapterDeps {
  db: Database;
  config: Config;
  clock: Clock;
  log: Logger;
  fetch: typeof fetch;
  /** Test hook: Baileys socket factory. */
  baileysSocketFactory?: BaileysAdapterOptions['socketFactory'];
}

export type AdapterFactory = (inst: Instance, deps: AdapterDeps) => ChannelAdapter;

export const DEFAULT_FACTORIES: Record<ChannelKind, AdapterFactory> = {
  'whatsapp-evolution': (inst, d) => new EvolutionAdapter(inst, { clock: d.clock, fetch: d.fetch, log: d.log }),
  'whatsapp-baileys': (_inst, d) =>
    new BaileysAdapter({ db: d.db, clock: d.clock, socketFactory: d.baileysSocketFactory }),
  discord: (_inst, d) => new DiscordAdapter({ clock: d.clock, defaultApiUrl: d.config.discordApiUrl }),
  slack: (inst, d) => new SlackAdapter(inst, { clock: d.clock, defaultApiUrl: d.config.slackApiUrl }),
  api: () => new ApiChannelAdapter(),
};

/** Static description of each channel kind (GET /api/v2/channels). */
export const CHANNEL_INFO: Record<ChannelKind, { name: string; library: string; capabilities: ChannelCapabilities }> = {
  'whatsapp-evolution': {
    name: 'WhatsApp via Evolution API',
    library: 'Evolution API (HTTP)',
    capabilities: {
      maxText: 4000,
      edit: false,
      typing: true,
      threads: false,
      reactions: true,
      media: ['image', 'video', 'audio', 'document'],
      pairing: 'qr',
    },
  },
  'whatsapp-baileys': {
    name: 'WhatsApp (direct, Baileys)',
    library: '@whiskeysockets/baileys 7.0.0-rc14',
    capabilities: {
      maxText: 4000,
      edit: false,
      typing: true,
      threads: false,
      reactions: true,
      media: ['image', 'video', 'audio', 'document', 'sticker'],
      pairing: 'qr+code',
    },
  },
  discord: {
    name: 'Discord',
    library: 'discord.js 14.28.1',
    capabilities: {
      maxText: 2000,
      maxLines: 17,
      edit: true,
      typing: true,
      threads: true,
      reactions: true,
      media: ['image', 'video', 'audio', 'document'],
      pairing: 'token',
    },
  },
  slack: {
    name: 'Slack',
    library: '@slack/bolt 5.1.0',
    capabilities: {
      maxText: 4000,
      edit: true,
      typing: true,
      threads: true,
      reactions: true,
      media: [],
      pairing: 'token',
    },
  },
  api: {
    name: 'API (AG-UI and REST clients)',
    library: 'built in',
    capabilities: {
      maxText: 100_000,
      edit: false,
      typing: false,
      threads: false,
      reactions: false,
      media: [],
      pairing: 'none',
    },
  },
};
