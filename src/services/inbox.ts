// The durable inbox's vocabulary: row and status types, ingest outcomes, conversation ids. The
// tables themselves (and their in-memory counts) are owned by the inbox store, db/inbox-store.ts.
import type { ChatRef, IngestResult } from '../core/message.ts';
import { sha256 } from './ids.ts';

export type InboxStatus = 'pending' | 'processing' | 'completed' | 'failed' | 'blocked' | 'dead_lettered' | 'shed';
export const TERMINAL: InboxStatus[] = ['completed', 'failed', 'blocked', 'dead_lettered', 'shed'];

export interface InboxRow {
  seq: number;
  id: string;
  instance_id: string;
  provider_message_id: string;
  conversation_id: string;
  kind: 'inbound' | 'send';
  sender_id: string;
  sender_name: string | null;
  sender_phone: string | null;
  text: string;
  content_type: string;
  payload_json: string;
  status: InboxStatus;
  attempts: number;
  response_text: string | null;
  error: string | null;
  channel_success: number | null;
  possible_duplicate: number;
  received_at: string;
  completed_at: string | null;
  duration_ms: number | null;
  /** The batch this message is answered in (conversation modes collect/interrupt); null when on its own. */
  batch_id?: string | null;
}

export interface IngestOutcome extends IngestResult {
  conversationId: string;
  seq: number;
  shed: boolean;
}

export function chatKey(chat: ChatRef): string {
  return chat.threadId ? `${chat.chatId}/${chat.threadId}` : chat.chatId;
}

/** Deterministic conversation id: the same chat maps to the same id on every node. */
export function conversationIdFor(instanceId: string, chat: ChatRef): string {
  return conversationIdForKey(instanceId, chatKey(chat));
}

export function conversationIdForKey(instanceId: string, key: string): string {
  return `c_${sha256(`${instanceId}\u0000${key}`).slice(0, 24)}`;
}

export interface InboxLimits {
  conversationBacklog: number;
  globalBacklog: number;
}
