// Replaying a message this node dead-lettered, in cluster mode: the message is handed to its
// shard's owner through the stream like any new message (the owner may be another node now),
// under an id of its own; the local dead letter is then removed and the old trace says where the
// replay went.

import { Conflict } from '../../core/errors.ts';
import type { InboundMessage } from '../../core/message.ts';
import type { IngestOutcome } from '../../services/inbox.ts';
import type { ClusterPipeline } from '../host.ts';

/** The local dead letter being replayed (a `dead_letters` row). */
export interface LocalDeadLetter {
  id: string;
  inbox_seq: number;
  trace_id: string;
}

export async function replayThroughOwner(
  pipeline: ClusterPipeline,
  append: (msg: InboundMessage, kind: 'inbound' | 'send') => Promise<IngestOutcome>,
  d: LocalDeadLetter,
): Promise<{ traceId: string; status: 'pending' }> {
  const { inbox } = pipeline;
  const row = inbox.get(d.inbox_seq);
  if (row?.status !== 'dead_lettered')
    throw new Conflict('The message is still being dead-lettered; retry in a moment');
  const msg = JSON.parse(row.payload_json) as InboundMessage;
  const replay: InboundMessage = {
    ...msg,
    // The stream dedupes by (instance, provider message id) for days, so the replay needs an id of
    // its own — one per dead letter, so a repeated replay is still deduped. Replies keep quoting
    // (threading under) the original message; an API send has nothing to quote.
    providerMessageId: `${msg.providerMessageId}#replay:${d.id}`,
    ...(row.kind === 'inbound' ? { replyToMessageId: msg.replyToMessageId ?? msg.providerMessageId } : {}),
    extra: {
      ...Object.fromEntries(Object.entries(msg.extra ?? {}).filter(([k]) => !k.startsWith('cluster'))),
      replayOf: d.trace_id,
    },
  };
  const handed = await append(replay, row.kind);
  inbox.deleteDeadLetter(d.id);
  inbox.addStep(d.trace_id, 'replayed', 'success', {
    dead_letter_id: d.id,
    replay_trace_id: handed.traceId,
    via: 'handed to the shard owner',
  });
  return { traceId: handed.traceId, status: 'pending' };
}
