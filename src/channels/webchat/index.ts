// Web chat: a visitor on a web page talks to the instance's agent through the same durable
// pipeline as every channel. The visitor API and the embeddable script are this channel's public
// routes (routes.ts); the widget itself is widget/main.ts.

import { LOCAL_CAPABILITIES, LocalAdapter } from '../local-adapter.ts';
import type { ChannelDefinition } from '../types.ts';
import { validateConfig, WEBCHAT_FIELDS } from './config.ts';
import { WIDGET_PATH, webchatRoutes } from './routes.ts';

const KIND = 'webchat';

export const webchatChannel: ChannelDefinition = {
  kind: KIND,
  platform: KIND,
  name: 'Web chat (embeddable widget)',
  library: 'built in',
  version: 'built-in',
  capabilities: LOCAL_CAPABILITIES,
  fields: WEBCHAT_FIELDS,
  validate: validateConfig,
  local: true,
  createAdapter: () => new LocalAdapter(KIND),
  // The send API's `to` is a visitor id (an operator answering a visitor).
  chatFor: (to) =>
    /^v_[A-Za-z0-9_-]{8,64}$/.test(to.trim())
      ? { chatId: to.trim(), kind: 'direct' }
      : { problem: 'expected a web chat visitor id', expected: 'v_…' },
  publicRoutes: { widget: WIDGET_PATH, routes: (deps) => webchatRoutes(KIND, deps) },
  traceSteps: { sent: 'webchat_delivered' },
};
