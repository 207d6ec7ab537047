// Delivers one reply to a channel through the outbox, in the instance's reply mode:
//  final  — one reply, chunked to the channel's limits;
//  blocks — each completed block is sent while the agent still writes;
//  edit   — post once, then edit in place at most once a second, rolling over at the limit.
// Every posted part has an outbox row: sending → sent (with the platform id). `sending` is
// committed (with the message's queued trace writes) before the channel call; `sent` is queued
// and committed with the message's next write. A part found `sending` after a crash is resent and
// counted as a possible duplicate. The rows are written through the message's unit of work.
import type { Clock } from '../../actors/runtime/clock.ts';
import type { MessageWork } from '../../db/message-work.ts';
import type { ChannelAdapter } from '../channels/types.ts';
import type { Instance } from '../core/instance.ts';
import type { ChatRef, InboundMessage, OutboundMessage } from '../core/message.ts';
import { BlockSplitter, chunkText } from '../stream/chunker.ts';
import { crashPoint } from './crash.ts';

export interface DeliveryContext {
  clock: Clock;
  adapter: ChannelAdapter;
  instance: Instance;
  chat: ChatRef;
  inbound: InboundMessage | undefined;
  idempotencyKey: string;
  /** The message's unit of work: its queued writes (trace steps, row updates) commit with the outbox changes. */
  work: MessageWork;
  onPossibleDuplicate: () => void;
  /** A part is about to reach the channel (it may throw to refuse: an interrupted turn sends nothing more). */
  onSending?: (part: number) => void;
  onSent?: (part: number, platformMessageId: string, text: string) => void;
}

export function limitsFor(adapter: ChannelAdapter, inst: Instance) {
  return {
    // Never above the channel's own limit: one outbox part must be one platform message.
    maxChars: Math.min(inst.settings.maxTextLength ?? Infinity, adapter.capabilities.maxText),
    maxLines: adapter.capabilities.maxLines,
  };
}

/**
 * Sends (or skips, when already sent) one numbered part of a reply through the outbox. `extra`
 * carries an API send's media, reaction or template (POST /api/v2/messages/media|reaction|template).
 * `lastPart`: nothing of the reply follows it (the adapter is told, see ChannelAdapter.send).
 */
export async function sendPart(
  ctx: DeliveryContext,
  part: number,
  text: string,
  replyTo?: string,
  extra?: Pick<OutboundMessage, 'media' | 'reaction' | 'template'>,
  lastPart = false,
): Promise<string> {
  const { work } = ctx;
  const row = work.outboxPart(part);
  if (row?.status === 'sent' && row.platform_message_id) return row.platform_message_id;
  ctx.onSending?.(part);
  if (row?.status === 'sending') ctx.onPossibleDuplicate();
  await work.commitSending(part, text, row);
  const receipt = await ctx.adapter.send(
    ctx.chat,
    { text, replyTo, ...extra },
    { idempotencyKey: `${ctx.idempotencyKey}:${part}`, inbound: ctx.inbound, ...(lastPart ? { lastPart } : {}) },
  );
  crashPoint('after_send_before_outbox_commit');
  work.markSent(part, receipt.platformMessageId);
  ctx.onSent?.(part, receipt.platformMessageId, text);
  return receipt.platformMessageId;
}

/**
 * Progressive delivery while the agent streams; `finish(finalText)` completes the reply.
 * `moreFollows`: parts of the reply come after the text (its media), so no text part is the last.
 */
export interface ReplyWriter {
  onText(fullTextSoFar: string): Promise<void>;
  finish(finalText: string, moreFollows?: boolean): Promise<number>;
}

export function createReplyWriter(ctx: DeliveryContext): ReplyWriter {
  const mode = ctx.instance.settings.replyMode;
  const limits = limitsFor(ctx.adapter, ctx.instance);
  const replyTo = ctx.inbound?.replyToMessageId;
  if (mode === 'edit' && ctx.adapter.capabilities.edit && ctx.adapter.edit) return new EditWriter(ctx, limits, replyTo);
  if (mode === 'blocks') return new BlocksWriter(ctx, limits, replyTo);
  return {
    async onText() {},
    async finish(finalText, moreFollows = false) {
      const chunks = chunkText(finalText, limits);
      for (let i = 0; i < chunks.length; i++)
        await sendPart(
          ctx,
          i,
          chunks[i],
          i === 0 ? replyTo : undefined,
          undefined,
          !moreFollows && i === chunks.length - 1,
        );
      return chunks.length;
    },
  };
}

class BlocksWriter implements ReplyWriter {
  private splitter = new BlockSplitter();
  private streamed = '';
  private part = 0;
  constructor(
    private ctx: DeliveryContext,
    private limits: { maxChars: number; maxLines?: number },
    private replyTo?: string,
  ) {}

  /** `final`: these are the reply's last blocks (its last chunk is the reply's last part). */
  private async sendBlocks(blocks: string[], final = false) {
    const chunks = blocks.flatMap((b) => chunkText(b, this.limits));
    for (let i = 0; i < chunks.length; i++) {
      const last = final && i === chunks.length - 1;
      await sendPart(this.ctx, this.part, chunks[i], this.part === 0 ? this.replyTo : undefined, undefined, last);
      this.part++;
    }
  }
  async onText(full: string) {
    const fresh = full.slice(this.streamed.length);
    this.streamed = full;
    if (fresh) await this.sendBlocks(this.splitter.push(fresh));
  }
  async finish(finalText: string, moreFollows = false) {
    // A JSON agent sends no deltas; a streaming one may end with text the deltas lacked.
    if (finalText.length > this.streamed.length && finalText.startsWith(this.streamed)) await this.onText(finalText);
    await this.sendBlocks(this.splitter.flush(), !moreFollows);
    return this.part;
  }
}

/** Post once, edit at most once a second, roll over to a new message at the channel limit. */
class EditWriter implements ReplyWriter {
  private lastEditAt = -Infinity;
  private shown = new Map<number, string>(); // part → text visible on the platform
  private ids = new Map<number, string>();
  constructor(
    private ctx: DeliveryContext,
    private limits: { maxChars: number; maxLines?: number },
    private replyTo?: string,
  ) {
    for (const s of ctx.work.sentParts()) {
      this.ids.set(s.part, s.platformMessageId);
      this.shown.set(s.part, s.text);
    }
  }

  private async show(full: string) {
    const parts = chunkText(full, this.limits);
    for (let i = 0; i < parts.length; i++) {
      const text = parts[i];
      if (this.shown.get(i) === text) continue;
      const id = this.ids.get(i);
      if (!id) {
        this.ids.set(i, await sendPart(this.ctx, i, text, i === 0 ? this.replyTo : undefined));
      } else {
        await this.ctx.adapter.edit!(this.ctx.chat, id, text);
        this.ctx.work.setPartText(i, text);
      }
      this.shown.set(i, text);
    }
    return parts.length;
  }

  async onText(full: string) {
    const now = this.ctx.clock.monotonic();
    if (!full.trim() || now - this.lastEditAt < 1000) return;
    this.lastEditAt = now;
    await this.show(full);
  }

  async finish(finalText: string) {
    // Repair: whatever edits were skipped or dropped, the visible text ends equal to the reply.
    return this.show(finalText);
  }
}
