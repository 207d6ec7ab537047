// The "api" pseudo-channel: conversations driven through the REST/AG-UI API, answered on the live
// stream. Messages posted through the API on an instance of any channel are marked `via` it, and
// their replies go through this channel's adapter instead of the platform.

import type { InboundMessage } from '../../core/message.ts';
import { plainChat } from '../addressing.ts';
import { LOCAL_CAPABILITIES, LocalAdapter } from '../local-adapter.ts';
import type { ChannelDefinition } from '../types.ts';

export const apiChannel: ChannelDefinition = {
  kind: 'api',
  platform: 'api',
  name: 'API (AG-UI and REST clients)',
  library: 'built in',
  version: 'built-in',
  capabilities: LOCAL_CAPABILITIES,
  fields: [],
  local: true,
  createAdapter: () => new LocalAdapter('api'),
  chatFor: plainChat,
  traceSteps: { sent: 'channel_sent' },
};

/** `extra.via` of a message posted through the API. */
export const VIA_API = apiChannel.kind;

/** The message came in through the API: its replies go to the stream. */
export function postedViaApi(msg: Pick<InboundMessage, 'extra'>): boolean {
  return msg.extra?.via === VIA_API;
}

/** The adapter that answers messages posted through the API, whatever their instance's channel. */
export const viaApiAdapter = new LocalAdapter(apiChannel.kind);
