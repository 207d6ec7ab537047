// Hand-off of inbound messages. Any node accepts a webhook / API send and appends it to
// `stream:<shard>` in one Lua call that also dedupes by (instance, provider message id) — the
// answer is sent after that append. The owner reads its shards' streams (XREAD on its own
// connection) into its local, group-committed inbox; the conversation actors run as in embedded
// mode. When a message reaches a terminal state the owner deletes its stream entry (acks.ts). A
// stream therefore holds exactly the unfinished messages of its shard: a new owner reads it from
// the start, first closing local rows whose entries another owner already finished, then resumes
// the rest in stream (= arrival) order. Until that catch-up is done the shard's conversations wait.
// Entries are ingested one shard at a time; a passing failure (inbox overloaded, disk) retries that
// shard only. An entry that can never be ingested (malformed, not sealed by a node, or for an
// instance still unknown after a configuration pull and a 10 s grace for configuration lag) is
// dead-lettered (../dead-letters/). Deleting an instance removes its entries from the stream (its
// local rows go with the instance). Messages are sealed in the stream (entry.ts).
// Documented duplicate point: a reply sent by an owner that dies (or is fenced) before its XDEL
// commits is sent again by the next owner (same as the outbox point in embedded mode). The XDEL is
// sent as soon as the channel accepted the reply's last part (delivered()), not after the terminal
// commit, so that window is the channel's answer reaching this node plus one Redis write.
// Redis restarted without its data: the reader resumes (new entry ids are later in time); local
// unfinished rows are kept (a missing stream says nothing about who finished them).
import type Redis from 'ioredis';
import type { InboundMessage } from '../../core/message.ts';
import { newId } from '../../services/ids.ts';
import { conversationIdFor, type InboxRow, type IngestOutcome, TERMINAL } from '../../services/inbox.ts';
import { type ClusterContext, viaStore } from '../context.ts';
import type { DeadLetters } from '../dead-letters/dead-letters.ts';
import { APPEND } from '../lua.ts';
import type { ConversationShards } from '../membership/conversations.ts';
import type { Leases } from '../membership/leases.ts';
import type { Acks } from './acks.ts';
import {
  compareIds,
  type EntryKind,
  parseEntry,
  permanentIngestError,
  readWholeStream,
  STREAM_CONTEXT,
  streamIdOf,
} from './entry.ts';

/** A shard whose ingest failed is read again after this long. */
const INGEST_RETRY_MS = 500;
/** How long an entry for an unknown instance waits for its configuration before it is dead-lettered. */
const UNKNOWN_INSTANCE_GRACE_MS = 10_000;

export interface HandoffDeps {
  /** A blocking connection of its own (XREAD). */
  reader: Redis;
  leases: Leases;
  conversations: ConversationShards;
  acks: Acks;
  deadLetters: DeadLetters;
  /** A configuration pull that starts after the call (an entry may name an instance created a moment ago). */
  pullConfig(): Promise<void>;
}

export class Handoff {
  /** Per owned shard being read: the last entry handled. */
  private cursors = new Map<number, string>();
  /** Shards whose last ingest failed for a passing reason: not read again before this (monotonic) time. */
  private retryAt = new Map<number, number>();
  /** Entries of instances this node does not know (yet: configuration lag), per shard, in order. */
  private deferred = new Map<number, Map<string, { fields: string[]; instanceId: string }>>();
  private lastForcedPull = -Infinity;
  private lastDeferredPass = -Infinity;
  private catchUp: number[] = [];
  /**
   * Shards acquired whose catch-up has not finished: their conversations wait. A node that owned
   * the shard before (e.g. resumed after a pause) may hold unfinished rows another owner finished
   * meanwhile; only the catch-up can tell, so none of them may run (and send) before it.
   */
  private catchingUp = new Set<number>();
  private consumerDone: Promise<void> | null = null;
  /** Entries acknowledged when their reply was delivered, before their row's terminal state. */
  private ackedEarly = new Set<string>();

  constructor(
    private ctx: ClusterContext,
    private d: HandoffDeps,
  ) {}

