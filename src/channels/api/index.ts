// The "api" pseudo-channel: conversations driven through the REST/AG-UI API, answered on the live
// stream. Messages posted through the API on an instance of any channel are marked `via` it, and
// their replies go through this channel's adapter instead of the platform.

import type { InboundMessage } from '../../core/message.ts';
import { plainChat } from '../addressing.ts';
import type { ChannelDefinition } from '../types.ts';
import { API_CAPABILITIES, ApiChannelAdapter } from './adapter.ts';

export const apiChannel: ChannelDefinition = {
  kind: 'api',
  platform: 'api',
  name: 'API (AG-UI and REST clients)',
  library: 'built in',
  version: 'built-in',
  capabilities: API_CAPABILITIES,
  fields: [],
  local: true,
  createAdapter: () => new ApiChannelAdapter(),
  chatFor: plainChat,
  traceSteps: { sent: 'channel_sent' },
};

/** `extra.via` of a message posted through the API. */
export const VIA_API = apiChannel.kind;

/** The message came in through the API: its replies go to the stream. */
export function postedViaApi(msg: Pick<InboundMessage, 'extra'>): boolean {
  return msg.extra?.via === VIA_API;
}
