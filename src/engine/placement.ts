// Placement: where the pipeline's work runs. It answers which conversations and channel
// connections this process runs now, where ingress is written, how a channel adapter is fenced,
// and it hears about every message that finished here. Embedded mode (below): this process owns
// everything and ingress goes to its own inbox. Cluster mode: src/cluster implements it over shard
// leases and the hand-off streams, and swaps it in (Pipeline.usePlacement) before the pipeline starts.
import type { InboxStore } from '../../db/inbox-store.ts';
import type { ChannelAdapter } from '../channels/types.ts';
import type { InboundMessage } from '../core/message.ts';
import type { InboxRow, IngestOutcome } from '../services/inbox.ts';

/** Where a message enters: a channel's inbound message, or a send through the API. */
export type IngestKind = 'inbound' | 'send';

export interface Placement {
  /** Whether this process runs the conversation now (cluster: owns its shard and has caught up). */
  ownsConversation(conversationId: string): boolean;
  /** Whether this process holds the instance's channel connection. */
  ownsInstance(instanceId: string): boolean;
  /** The durable ingress write, answered once it is safe to acknowledge the message. */
  ingest(msg: InboundMessage, kind: IngestKind): Promise<IngestOutcome>;
  /** Decorates an instance's channel adapter (cluster: sends are refused after losing the shard). */
  fenceAdapter(instanceId: string, adapter: ChannelAdapter): ChannelAdapter;
  /** A message reached its terminal state here (cluster: acknowledge its hand-off entry). */
  finished(row: InboxRow): void;
}

/** One process, one database: every conversation and connection is ours; ingress is the local inbox. */
export function embeddedPlacement(inbox: Pick<InboxStore, 'ingest'>): Placement {
  return {
    ownsConversation: () => true,
    ownsInstance: () => true,
    ingest: (msg, kind) => inbox.ingest(msg, kind),
    fenceAdapter: (_instanceId, adapter) => adapter,
    finished: () => {},
  };
}
