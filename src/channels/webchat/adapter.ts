// The web chat's adapter: there is no remote platform. A reply is committed to the inbox (the
// visitor reads it from the history) and streamed live through the hub while it is written, so a
// send only hands back an id.
import { newId } from '../../services/ids.ts';
import type { ChannelAdapter, ChannelCapabilities, SentReceipt } from '../types.ts';

export const WEBCHAT_CAPABILITIES: ChannelCapabilities = {
  maxText: 100_000,
  edit: false,
  typing: false,
  threads: false,
  reactions: false,
  media: [],
  pairing: 'none',
};

export class WebchatAdapter implements ChannelAdapter {
  readonly capabilities = WEBCHAT_CAPABILITIES;
  constructor(readonly kind: string) {}
  async start(ctx: Parameters<ChannelAdapter['start']>[0]) {
    ctx.setStatus('connected');
  }
  async stop() {}
  async send(): Promise<SentReceipt> {
    return { platformMessageId: newId() };
  }
}
