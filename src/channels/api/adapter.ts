// The "api" channel's adapter. Replies are delivered to the live stream (and the outbox records
// them); there is no remote platform.

import { newId } from '../../services/ids.ts';
import type { ChannelAdapter, ChannelCapabilities, SentReceipt } from '../types.ts';

export const API_CAPABILITIES: ChannelCapabilities = {
  maxText: 100_000,
  edit: false,
  typing: false,
  threads: false,
  reactions: false,
  media: [],
  pairing: 'none',
};

export class ApiChannelAdapter implements ChannelAdapter {
  readonly kind = 'api' as const;
  readonly capabilities = API_CAPABILITIES;
  async start(ctx: Parameters<ChannelAdapter['start']>[0]) {
    ctx.setStatus('connected');
  }
  async stop() {}
  async send(): Promise<SentReceipt> {
    return { platformMessageId: newId() };
  }
}
