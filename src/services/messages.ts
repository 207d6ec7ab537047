// The send API's domain side. A send is an inbox row of kind 'send' in the target conversation,
// so the conversation actor delivers it in order with agent replies, through the outbox; the
// caller waits (bounded) for that row's terminal state and gets the platform message id.
import type { Database } from 'bun:sqlite';
import { requireChannel } from '../channels/registry.ts';
import { RateLimited, Validation } from '../core/errors.ts';
import type { Instance } from '../core/instance.ts';
import type { ChatRef, ContentType, InboundMessage, OutboundMessage } from '../core/message.ts';
import type { Pipeline } from '../engine/pipeline.ts';
import { newId } from './ids.ts';
import { type InboxRow, TERMINAL } from './inbox.ts';

export const DEFAULT_SEND_WAIT_MS = 30_000;

export interface SendResult {
  messageId: string;
  externalMessageId: string | null;
  /** sent | failed | pending (still queued when the wait ran out) */
  status: 'sent' | 'failed' | 'pending';
  error: string | null;
  duplicate: boolean;
}

export interface MessageView {
  id: string;
  instanceId: string;
  conversationId: string;
  direction: 'inbound' | 'outbound';
  chat: ChatRef;
  from: { id: string; name: string | null; phone: string | null };
  text: string;
  contentType: string;
  status: string;
  externalMessageId: string | null;
  /** Platform ids of what was sent for this message (an agent reply or the API send), in order. */
  sentParts: Array<{ part: number; externalMessageId: string; text: string }>;
  responseText: string | null;
  error: string | null;
  createdAt: string;
  completedAt: string | null;
}

/** Where `to` goes on the instance's channel (each channel says how it addresses a chat). */
export function chatFor(inst: Instance, to: string): ChatRef {
  const chat = requireChannel(inst.channel).chatFor(to);
  if ('problem' in chat)
    throw new Validation(`to: ${chat.problem}`, {
      field: 'to',
      ...(chat.expected ? { received: to, expected: chat.expected } : {}),
    });
  return chat;
}

export class MessageService {
  private waiters = new Map<number, Array<() => void>>();

  constructor(
    private db: Database,
    private pipeline: Pipeline,
    private opts: { waitMs?: number } = {},
  ) {
    pipeline.onTerminal((row) => {
      const list = this.waiters.get(row.seq);
      if (!list) return;
      this.waiters.delete(row.seq);
      for (const w of list) w();
    });
  }

  /** Resolves true once the row is terminal, false after `timeoutMs`. */
  waitForTerminal(seq: number, timeoutMs: number): Promise<boolean> {
    const isTerminal = () =>
      TERMINAL.includes(
        this.db.query<{ status: InboxRow['status'] }, [number]>('SELECT status FROM inbox WHERE seq = ?').get(seq)
          ?.status ?? 'failed',
      );
    if (isTerminal()) return Promise.resolve(true);
    return new Promise((resolve) => {
      let done = false;
      const finish = (v: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const list = this.waiters.get(seq)?.filter((w) => w !== onTerminal);
        if (list?.length) this.waiters.set(seq, list);
        else this.waiters.delete(seq);
        resolve(v);
      };
      const onTerminal = () => finish(true);
      const timer = setTimeout(() => finish(isTerminal()), timeoutMs);
      const list = this.waiters.get(seq) ?? [];
      list.push(onTerminal);
      this.waiters.set(seq, list);
      // The row may have ended between the first check and the registration.
      if (isTerminal()) finish(true);
    });
  }

  /**
   * Queues `out` for delivery in the conversation of `to` and waits for the outcome. With an
   * idempotency key, a repeated call finds the first row (the inbox's unique key) and answers
   * from it without sending again.
   */
  async send(
    inst: Instance,
    input: {
      to: string;
      out: OutboundMessage;
      contentType: ContentType;
      idempotencyKey?: string | null;
      senderId: string;
      senderName?: string;
    },
  ): Promise<SendResult> {
    const chat = chatFor(inst, input.to);
    const key = input.idempotencyKey?.trim();
    if (key !== undefined && (key.length === 0 || key.length > 200))
      throw new Validation('Idempotency-Key must be 1–200 characters', { field: 'Idempotency-Key' });
    const msg: InboundMessage = {
      instanceId: inst.id,
      providerMessageId: `api:${key ?? newId()}`,
      chat,
      sender: { id: input.senderId, ...(input.senderName ? { name: input.senderName } : {}) },
      text: input.out.text ?? '',
      contentType: input.contentType,
      timestamp: Date.now(),
      ...(input.out.replyTo ? { replyToMessageId: input.out.replyTo } : {}),
      extra: { outbound: input.out },
    };
    const outcome = await this.pipeline.ingest(msg, 'send');
    if (outcome.shed)
      throw new RateLimited(
        'Too many messages waiting in this conversation; retry later',
        { conversationId: outcome.conversationId },
        5,
      );
    await this.waitForTerminal(outcome.seq, this.opts.waitMs ?? DEFAULT_SEND_WAIT_MS);
    return { ...this.resultOf(outcome.seq), duplicate: outcome.status === 'duplicate' };
  }

  private resultOf(seq: number): Omit<SendResult, 'duplicate'> {
    const row = this.db.query<InboxRow, [number]>('SELECT * FROM inbox WHERE seq = ?').get(seq)!;
    const external =
      this.db
        .query<{ platform_message_id: string | null }, [number]>(
          "SELECT platform_message_id FROM outbox WHERE inbox_seq = ? AND part = 0 AND status = 'sent'",
        )
        .get(seq)?.platform_message_id ?? null;
    const status = row.status === 'completed' ? 'sent' : TERMINAL.includes(row.status) ? 'failed' : 'pending';
    return {
      messageId: row.id,
      externalMessageId: external,
      status,
      error: status === 'failed' ? (row.error ?? `message ${row.status}`) : null,
    };
  }

  /** Any message by id (inbound messages and API sends; the id is the trace id). */
  get(id: string): MessageView | null {
    const row = this.db.query<InboxRow, [string]>('SELECT * FROM inbox WHERE id = ?').get(id);
    if (!row) return null;
    const msg = JSON.parse(row.payload_json) as InboundMessage;
    const parts = this.db
      .query<{ part: number; text: string; platform_message_id: string }, [number]>(
        "SELECT part, text, platform_message_id FROM outbox WHERE inbox_seq = ? AND status = 'sent' ORDER BY part",
      )
      .all(row.seq)
      .map((p) => ({ part: p.part, externalMessageId: p.platform_message_id, text: p.text }));
    const outbound = row.kind === 'send';
    return {
      id: row.id,
      instanceId: row.instance_id,
      conversationId: row.conversation_id,
      direction: outbound ? 'outbound' : 'inbound',
      chat: msg.chat,
      from: { id: row.sender_id, name: row.sender_name, phone: row.sender_phone },
      text: row.text,
      contentType: row.content_type,
      status: row.status,
      externalMessageId: outbound
        ? (parts.find((p) => p.part === 0)?.externalMessageId ?? null)
        : row.provider_message_id,
      sentParts: parts,
      responseText: row.response_text,
      error: row.error,
      createdAt: row.received_at,
      completedAt: row.completed_at,
    };
  }
}
