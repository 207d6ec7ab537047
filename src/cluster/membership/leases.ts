// Membership and shard leases.
// - Membership: `node:<id>` heartbeat key with a TTL of one lease, plus a `nodes` set; the live
//   list is the members whose heartbeat key exists (one Lua call heartbeats and lists).
// - Shards (CLUSTER_SHARDS, default 256) go to live nodes by rendezvous hashing (shards.ts). An
//   instance AND all of its conversations live on the shard of the instance id, so the node that
//   owns the channel connection (Baileys socket, discord.js client, Slack Socket Mode) is also the
//   one that runs the conversations and sends — there is never a cross-node send.
// - Leases: `lease:<shard>` (SET NX PX) + fencing epoch `epoch:<shard>` (INCR), acquired in one
//   Lua call for many shards and renewed in ONE call for all owned shards, on a dedicated
//   connection with maxRetriesPerRequest 1, no offline queue and a command timeout of one renew
//   interval (a Redis that stops answering with the TCP connection up fails the call instead of
//   holding every later tick). Self-fence: ownership is valid until (monotonic time the renewal
//   was SENT) + lease − margin, checked synchronously on every use (conversation scheduling,
//   between messages, before every channel send: fence.ts), and a timer at the earliest
//   validUntil fences expired shards without waiting for a tick: their in-flight turns are aborted
//   and their channel connections closed before the lease can pass to another node.
// - Graceful hand-off (release): the turn in flight finishes and commits (up to 10 s), channel
//   connections close, the lease is released and announced; the others take the shard at that
//   notice. While leaving, leases held are still renewed (renew-only ticks) until every release is done.
// - Redis restarted without its data: the first heartbeat on an empty Redis starts a quiet period
//   of one lease in which no shard is acquired; a holder still inside its self-fenced validity
//   reclaims its lease and epoch (RENEW sees both keys missing), so ownership never overlaps.
import type Redis from 'ioredis';
import type { Timer } from '../../../actors/runtime/clock.ts';
import type { Histogram } from '../../engine/prometheus.ts';
import type { ClusterContext } from '../context.ts';
import { ACQUIRE, HEARTBEAT, RELEASE, RENEW } from '../lua.ts';
import type { ConversationShards } from './conversations.ts';
import { desiredShards } from './shards.ts';

/** One ownership period of a shard (a new acquisition is a new object, with a new epoch). */
export interface Owned {
  epoch: number;
  /** Monotonic ms after which this node must not act on the shard. */
  validUntil: number;
  acquiredAt: number;
  draining: boolean;
}

export interface LeaseHooks {
  /** This node's heartbeat info (JSON), written with every heartbeat. */
  heartbeatInfo(): string;
  /** Shards just acquired (their instances already started): their streams are to be caught up. */
  acquired(shards: number[]): void;
  /** An ownership period ended (lost or released): its stream reading stops. */
  ended(shard: number): void;
  /** Commits of finished entries that Redis did not answer, retried. */
  retryAcks(): Promise<void>;
}

export class Leases {
  private owned = new Map<number, Owned>();
  /** Last epoch held per shard, kept after losing it so late writes are sent (and rejected). */
  private lastEpoch = new Map<number, number>();
  private live: string[] = [];
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Fires at the earliest validUntil of the owned shards, so fencing never waits for a tick. */
  private fenceTimer: Timer | null = null;
  private ticking = false;
  private tickAgain = false;
  private renewSeconds: Histogram;
  private readonly marginMs: number;

