// A hand-off stream entry: fields `m` (the inbound message as JSON, sealed with the cluster secret
// for STREAM_CONTEXT), `k` (inbound | send) and `t` (trace id). An entry not sealed by a node of
// this cluster (written into Redis by anyone else) is never run: it reads as a problem, and the
// reader dead-letters it.
import type Redis from 'ioredis';
import type { InboundMessage } from '../../core/message.ts';
import { conversationIdFor, type InboxRow } from '../../services/inbox.ts';
import type { ClusterKeys } from '../crypto.ts';

/** What stream entry messages are sealed for (see ClusterKeys.seal). */
export const STREAM_CONTEXT = 'stream-entry';

export type EntryKind = 'inbound' | 'send';

/** A stream entry as the message it carries, or why it cannot be one. */
export function parseEntry(
  id: string,
  fields: string[],
  keys: ClusterKeys,
): { msg: InboundMessage; kind: EntryKind } | string {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  const text = keys.open(f.m ?? '', STREAM_CONTEXT);
  if (text === null) return "entry not sealed with this cluster's secret (not written by a node of this cluster)";
  let msg: InboundMessage;
  try {
    msg = JSON.parse(text) as InboundMessage;
  } catch {
    return 'malformed entry (message is not JSON)';
  }
  const m = msg as unknown as Record<string, unknown> | null;
  if (
    !m ||
    typeof m !== 'object' ||
    typeof m.instanceId !== 'string' ||
    typeof m.providerMessageId !== 'string' ||
    !m.chat ||
    typeof m.chat !== 'object' ||
    !m.sender ||
    typeof m.sender !== 'object' ||
    typeof (m.sender as { id?: unknown }).id !== 'string'
  ) {
    return 'malformed entry (not an inbound message)';
  }
  try {
    conversationIdFor(msg.instanceId, msg.chat);
  } catch {
    return 'malformed entry (bad chat reference)';
  }
  msg.extra = { ...(msg.extra ?? {}), clusterStreamId: id };
  return { msg, kind: f.k === 'send' ? 'send' : 'inbound' };
}

/** Errors no retry can fix: the message itself cannot be written (constraint, shape). */
export function permanentIngestError(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT');
}

/** Orders stream entry ids ("ms-seq"). */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}

/** The stream entry an inbox row was ingested from (null: not from a stream). */
export function streamIdOf(row: InboxRow): string | null {
  try {
    const id = (JSON.parse(row.payload_json) as InboundMessage).extra?.clusterStreamId;
    return typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}

/** Every entry of a stream, oldest first, read in pages. */
export async function readWholeStream(redis: Redis, key: string): Promise<Array<[string, string[]]>> {
  const entries: Array<[string, string[]]> = [];
  let from = '-';
  for (;;) {
    const page = (await redis.xrange(key, from, '+', 'COUNT', 1000)) as Array<[string, string[]]>;
    entries.push(...page);
    if (page.length < 1000) return entries;
    from = `(${page[page.length - 1][0]}`;
  }
}
