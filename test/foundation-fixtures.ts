// Foundation suites create instances through the API only to check the API; the pipeline would
// start real channel adapters for them (Discord gateway, Evolution webhook registration), which
// must never reach the internet. Every channel gets a stand-in adapter that connects nowhere.
import type { AdapterFactory } from '../src/channels/registry.ts';
import { CHANNEL_KINDS, type ChannelAdapter, type ChannelKind } from '../src/channels/types.ts';
import { createTestGateway } from './helpers.ts';

const offlineAdapter: AdapterFactory = (inst): ChannelAdapter => ({
  kind: inst.channel,
  capabilities: { maxText: 4000, edit: false, typing: false, threads: false, reactions: false, media: [], pairing: 'none' },
  async start() {},
  async stop() {},
  async send() {
    throw new Error('offline stand-in adapter: foundation tests send nothing');
  },
});

const factories = Object.fromEntries(CHANNEL_KINDS.map((k) => [k, offlineAdapter])) as Record<ChannelKind, AdapterFactory>;

/** createTestGateway with offline channel adapters. */
export function offlineGateway(env: Record<string, string> = {}) {
  return createTestGateway(env, { pipeline: { factories } });
}