  constructor(
    private ctx: ClusterContext,
    /** Leases: a renewal must never be replayed late from an offline queue, nor hang. */
    private lease: Redis,
    private conversations: ConversationShards,
    private hooks: LeaseHooks,
  ) {
    this.marginMs = Math.max(100, Math.floor(ctx.o.leaseMs / 5));
    const m = ctx.host.pipeline.metrics;
    this.renewSeconds = m.histogram(
      'switchboard_cluster_lease_renew_seconds',
      'Round trip of the one-call renewal of all owned shard leases',
      [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    );
    m.gauge(
      'switchboard_cluster_owned_shards',
      'Shards this node holds a valid lease on',
      () => [...this.owned.keys()].filter((s) => this.ownsShard(s)).length,
    );
    m.gauge(
      'switchboard_cluster_live_nodes',
      'Live cluster members seen at the last heartbeat',
      () => this.live.length,
    );
  }

  /** Live members at the last heartbeat. */
  liveNodes(): readonly string[] {
    return this.live;
  }

  /** Synchronous self-fence check: true only while the lease is certainly still ours. */
  ownsShard(shard: number): boolean {
    const o = this.owned.get(shard);
    return !!o && !o.draining && this.ctx.now() < o.validUntil;
  }

  /** The lease is still certainly ours (also while draining: the turn in flight may still send). */
  leaseValid(shard: number): boolean {
    const o = this.owned.get(shard);
    return !!o && this.ctx.now() < o.validUntil;
  }

  /** The current ownership period of a shard (compared by identity across awaits), if any. */
  period(shard: number): Owned | undefined {
    return this.owned.get(shard);
  }

  /** The epoch a commit is sent with: the current one, else the last held (a late write, to be rejected). */
  ackEpoch(shard: number): number {
    return this.owned.get(shard)?.epoch ?? this.lastEpoch.get(shard) ?? 0;
  }

  /** First tick, then one every renew interval. */
  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.ctx.renewMs);
  }

  async tick(): Promise<void> {
    const { ctx } = this;
    if (ctx.life.closed) return;
    if (this.ticking) {
      // A notice (a node left, a shard was released) must not wait for the next interval.
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    try {
      if (ctx.life.stopping) {
        // Leaving: renew only, so a drain that outlasts one lease is not self-fenced (and re-run by the next owner).
        await this.renew();
        this.fenceExpired();
        return;
      }
      const info = this.hooks.heartbeatInfo();
      this.live = (
        (await this.lease.eval(HEARTBEAT, 0, ctx.o.prefix, ctx.node, ctx.o.leaseMs, info)) as string[]
      ).sort();
      await this.renew();
      this.fenceExpired();
      if (ctx.life.stopping) return;
      const want = desiredShards(
        ctx.node,
        this.live.includes(ctx.node) ? this.live : [...this.live, ctx.node],
        ctx.o.shards,
      );
      const toAcquire = [...want].filter((s) => !this.owned.has(s));
      if (toAcquire.length) await this.acquire(toAcquire);
      for (const [s, o] of this.owned) if (!want.has(s) && !o.draining) void this.release(s, 'rebalance');
      await this.hooks.retryAcks();
    } catch (err) {
      ctx.host.log.warn({ err: String(err) }, 'cluster: tick failed');
      this.fenceExpired();
    } finally {
      this.ticking = false;
      if (this.tickAgain && !ctx.life.stopping) {
        this.tickAgain = false;
        void this.tick();
      }
    }
  }

  private async renew(): Promise<void> {
    const { ctx } = this;
    const held = [...this.owned.entries()].filter(([, o]) => ctx.now() < o.validUntil);
    if (!held.length) return;
    const sentAt = ctx.now();
    const args: Array<string | number> = [ctx.o.prefix, ctx.node, ctx.o.leaseMs];
    for (const [s, o] of held) args.push(s, o.epoch);
    const res = (await this.lease.eval(RENEW, 0, ...args)) as number[];
    this.renewSeconds.observe((ctx.now() - sentAt) / 1000);
    held.forEach(([s, o], i) => {
      if (res[i] === 1) o.validUntil = sentAt + ctx.o.leaseMs - this.marginMs;
      else void this.lose(s, 'lease taken over');
    });
    this.scheduleFence();
  }

  private fenceExpired(): void {
    for (const [s, o] of this.owned)
      if (this.ctx.now() >= o.validUntil) void this.lose(s, 'lease not renewed in time (self-fence)');
    this.scheduleFence();
  }

  /** One timer at the earliest validUntil: a shard whose renewal never came back is fenced on time. */
  private scheduleFence(): void {
    this.fenceTimer?.cancel();
    this.fenceTimer = null;
    if (this.ctx.life.closed || !this.owned.size) return;
    let earliest = Infinity;
    for (const o of this.owned.values()) earliest = Math.min(earliest, o.validUntil);
    this.fenceTimer = this.ctx.host.clock.setTimeout(
      () => {
        this.fenceTimer = null;
        this.fenceExpired();
      },
      Math.max(0, earliest - this.ctx.now()) + 1,
    );
  }

  private async acquire(shards: number[]): Promise<void> {
    const { ctx } = this;
    const { host } = ctx;
    const sentAt = ctx.now();
    const res = (await this.lease.eval(ACQUIRE, 0, ctx.o.prefix, ctx.node, ctx.o.leaseMs, ...shards)) as number[];
    const gained: number[] = [];
    shards.forEach((s, i) => {
      if (!res[i]) return;
      this.owned.set(s, {
        epoch: res[i],
        validUntil: sentAt + ctx.o.leaseMs - this.marginMs,
        acquiredAt: Date.now(),
        draining: false,
      });
      this.lastEpoch.set(s, res[i]);
      ctx.counters.acquired++;
      gained.push(s);
    });
    if (!gained.length) return;
    this.scheduleFence();
    host.log.info({ node: ctx.node, shards: gained.length }, 'cluster: shards acquired');
    const set = new Set(gained);
    // Channel connections first, so the resumed conversations can send at once.
    await Promise.all(
      host.instances
        .list()
        .filter((i) => set.has(ctx.shardOfInstance(i.id)))
        .map((i) => host.pipeline.syncInstance(i)),
    );
    this.hooks.acquired(gained);
  }

  /** Lost without a hand-off (fenced or taken over): abort at once, close connections. */
  private async lose(shard: number, reason: string): Promise<void> {
    const { ctx } = this;
    if (!this.owned.has(shard)) return;
    this.owned.delete(shard);
    this.hooks.ended(shard);
    ctx.counters.fenced++;
    ctx.host.log.warn({ node: ctx.node, shard, reason }, 'cluster: shard lost');
    for (const key of this.conversations.activeOf(shard)) {
      ctx.host.pipeline.cancelConversation(key);
      void this.retire(key);
    }
    await this.stopInstancesOf(shard, 'shard lost');
  }

  /** A cancelled actor stays stopped for good: drop it once idle so a later owner period gets a fresh one. */
  private async retire(key: string): Promise<void> {
    const { pipeline } = this.ctx.host;
    const sup = pipeline.conversations;
    for (let i = 0; i < 500 && sup.has(key); i++) {
      if (await sup.passivate(key)) {
        // Owned again meanwhile: a wake that reached the cancelled actor was lost; repeat it.
        pipeline.wake(key);
        return;
      }
      await Bun.sleep(20);
    }
  }

  private async stopInstancesOf(shard: number, reason: string): Promise<void> {
    const { host } = this.ctx;
    await Promise.all(
      host.instances
        .list()
        .filter((i) => this.ctx.shardOfInstance(i.id) === shard)
        .map((i) => host.pipeline.stopInstance(i.id, reason)),
    );
  }

  /** Graceful hand-off: the turn in flight finishes and commits, connections close, then the lease goes. */
  private async release(shard: number, why: string, maxWaitMs = 10_000): Promise<void> {
    const { ctx } = this;
    const o = this.owned.get(shard);
    if (!o || o.draining) return;
    o.draining = true;
    const deadline = ctx.now() + maxWaitMs;
    const sup = ctx.host.pipeline.conversations;
    for (;;) {
      const busy = this.conversations.activeOf(shard);
      let left = 0;
      for (const k of busy) if (sup.has(k) && !(await sup.passivate(k)) && sup.has(k)) left++;
      if (left === 0 || ctx.now() > deadline || ctx.now() >= o.validUntil) break;
      await Bun.sleep(20);
    }
    // Lost while draining (lose() cleaned up, and the shard may be owned again under a new epoch):
    // nothing here is this release's to touch any more.
    if (this.owned.get(shard) !== o) return;
    await this.stopInstancesOf(shard, 'handed off');
    await this.hooks.retryAcks();
    try {
      await this.lease.eval(RELEASE, 0, ctx.o.prefix, ctx.node, shard, o.epoch);
    } catch {
      /* the lease expires on its own */
    }
    if (this.owned.get(shard) !== o) return;
    this.owned.delete(shard);
    this.hooks.ended(shard);
    ctx.counters.released++;
    ctx.host.log.info({ node: ctx.node, shard, why }, 'cluster: shard released');
    ctx.cmd.publish(ctx.k('notice'), JSON.stringify({ type: 'released', node: ctx.node, shard })).catch(() => {});
  }

  /**
   * Starts leaving: waits (bounded) for a tick in flight, then ticks only renew the leases still
   * held, until every release is done.
   */
  async beginLeaving(): Promise<void> {
    const { ctx } = this;
    // Bounded: every call of a tick has a command timeout, but stop must not depend on it.
    const waitUntil = ctx.now() + ctx.o.leaseMs;
    while (this.ticking && ctx.now() < waitUntil) await Bun.sleep(5);
    ctx.life.stopping = true;
  }

  /** Out of the member list at once (the others count this node's shards as theirs), and said so. */
  async announce(type: 'leaving' | 'left'): Promise<void> {
    const { ctx } = this;
    try {
      await ctx.cmd
        .multi()
        .del(ctx.k(`node:${ctx.node}`))
        .srem(ctx.k('nodes'), ctx.node)
        .exec();
      await ctx.cmd.publish(ctx.k('notice'), JSON.stringify({ type, node: ctx.node }));
    } catch {
      /* the heartbeat expires on its own */
    }
  }

  /** Hands every shard off (see release), then stops the periodic tick. */
  async releaseAll(): Promise<void> {
    await Promise.all([...this.owned.keys()].map((s) => this.release(s, 'shutdown')));
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** No timer is armed again. */
  close(): void {
    this.ctx.life.closed = true;
    this.fenceTimer?.cancel();
  }
}
