// Cluster mode (active when REDIS_URL is set): the Cluster facade composes the parts below and is
// the one object the gateway and the API hold. Design as built, by concern:
//
// - Storage: every node keeps its OWN SQLite file (DATABASE_PATH per node). Redis carries
//   ownership, the durable hand-off of inbound messages, configuration replication and live deltas.
// - Membership, shard leases, fencing epochs, self-fence, graceful release: membership/leases.ts
//   (shard arithmetic: membership/shards.ts; the fence on channel sends: membership/fence.ts).
// - Hand-off of messages through `stream:<shard>` (append, owner's reader, catch-up, acks):
//   handoff/. Entries that can never be ingested: dead-letters/.
// - Configuration: config/config-sync.ts (replicated rows, snapshot + log, ≤ ~pollMs latency).
// - Live deltas: live.ts (pub/sub with per-origin sequence; gap → resync of running turns).
// - Rate limits: RedisRateLimiter (rate-limit.ts) replaces the gateway's limiter — one token bucket
//   per (class, key id) in Redis, own connection; Redis down → fail open to this node's buckets.
//   Bootstrap keys (SWITCHBOARD_API_KEY) have a per-node id, so they are limited per node.
// - REST reads are GATHERED, not replicated: peers/ (who the peers are, by-id reads, webhook
//   forwarding, gathered lists merged with one cursor: gather.ts, gather-persons.ts, and gathered.ts,
//   the wrapper a route declares a gathered read with).
//   Persons: link/unlink decisions form one shared log (persons/person-log.ts).
// - Graceful shutdown: leave the membership first (the others now count this node's shards as
//   theirs), drain each owned shard (turn in flight finishes, commits; up to 10 s), close its
//   channel connections, release the lease and announce it; the others take each shard at that
//   notice. Leases held are still renewed (renew-only ticks) until every release is done.
// - Redis restarted without its data: ownership never overlaps (quiet period, reclaim: see
//   membership/leases.ts); the stream reader resumes; configuration is re-seeded from the
//   surviving nodes; pub/sub re-subscribes and running turns are resynced to remote WebSocket
//   clients. Messages appended but not yet read by their owner are lost with such a Redis: run
//   Redis with AOF (appendfsync everysec or always) for durable hand-off.
// - WhatsApp (Baileys) login state (whatsapp_auth) is replicated like configuration: only the
//   shard owner writes it, and the next owner reopens the same linked session after a failover.
//   A write still in flight when the owner dies may be missing on the next owner (last writer
//   wins per row); Baileys then renegotiates that key.
// - Secrets: CLUSTER_SECRET (required in cluster mode, the same on every node) never goes to
//   Redis. Keys derived from it (crypto.ts) seal every configuration row, dead-letter record and
//   hand-off stream message in Redis and sign peer requests; its fingerprint in Redis makes a node
//   with another secret fail its start (and one that meets it later step down). A stream entry not
//   sealed by a node (written into Redis by anyone else) is never run: it is dead-lettered.
// - The gateway is reached through ClusterHost (host.ts), never imported.
// - Metrics: switchboard_cluster_lease_renew_seconds (histogram), switchboard_cluster_owned_shards,
//   switchboard_cluster_live_nodes.

import { hostname } from 'node:os';
import Redis from 'ioredis';
import type { InboundMessage } from '../core/message.ts';
import type { Placement } from '../engine/placement.ts';
import { newId } from '../services/ids.ts';
import type { IngestOutcome } from '../services/inbox.ts';
import { limitsFromSettings } from '../services/rate-limit.ts';
import { configApplied } from './config/applied.ts';
import { ConfigSync } from './config/config-sync.ts';
import { type ClusterContext, type ClusterCounters, type ClusterOptions, newCounters } from './context.ts';
import { ClusterKeys } from './crypto.ts';
import { DeadLetters, type DeadLetterView } from './dead-letters/dead-letters.ts';
import { Acks } from './handoff/acks.ts';
import { Handoff } from './handoff/handoff.ts';
import { type LocalDeadLetter, replayThroughOwner } from './handoff/replay.ts';
import type { ClusterHost } from './host.ts';
import { LiveRelay } from './live.ts';
import { ConversationShards } from './membership/conversations.ts';
import { fenceAdapter } from './membership/fence.ts';
import { Leases } from './membership/leases.ts';
import { shardOf } from './membership/shards.ts';
import { type ClusterStatus, readStatus } from './membership/status.ts';
import { Peers } from './peers/peers.ts';
import type { Peer, PeerDirectory } from './peers/protocol.ts';
import { PersonLog } from './persons/person-log.ts';
import { RedisRateLimiter } from './rate-limit.ts';