  /** Any node: durable append for the owner, with dedupe, before the caller is answered. */
  async append(msg: InboundMessage, kind: EntryKind): Promise<IngestOutcome> {
    const { ctx } = this;
    const traceId = newId();
    const shard = ctx.shardOfInstance(msg.instanceId);
    // Sealed: message text never sits readable in Redis, and an entry a Redis writer adds (it cannot
    // seal) is never run — it would otherwise make this gateway call the agent and send replies.
    const payload = ctx.keys.seal(
      JSON.stringify({ ...msg, extra: { ...(msg.extra ?? {}), clusterTraceId: traceId } }),
      STREAM_CONTEXT,
    );
    const res = (await viaStore(() =>
      ctx.cmd.eval(
        APPEND,
        0,
        ctx.o.prefix,
        shard,
        `${msg.instanceId}:${msg.providerMessageId}`,
        traceId,
        ctx.o.dedupeTtlMs,
        payload,
        kind,
      ),
    )) as [number, string];
    const conversationId = conversationIdFor(msg.instanceId, msg.chat);
    if (res[0] === 1) {
      ctx.counters.appended++;
      return { status: 'accepted', traceId, conversationId, seq: 0, shed: false };
    }
    ctx.counters.duplicates++;
    return { status: 'duplicate', traceId: res[1], conversationId, seq: 0, shed: false };
  }

  /** A shard's conversations may run: owned, and its catch-up done. */
  ready(shard: number): boolean {
    return this.d.leases.ownsShard(shard) && !this.catchingUp.has(shard);
  }

  /** Shards just acquired: read from the start of their streams (catch-up first). */
  acquired(shards: number[]): void {
    for (const s of shards) this.catchingUp.add(s);
    this.catchUp.push(...shards);
  }

  /** The ownership period of a shard ended: its stream is not read any more. */
  ended(shard: number): void {
    this.cursors.delete(shard);
  }

  /**
   * The channel accepted a reply's last part: its entry leaves the stream now rather than after the
   * terminal commit, which shrinks the window in which a kill -9 makes the next owner send the reply
   * again. Nothing of the message is sent after this; should this node die before recording it, its
   * row is closed as handled elsewhere when it reads the shard again (the entry is gone).
   */
  delivered(msg: InboundMessage): void {
    const sid = msg.extra?.clusterStreamId;
    if (typeof sid !== 'string') return;
    // Bounded: a forgotten id only means its terminal ack is sent too (an XDEL of nothing).
    if (this.ackedEarly.size >= 10_000) this.ackedEarly.clear();
    this.ackedEarly.add(sid);
    void this.d.acks.ack(this.ctx.shardOfInstance(msg.instanceId), [sid]);
  }

  /** A message reached a terminal state: its entry leaves the stream (unless it did at delivery). */
  terminal(row: InboxRow): void {
    const sid = streamIdOf(row);
    if (!sid || this.ackedEarly.delete(sid)) return;
    void this.d.acks.ack(this.ctx.shardOfInstance(row.instance_id), [sid]);
  }

  /** Starts the reader (until the node stops). */
  start(): void {
    this.consumerDone = this.consume();
  }

  /** Resolves once the reader has ended (its connection is closed by then). */
  async done(): Promise<void> {
    await this.consumerDone?.catch(() => {});
  }

  private async consume(): Promise<void> {
    const { ctx } = this;
    const { leases } = this.d;
    while (!ctx.life.stopping) {
      try {
        while (this.catchUp.length) {
          const s = this.catchUp.shift()!;
          if (leases.ownsShard(s)) await this.catchUpShard(s);
          else this.catchingUp.delete(s);
        }
        await this.retryDeferred();
        const now = ctx.now();
        // A shard whose ingest failed waits out its retry time; the others go on.
        const shards = [...this.cursors.keys()].filter((s) => leases.ownsShard(s) && (this.retryAt.get(s) ?? 0) <= now);
        if (!shards.length) {
          await Bun.sleep(50);
          continue;
        }
        const res = (await this.d.reader.xread(
          'COUNT',
          500,
          'BLOCK',
          200,
          'STREAMS',
          ...shards.map((s) => ctx.k(`stream:${s}`)),
          ...shards.map((s) => this.cursors.get(s)!),
        )) as Array<[string, Array<[string, string[]]>]> | null;
        if (!res) continue;
        for (const [key, entries] of res) {
          const s = Number(key.slice(ctx.k('stream:').length));
          const o = leases.period(s);
          if (!o || !leases.ownsShard(s) || !this.cursors.has(s)) continue;
          const last = await this.ingestEntries(s, entries);
          // The same ownership period still (a lost and re-acquired shard is read from its start).
          if (last && leases.period(s) === o && this.cursors.has(s)) this.cursors.set(s, last);
        }
      } catch (err) {
        if (ctx.life.stopping) return;
        ctx.host.log.warn({ err: String(err) }, 'cluster: stream read failed; retrying');
        await Bun.sleep(200);
      }
    }
  }

  /** A newly owned shard: close rows another owner finished, then resume the stream from the start. */
  private async catchUpShard(shard: number): Promise<void> {
    try {
      await this.catchUpRows(shard);
    } finally {
      // Done, or the shard is gone (a later acquisition marks it again).
      this.catchingUp.delete(shard);
    }
    // Rows already in the local inbox (this node owned the shard before) resume too.
    if (!this.d.leases.ownsShard(shard)) return;
    const { pipeline } = this.ctx.host;
    for (const { conversationId, instanceId } of pipeline.inbox.conversationsWithWork()) {
      if (this.ctx.shardOfInstance(instanceId) === shard) pipeline.wake(conversationId);
    }
  }

