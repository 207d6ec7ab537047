// Foundation suites create instances through the API only to check the API; the pipeline would
// start real channel adapters for them (Discord gateway, Evolution webhook registration), which
// must never reach the internet. Every channel gets a stand-in adapter that connects nowhere.
import { afterEach } from 'bun:test';
import { type AdapterFactory, CHANNEL_KINDS } from '../../src/channels/registry.ts';
import type { ChannelAdapter } from '../../src/channels/types.ts';
import type { ChannelKind } from '../../src/core/message.ts';
import { createTestGateway } from '../helpers.ts';

const offlineAdapter: AdapterFactory = (inst): ChannelAdapter => ({
  kind: inst.channel,
  capabilities: {
    maxText: 4000,
    edit: false,
    typing: false,
    threads: false,
    reactions: false,
    media: [],
    pairing: 'none',
  },
  async start() {},
  async stop() {},
  async send() {
    throw new Error('offline stand-in adapter: foundation tests send nothing');
  },
});

const factories = Object.fromEntries(CHANNEL_KINDS.map((k) => [k, offlineAdapter])) as Record<
  ChannelKind,
  AdapterFactory
>;

/** createTestGateway with offline channel adapters. */
export function offlineGateway(env: Record<string, string> = {}) {
  return createTestGateway(env, { pipeline: { factories } });
}

export type OfflineGateway = ReturnType<typeof offlineGateway>;

/** An offlineGateway maker for one test file: every gateway it made is closed after each test. */
export function offlineGatewaysClosedAfterEach(): (env?: Record<string, string>) => OfflineGateway {
  const open: OfflineGateway[] = [];
  afterEach(async () => {
    for (const t of open.splice(0)) await t.close();
  });
  return (env = {}) => {
    const t = offlineGateway(env);
    open.push(t);
    return t;
  };
}
