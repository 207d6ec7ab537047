// The commit of finished stream entries: XDEL in a Lua call that checks lease holder + epoch
// (fail closed: rejected when this node lost the shard). Acks Redis did not answer are kept by
// (shard, epoch) and retried every tick. Bounded by what this node can finish without Redis: only
// entries it read from a stream (so ≤ its inbox backlog bound while Redis is away) — and by
// MAX_PENDING_ACK_IDS in any case (a dropped ack is redone by the next catch-up on this node; on
// another node the message runs again: the documented duplicate point).
import type Redis from 'ioredis';
import type { ClusterContext } from '../context.ts';
import { ACK } from '../lua.ts';

/** Unacknowledged stream entry ids kept for retry while Redis does not answer. */
const MAX_PENDING_ACK_IDS = 200_000;

export class Acks {
  private pending = new Map<string, { shard: number; epoch: number; ids: Set<string> }>();
  private pendingIds = 0;

  constructor(
    private ctx: ClusterContext,
    /** The epoch a commit of this shard is sent with (the last held one after losing it). */
    private epochOf: (shard: number) => number,
    /**
     * A connection of their own: until an ack lands, a kill -9 of this node makes the next owner
     * send the reply again, so it must not queue behind the appends of a webhook flood.
     */
    private redis: Redis = ctx.cmd,
  ) {}

  async ack(shard: number, ids: string[], epoch = this.epochOf(shard)): Promise<void> {
    const { ctx } = this;
    try {
      const ok = (await this.redis.eval(ACK, 0, ctx.o.prefix, ctx.node, shard, epoch, ...ids)) as number;
      if (ok === 1) ctx.counters.acked += ids.length;
      else {
        ctx.counters.fencedWrites++;
        ctx.host.log.warn(
          { node: ctx.node, shard, epoch },
          'cluster: write rejected by the epoch check (shard owned elsewhere)',
        );
      }
    } catch {
      const key = `${shard}:${epoch}`;
      let p = this.pending.get(key);
      if (!p) this.pending.set(key, (p = { shard, epoch, ids: new Set() }));
      for (const id of ids)
        if (!p.ids.has(id)) {
          p.ids.add(id);
          this.pendingIds++;
        }
      while (this.pendingIds > MAX_PENDING_ACK_IDS) {
        const [oldestKey, oldest] = this.pending.entries().next().value!;
        this.pending.delete(oldestKey);
        this.pendingIds -= oldest.ids.size;
        ctx.host.log.warn(
          { shard: oldest.shard, entries: oldest.ids.size },
          'cluster: unacknowledged stream entries dropped from the retry list (bound reached)',
        );
      }
    }
  }

  async retry(): Promise<void> {
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.pendingIds = 0;
    for (const a of pending) await this.ack(a.shard, [...a.ids], a.epoch);
  }
}