  private async catchUpRows(shard: number): Promise<void> {
    const { ctx } = this;
    const { leases } = this.d;
    const o = leases.period(shard);
    // After each await: still the ownership period this catch-up started in (else the next
    // acquisition queued its own catch-up, or the shard is gone).
    const current = () => !!o && leases.period(shard) === o && leases.ownsShard(shard);
    // A stream is never deleted (XDEL leaves it empty): a missing one means a fresh Redis, and
    // then its absent entries say nothing about what other owners finished.
    const streamKnown = (await ctx.cmd.exists(ctx.k(`stream:${shard}`))) === 1;
    const entries = await readWholeStream(ctx.cmd, ctx.k(`stream:${shard}`));
    if (!current()) return;
    const present = new Set(entries.map((e) => e[0]));
    const { inbox } = ctx.host.pipeline;
    for (const row of inbox.openRows()) {
      if (ctx.shardOfInstance(row.instance_id) !== shard) continue;
      const sid = streamIdOf(row);
      if (!sid || present.has(sid) || !streamKnown) continue;
      inbox.closeHandledElsewhere(row);
      ctx.counters.handedOffRows++;
    }
    // On a failed ingest the shard is read again from the last entry handled (re-ingest is deduped).
    const last = entries.length ? await this.ingestEntries(shard, entries) : null;
    if (!current()) return;
    this.cursors.set(shard, last ?? '0-0');
  }

  /**
   * Writes stream entries into the local inbox, in order. Returns the id of the last entry handled
   * (ingested, deferred or dead-lettered) — the reader's new cursor — or null when none was.
   * A passing failure (inbox overloaded, disk) stops at that entry and retries this shard later;
   * other shards go on. An entry that can never be ingested (malformed, instance unknown past the
   * grace period) is dead-lettered and removed from the stream.
   */
  private async ingestEntries(shard: number, entries: Array<[string, string[]]>): Promise<string | null> {
    const { ctx } = this;
    const { inbox } = ctx.host.pipeline;
    let last: string | null = null;
    const batch: Array<{ id: string; msg: InboundMessage; kind: EntryKind }> = [];
    const flush = async (): Promise<boolean> => {
      if (!batch.length) return true;
      const results = await Promise.allSettled(batch.map((p) => inbox.ingest(p.msg, p.kind)));
      const done: string[] = [];
      for (let i = 0; i < batch.length; i++) {
        const r = results[i];
        if (r.status === 'rejected') {
          // A group commit fails as a whole: ingest one at a time to tell a bad entry from a bad disk.
          const one = await this.ingestOne(shard, batch[i]);
          if (one === 'retry') break;
          if (one === 'done') done.push(batch[i].id);
        } else if (r.value.shed) done.push(batch[i].id);
        else if (r.value.status === 'duplicate') {
          const row = inbox.get(r.value.seq);
          if (row && TERMINAL.includes(row.status)) done.push(batch[i].id);
        }
        ctx.counters.consumed++;
        last = batch[i].id;
      }
      const complete = last === batch[batch.length - 1].id;
      batch.length = 0;
      if (done.length) await this.d.acks.ack(shard, done);
      return complete;
    };
    try {
      for (const [id, fields] of entries) {
        const parsed = parseEntry(id, fields, ctx.keys);
        if (typeof parsed === 'string') {
          if (!(await flush())) return this.retryLater(shard, last);
          if (!(await this.d.deadLetters.record(shard, id, fields, parsed))) return last; // fenced: stop reading
          last = id;
          continue;
        }
        const instanceId = parsed.msg.instanceId;
        // Behind an entry set aside for the same instance: set aside too, so order is kept.
        const waiting = this.deferred.get(shard);
        if (waiting && [...waiting.values()].some((w) => w.instanceId === instanceId)) {
          waiting.set(id, { fields, instanceId });
          last = id;
          continue;
        }
        if (!ctx.host.instances.get(instanceId)) {
          if (!(await flush())) return this.retryLater(shard, last);
          const r = await this.unknownInstance(shard, id, fields, instanceId);
          if (r === 'fenced') return last;
          if (r === 'handled') {
            last = id;
            continue;
          }
        }
        this.d.conversations.remember(conversationIdFor(instanceId, parsed.msg.chat), instanceId);
        batch.push({ id, ...parsed });
      }
      if (!(await flush())) return this.retryLater(shard, last);
      return last;
    } catch (err) {
      ctx.host.log.warn({ err: String(err), shard }, 'cluster: stream ingest failed; retrying this shard');
      return this.retryLater(shard, last);
    }
  }