export type { ClusterOptions } from './context.ts';
export type { DeadLetterView } from './dead-letters/dead-letters.ts';
export type { ClusterHost } from './host.ts';
export type { ClusterStatus } from './membership/status.ts';

export class Cluster implements PeerDirectory {
  readonly node: string;
  /** The shared log of person link/unlink decisions. */
  readonly personLog: PersonLog;
  readonly rateLimiter: RedisRateLimiter;
  readonly counters: ClusterCounters = newCounters();
  private lease: Redis;
  private cmd: Redis;
  private acker: Redis;
  private sub: Redis;
  private reader: Redis;
  private ctx: ClusterContext;
  private config: ConfigSync;
  private relay: LiveRelay;
  private conversations: ConversationShards;
  private leases: Leases;
  private acks: Acks;
  private deadLetterList: DeadLetters;
  private handoff: Handoff;
  private peerNodes: Peers;

  constructor(
    private host: ClusterHost,
    o: ClusterOptions,
  ) {
    this.node = o.nodeId;
    // Heartbeat and renewal every lease/3, at most 500 ms: a survivor notices an expired lease
    // within 500 ms whatever the lease, and a node has several renewals before its own validity ends.
    const renewMs = Math.max(50, Math.min(500, Math.floor(o.leaseMs / 3)));
    const base = { lazyConnect: true, connectTimeout: 2000 };
    // Leases: a renewal must never be replayed late from an offline queue, and a Redis that stops
    // answering with the connection up must not hold a tick (and so every later renewal) forever.
    this.lease = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      commandTimeout: renewMs,
      connectionName: `sb-lease-${this.node}`,
    });
    // Appends, acks, config, shutdown steps: an unanswered call fails (webhook → 503) instead of hanging.
    this.cmd = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: 2,
      commandTimeout: 5000,
      connectionName: `sb-cmd-${this.node}`,
    });
    // Acks of finished entries: same settings as cmd, but never queued behind its appends (acks.ts).
    this.acker = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: 2,
      commandTimeout: 5000,
      connectionName: `sb-ack-${this.node}`,
    });
    this.sub = new Redis(o.redisUrl, { ...base, connectionName: `sb-sub-${this.node}` });
    this.reader = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: null,
      connectionName: `sb-reader-${this.node}`,
    });
    for (const c of [this.lease, this.cmd, this.acker, this.sub, this.reader]) c.on('error', () => {});
    const keys = new ClusterKeys(o.secret);
    this.ctx = {
      host,
      o,
      node: this.node,
      keys,
      cmd: this.cmd,
      renewMs,
      counters: this.counters,
      life: { stopping: false, closed: false },
      k: (s) => o.prefix + s,
      now: () => host.clock.monotonic(),
      shardOfInstance: (id) => this.shardOfInstance(id),
    };
    const ctx = this.ctx;
    this.conversations = new ConversationShards(ctx);
    this.leases = new Leases(ctx, this.lease, this.conversations, {
      heartbeatInfo: () => this.peerNodes.heartbeatInfo(),
      acquired: (shards) => this.handoff.acquired(shards),
      ended: (shard) => this.handoff.ended(shard),
      retryAcks: () => this.acks.retry(),
    });
    this.acks = new Acks(ctx, (shard) => this.leases.ackEpoch(shard), this.acker);
    this.deadLetterList = new DeadLetters(ctx, (shard) => this.leases.period(shard)?.epoch);
    this.config = new ConfigSync({
      db: host.db,
      redis: this.cmd,
      prefix: o.prefix,
      node: this.node,
      log: host.log,
      keys,
      applied: configApplied(host, (id) => this.handoff.dropEntriesOf(id)),
      // It could read nothing the others write, and they nothing it seals: it must not own shards.
      foreignSecret: () => {
        this.host.ready = false;
        void this.stop();
      },
    });
    this.handoff = new Handoff(ctx, {
      reader: this.reader,
      leases: this.leases,
      conversations: this.conversations,
      acks: this.acks,
      deadLetters: this.deadLetterList,
      pullConfig: () => this.config.pullFresh(),
    });
    this.peerNodes = new Peers(ctx, () => this.leases.liveNodes());
    this.relay = new LiveRelay(host.pipeline.hub, this.cmd, `${o.prefix}live`, this.node);
    this.personLog = new PersonLog({ redis: this.cmd, prefix: o.prefix, persons: host.persons, log: host.log });
    this.rateLimiter = new RedisRateLimiter({
      redisUrl: o.redisUrl,
      prefix: o.prefix,
      node: this.node,
      limitOf: limitsFromSettings(host.settings),
      log: host.log,
    });
  }

  shardOfInstance(instanceId: string): number {
    return shardOf(instanceId, this.ctx.o.shards);
  }

  /** Synchronous self-fence check: true only while the lease is certainly still ours. */
  ownsShard(shard: number): boolean {
    return this.leases.ownsShard(shard);
  }

  ownsInstance(instanceId: string): boolean {
    return this.ownsShard(this.shardOfInstance(instanceId));
  }

  /** The lease is still certainly ours (also while draining: the turn in flight may still send). */
  leaseValid(instanceId: string): boolean {
    return this.leases.leaseValid(this.shardOfInstance(instanceId));
  }

  /** Owned, and its shard caught up (an old row must not run before the catch-up). */
  ownsConversation(conversationId: string): boolean {
    const inst = this.conversations.instanceOf(conversationId);
    return !!inst && this.handoff.ready(this.shardOfInstance(inst));
  }

  async start(): Promise<void> {
    const { host } = this;
    await Promise.all([
      this.lease.connect(),
      this.cmd.connect(),
      this.acker.connect(),
      this.sub.connect(),
      this.reader.connect(),
      this.rateLimiter.connect(),
    ]);
    await this.config.checkSecret().catch((err: unknown) => {
      // Another secret: nothing was touched; leave no connection behind.
      for (const c of [this.lease, this.cmd, this.acker, this.sub, this.reader]) c.disconnect();
      this.rateLimiter.close();
      throw err;
    });
    host.rateLimiter = this.rateLimiter;
    // Before any lease is taken: from here on the pipeline runs only what this node owns.
    host.pipeline.usePlacement(this.placement());
    host.instances.onChange((c) => {
      if (c.type === 'deleted')
        void this.handoff
          .dropEntriesOf(c.instance.id)
          .catch((err) => host.log.warn({ err: String(err) }, "cluster: removing a deleted instance's entries failed"));
    });

    this.sub.on('message', (channel: string, message: string) => {
      if (channel === this.ctx.k('live')) this.relay.receive(message);
      else if (channel === this.ctx.k('cfg')) void this.config.pull();
      else if (channel === this.ctx.k('notice')) void this.leases.tick();
    });
    // Registered after the first connect: every 'ready' seen here is a re-connection.
    this.sub.on('ready', () => this.relay.resubscribed());
    await this.sub.subscribe(this.ctx.k('live'), this.ctx.k('cfg'), this.ctx.k('notice'));
    await this.config.start(Math.min(500, this.ctx.renewMs));
    // Links decided while this node was away apply before its first message names a person.
    await this.personLog.catchUp();
    this.personLog.start();
    await this.leases.start();
    this.handoff.start();
    await this.cmd.publish(this.ctx.k('notice'), JSON.stringify({ type: 'joined', node: this.node }));
  }

  /** The pipeline's placement in cluster mode: shard ownership, hand-off ingress, the send fence, acks. */
  private placement(): Placement {
    return {
      ownsConversation: (id) => this.ownsConversation(id),
      ownsInstance: (id) => this.ownsInstance(id),
      ingest: (msg, kind) => this.append(msg, kind),
      fenceAdapter: (instanceId, adapter) =>
        fenceAdapter(
          adapter,
          () => this.leaseValid(instanceId),
          () => this.counters.blockedSends++,
          (inbound) => this.handoff.delivered(inbound),
        ),
      finished: (row) => this.handoff.terminal(row),
    };
  }

  /** Any node: durable append for the owner, with dedupe, before the caller is answered. */
  append(msg: InboundMessage, kind: 'inbound' | 'send'): Promise<IngestOutcome> {
    return this.handoff.append(msg, kind);
  }

  /** Replays a message this node dead-lettered by handing it to its shard's owner. */
  replayInboxDeadLetter(d: LocalDeadLetter): Promise<{ traceId: string; status: 'pending' }> {
    return replayThroughOwner(this.host.pipeline, (msg, kind) => this.append(msg, kind), d);
  }

  // Dead letters (admin API).

  /** Every record, newest first, with secrets masked. */
  deadLetters(): Promise<DeadLetterView[]> {
    return this.deadLetterList.list();
  }

  replayDeadLetter(id: string): Promise<{ id: string; shard: number; entryId: string }> {
    return this.deadLetterList.replay(id);
  }

  deleteDeadLetter(id: string): Promise<void> {
    return this.deadLetterList.delete(id);
  }

  // Peers and requests across nodes.

  /** Called once the HTTP server listens (port 0 → the real port), unless CLUSTER_ADVERTISE_URL is set. */
  advertisePort(port: number): void {
    this.peerNodes.advertisePort(port);
  }

  peerHeaders(method: string, pathAndQuery: string): Record<string, string> {
    return this.peerNodes.peerHeaders(method, pathAndQuery);
  }

  verifyPeer(request: Request): boolean {
    return this.peerNodes.verifyPeer(request);
  }

  peers(): Promise<Peer[]> {
    return this.peerNodes.peers();
  }

  peerList(): Promise<{ peers: Peer[]; untrusted: number }> {
    return this.peerNodes.peerList();
  }

  fromPeers(request: Request, timeoutMs?: number): Promise<unknown | null> {
    return this.peerNodes.fromPeers(request, timeoutMs);
  }

  ownerUrl(instanceId: string): Promise<string | null> {
    return this.peerNodes.ownerUrl(instanceId);
  }

  forwardToOwner(instanceId: string, request: Request, rawBody: string): Promise<Response | null> {
    return this.peerNodes.forwardToOwner(instanceId, request, rawBody);
  }

  // Status and shutdown.

  status(): Promise<ClusterStatus> {
    return readStatus(this.ctx, {
      ...this.counters,
      configPublished: this.config.counters.published,
      configApplied: this.config.counters.applied,
      configRejected: this.config.counters.rejected,
      personLogSkipped: this.personLog.counters.skipped,
      liveGaps: this.relay.counters.gaps,
      liveResyncs: this.relay.counters.resyncs,
    });
  }

  /** Graceful: hand every shard off, announce, leave. */
  async stop(): Promise<void> {
    if (this.ctx.life.stopping) return;
    await this.leases.beginLeaving();
    // Leave the membership FIRST: the others compute this node's shards as theirs at once and
    // take each one the moment its lease is released (notice below), instead of after a heartbeat TTL.
    await this.leases.announce('leaving');
    await this.leases.releaseAll();
    this.config.stop();
    this.personLog.stop();
    await this.config.publish();
    await this.leases.announce('left');
    this.leases.close();
    this.reader.disconnect();
    await this.handoff.done();
    for (const c of [this.lease, this.cmd, this.acker, this.sub]) c.disconnect();
    this.rateLimiter.close();
  }
}

export function defaultNodeId(): string {
  return `${hostname()}-${process.pid}-${newId().slice(0, 6)}`;
}

/** Starts cluster mode for a gateway (called from gateway.start when REDIS_URL is set). */
export async function startCluster(host: ClusterHost): Promise<Cluster> {
  const c = host.config;
  const cluster = new Cluster(host, {
    redisUrl: c.redisUrl!,
    nodeId: c.cluster.nodeId ?? defaultNodeId(),
    prefix: c.cluster.keyPrefix,
    shards: c.cluster.shards,
    leaseMs: c.cluster.leaseMs,
    dedupeTtlMs: 7 * 86_400_000,
    advertiseUrl: c.cluster.advertiseUrl,
    secret: c.cluster.secret!,
  });
  await cluster.start();
  host.onClose(() => cluster.stop());
  return cluster;
}
