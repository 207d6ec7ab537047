// The waiting window of modes collect and interrupt, and the ids a turn is known by: pure
// functions of the conversation's inbox rows (the actor in conversation.ts recomputes the window
// from them whenever a message arrives or a wait ends).
import { postedViaApi } from '../src/channels/api/index.ts';
import type { InboundMessage } from '../src/core/message.ts';
import { sha256 } from '../src/services/ids.ts';
import type { InboxRow } from '../src/services/inbox.ts';
import { MESSAGING_LIMITS, type MessagingOptions } from '../src/services/instance-options.ts';

export function idempotencyKeyFor(instanceId: string, providerMessageId: string): string {
  return sha256(`${instanceId}:${providerMessageId}`).slice(0, 40);
}

/** A batch's Idempotency-Key, derived from its messages' ids (one message: the key it has on its own). */
export function batchIdempotencyKey(instanceId: string, providerMessageIds: string[]): string {
  if (providerMessageIds.length === 1) return idempotencyKeyFor(instanceId, providerMessageIds[0]!);
  return sha256(`${instanceId}:batch:${providerMessageIds.join('\n')}`).slice(0, 40);
}

/** A batch's id, derived from its messages' trace ids (the same batch taken again has the same id). */
export function batchIdFor(traceIds: string[]): string {
  return `b_${sha256(traceIds.join('\n')).slice(0, 24)}`;
}

/** The most rows one window looks at (the largest maxBatch). */
export const WINDOW_ROWS = MESSAGING_LIMITS.maxBatch[1];

export const isOpen = (r: InboxRow) => r.status === 'pending' || r.status === 'processing';

/**
 * Answered on its own, never in a batch: a message posted through the API (answered on the live
 * stream), or one kept for the record only (an edit: no access, keyword or agent side effects).
 */
export function answeredAlone(msg: InboundMessage): boolean {
  return postedViaApi(msg) || msg.recordOnly !== undefined;
}

/**
 * Whether `r` may be answered in one batch with `head`: an inbound platform message of the same
 * sender (in a group, one person's burst), not yet in a batch, not answered alone, and without
 * media (a batch fetches its lead's media only: a member's would not reach the agent; a message
 * with media may lead a batch).
 */
export function joinable(head: InboxRow, r: InboxRow): boolean {
  if (r.kind !== 'inbound' || r.batch_id || r.sender_id !== head.sender_id || r.instance_id !== head.instance_id)
    return false;
  const msg = JSON.parse(r.payload_json) as InboundMessage;
  return !answeredAlone(msg) && !msg.media?.length;
}

/** The window over the conversation's pending rows (the first is its head): who is in it, and when it closes. */
export interface Window {
  members: InboxRow[];
  /** Wall-clock time (ms) the turn starts unless the window grows. */
  deadline: number;
  /** Nothing can join any more (maxBatch reached, a row that cannot join or that came too late follows). */
  closed: boolean;
}

/**
 * The waiting window, recomputed from the rows alone. A message joins when it was there when the
 * window opened (`openedAt`: it arrived while the previous turn ran, or before a restart) or when
 * it arrived before the window's deadline; one that arrives at the deadline exactly starts the
 * next window.
 * The deadline is debounceMs after the last message that joined, and never later than maxWaitMs
 * (when set) after the first.
 */
export function windowOf(rows: InboxRow[], openedAt: number, opts: MessagingOptions): Window {
  const head = rows[0]!;
  const first = Date.parse(head.received_at);
  const cap = opts.maxWaitMs > 0 ? first + opts.maxWaitMs : Number.POSITIVE_INFINITY;
  const members = [head];
  let deadline = Math.min(first + opts.debounceMs, cap);
  for (let i = 1; i < rows.length; i++) {
    const r = rows[i]!;
    if (members.length >= opts.maxBatch || !joinable(head, r)) return { members, deadline, closed: true };
    const t = Date.parse(r.received_at);
    if (t > openedAt && t >= deadline) return { members, deadline, closed: true };
    members.push(r);
    deadline = Math.min(Math.max(deadline, t + opts.debounceMs), cap);
  }
  return { members, deadline, closed: members.length >= opts.maxBatch };
}