  private retryLater(shard: number, last: string | null): string | null {
    this.ctx.counters.ingestRetries++;
    this.retryAt.set(shard, this.ctx.now() + INGEST_RETRY_MS);
    return last;
  }

  /** One entry on its own after its group commit failed: 'done' (terminal), 'ok', 'dead' or 'retry'. */
  private async ingestOne(
    shard: number,
    p: { id: string; msg: InboundMessage; kind: EntryKind },
  ): Promise<'ok' | 'done' | 'dead' | 'retry'> {
    const { ctx } = this;
    const { inbox } = ctx.host.pipeline;
    try {
      const r = await inbox.ingest(p.msg, p.kind);
      if (r.shed) return 'done';
      if (r.status === 'duplicate') {
        const row = inbox.get(r.seq);
        return row && TERMINAL.includes(row.status) ? 'done' : 'ok';
      }
      return 'ok';
    } catch (err) {
      if (!permanentIngestError(err)) {
        ctx.host.log.warn({ err: String(err), shard }, 'cluster: local ingest failed; retrying this shard');
        return 'retry';
      }
      await this.d.deadLetters.record(
        shard,
        p.id,
        ['m', ctx.keys.seal(JSON.stringify(p.msg), STREAM_CONTEXT), 'k', p.kind],
        `ingest failed: ${String(err)}`,
      );
      return 'dead';
    }
  }

  /**
   * An entry for an instance this node does not know. Configuration may lag the message (the
   * instance was created on another node a moment ago): pull it, then keep the entry aside and
   * retry it for UNKNOWN_INSTANCE_GRACE_MS before dead-lettering it.
   */
  private async unknownInstance(
    shard: number,
    id: string,
    fields: string[],
    instanceId: string,
  ): Promise<'known' | 'handled' | 'fenced'> {
    const { ctx } = this;
    if (ctx.now() - this.lastForcedPull >= 500) {
      this.lastForcedPull = ctx.now();
      await this.d.pullConfig();
      if (ctx.host.instances.get(instanceId)) return 'known';
    }
    const age = Date.now() - Number(id.split('-')[0]);
    if (age < UNKNOWN_INSTANCE_GRACE_MS) {
      let d = this.deferred.get(shard);
      if (!d) this.deferred.set(shard, (d = new Map()));
      d.set(id, { fields, instanceId });
      return 'handled';
    }
    return (await this.d.deadLetters.record(shard, id, fields, `instance ${instanceId} unknown on this node`))
      ? 'handled'
      : 'fenced';
  }

  /** Entries set aside for an unknown instance: ingested once it is known, dead-lettered after the grace. */
  private async retryDeferred(): Promise<void> {
    if (!this.deferred.size || this.ctx.now() - this.lastDeferredPass < 250) return;
    this.lastDeferredPass = this.ctx.now();
    for (const [shard, d] of [...this.deferred]) {
      this.deferred.delete(shard);
      if (!this.d.leases.ownsShard(shard)) continue; // the next owner reads them from the stream
      const last = await this.ingestEntries(
        shard,
        [...d].map(([id, w]) => [id, w.fields] as [string, string[]]),
      );
      // After a passing failure, what was not handled goes back behind what was set aside again.
      const rest = [...d].filter(([id]) => last === null || compareIds(id, last) > 0);
      if (rest.length) this.deferred.set(shard, new Map([...(this.deferred.get(shard) ?? []), ...rest]));
    }
  }

  /** A deleted instance: its entries still in the stream (unread or unfinished) are removed. */
  async dropEntriesOf(instanceId: string): Promise<void> {
    const { ctx } = this;
    const { leases } = this.d;
    const shard = ctx.shardOfInstance(instanceId);
    const d = this.deferred.get(shard);
    if (d) for (const [id, w] of d) if (w.instanceId === instanceId) d.delete(id);
    const o = leases.period(shard);
    if (!o || !leases.ownsShard(shard)) return; // the owner does it
    const ids: string[] = [];
    for (const [id, fields] of await readWholeStream(ctx.cmd, ctx.k(`stream:${shard}`))) {
      const p = parseEntry(id, fields, ctx.keys);
      if (typeof p !== 'string' && p.msg.instanceId === instanceId) ids.push(id);
    }
    if (!ids.length) return;
    await this.d.acks.ack(shard, ids, o.epoch);
    ctx.counters.droppedForDeletedInstance += ids.length;
    ctx.host.log.info(
      { node: ctx.node, shard, instanceId, entries: ids.length },
      'cluster: stream entries of a deleted instance removed',
    );
  }
}
