// The adapter of a channel with no remote platform (the API pseudo-channel, the web chat): the
// reply is recorded by the outbox and reaches its reader through the live stream and the history,
// so a send only hands back an id.
import { newId } from '../services/ids.ts';
import type { ChannelAdapter, ChannelCapabilities, SentReceipt } from './types.ts';

export const LOCAL_CAPABILITIES: ChannelCapabilities = {
  maxText: 100_000,
  edit: false,
  typing: false,
  threads: false,
  reactions: false,
  media: [],
  pairing: 'none',
};

export class LocalAdapter implements ChannelAdapter {
  readonly capabilities = LOCAL_CAPABILITIES;
  constructor(readonly kind: string) {}
  async start(ctx: Parameters<ChannelAdapter['start']>[0]) {
    ctx.setStatus('connected');
  }
  async stop() {}
  async send(): Promise<SentReceipt> {
    return { platformMessageId: newId() };
  }
}
