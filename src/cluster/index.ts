// Cluster mode (active when REDIS_URL is set). Design as built:
//
// - Storage: every node keeps its OWN SQLite file (DATABASE_PATH per node). Redis carries
//   ownership, the durable hand-off of inbound messages, configuration replication and live deltas.
// - Membership: `node:<id>` heartbeat key with a TTL of one lease, plus a `nodes` set; the live
//   list is the members whose heartbeat key exists (one Lua call heartbeats and lists).
// - Shards (CLUSTER_SHARDS, default 256) go to live nodes by rendezvous hashing. An instance AND
//   all of its conversations live on the shard of the instance id, so the node that owns the
//   channel connection (Baileys socket, discord.js client, Slack Socket Mode) is also the one that
//   runs the conversations and sends — there is never a cross-node send.
// - Leases: `lease:<shard>` (SET NX PX) + fencing epoch `epoch:<shard>` (INCR), acquired in one
//   Lua call for many shards and renewed in ONE call for all owned shards, on a dedicated
//   connection with maxRetriesPerRequest 1, no offline queue and a command timeout of one renew
//   interval (a Redis that stops answering with the TCP connection up fails the call instead of
//   holding every later tick). Self-fence: ownership is valid until (monotonic time the renewal
//   was SENT) + lease − margin, checked synchronously on every use (conversation scheduling,
//   between messages, before every channel send), and a timer at the earliest validUntil fences
//   expired shards without waiting for a tick: their in-flight turns are aborted and their channel
//   connections closed before the lease can pass to another node.
// - Hand-off: any node accepts a webhook / API send and appends it to `stream:<shard>` in one Lua
//   call that also dedupes by (instance, provider message id) — the answer is sent after that
//   append. The owner reads its shards' streams (XREAD on its own connection) into its local,
//   group-committed inbox; the conversation actors run as in embedded mode. When a message reaches
//   a terminal state the owner deletes its stream entry (XDEL) in a Lua call that checks lease
//   holder + epoch (fail closed). A stream therefore holds exactly the unfinished messages of its
//   shard: a new owner reads it from the start, first closing local rows whose entries another
//   owner already finished, then resumes the rest in stream (= arrival) order.
//   Entries are ingested one shard at a time; a passing failure (inbox overloaded, disk) retries
//   that shard only. An entry that can never be ingested (malformed, or for an instance still
//   unknown after a configuration pull and a 10 s grace for configuration lag) is dead-lettered:
//   logged, kept in the bounded list `deadletter` and XDEL'd under the epoch check. A record keeps
//   the entry sealed with the cluster secret (it may carry message text and tokens); admins list
//   (masked), replay or delete records through /api/v2/cluster/dead-letters. A replay takes the
//   record out of the list and appends the entry again to the stream of its instance's shard in one
//   call; the owner then reads it like any new entry (and commits it under its epoch). Deleting an
//   instance removes its entries from the stream (its local rows go with the instance).
//   Documented duplicate point: a reply sent by an owner that dies (or is fenced) before its XDEL
//   commits is sent again by the next owner (same as the outbox point in embedded mode).
// - Configuration: see config-sync.ts (replicated rows, snapshot + log, ≤ ~pollMs latency).
// - Live deltas: see live.ts (pub/sub with per-origin sequence; gap → resync of running turns).
// - Graceful shutdown: leave the membership first (the others now count this node's shards as
//   theirs), drain each owned shard (turn in flight finishes, commits; up to 10 s), close its
//   channel connections, release the lease and announce it; the others take each shard at that
//   notice. Leases held are still renewed (renew-only ticks) until every release is done.
// - Rate limits: RedisRateLimiter (rate-limit.ts) replaces gw.rateLimiter — one token bucket per
//   (class, key id) in Redis, own connection; Redis down → fail open to this node's buckets.
//   Bootstrap keys (SWITCHBOARD_API_KEY) have a per-node id, so they are limited per node.
// - REST reads: GATHERED, not replicated. Trace get-by-id (v1 and v2) that misses locally is asked
//   of every live peer in parallel with the caller's own key (peers apply the same scopes and
//   instance binding); first 200 wins. Peers are found by the `url` each node advertises in its
//   heartbeat (CLUSTER_ADVERTISE_URL, else http://HOST:PORT as bound), with a MAC of (id, url) keyed
//   by CLUSTER_SECRET: an entry without a valid one is never contacted; a forwarded request carries
//   FORWARDED_HEADER and is never passed on again. Trace (v1, v2), event, event-search,
//   conversation, dead-letter and person-timeline LISTS are gathered the same way and merged newest
//   first by (time, id) with a cursor valid on every node; a peer silent for 2 s is skipped and the
//   answer says partial (see gather.ts). Dead-letter replay/delete by id go to the node holding the
//   row. Persons: ids derived from the platform id, so every node names a user alike; lists and
//   by-id reads are gathered and merged by person id (gather-persons.ts); link/unlink decisions
//   form one shared log (person-log.ts).
// - Webhooks whose verification needs the channel connection (Slack Events) are forwarded to the
//   shard owner over HTTP with the raw body and signature headers; the owner verifies and answers.
// - Redis restarted without its data: the first heartbeat on an empty Redis starts a quiet period
//   of one lease in which no shard is acquired; a holder still inside its self-fenced validity
//   reclaims its lease and epoch (RENEW sees both keys missing), so ownership never overlaps; the
//   stream reader resumes (new entry ids are later in time); local unfinished rows are kept (a
//   missing stream says nothing about who finished them); configuration is re-seeded from the
//   surviving nodes; pub/sub re-subscribes and running turns are resynced to remote WebSocket
//   clients. Messages appended but not yet read by their owner are lost with such a Redis: run
//   Redis with AOF (appendfsync everysec or always) for durable hand-off.
// - WhatsApp (Baileys) login state (whatsapp_auth) is replicated like configuration: only the
//   shard owner writes it, and the next owner reopens the same linked session after a failover.
//   A write still in flight when the owner dies may be missing on the next owner (last writer
//   wins per row); Baileys then renegotiates that key.
// - Secrets: CLUSTER_SECRET (required in cluster mode, the same on every node) never goes to
//   Redis. Keys derived from it (crypto.ts) seal every configuration row and dead-letter record in
//   Redis and sign peer requests; its fingerprint in Redis makes a node with another secret fail
//   its start. Messages in flight (stream entries) are sealed too: their text is not readable in
//   Redis, and an entry not sealed by a node (written into Redis by anyone else) is never run — it
//   is dead-lettered. Entries an older version appended in plain text before the upgrade are
//   still run: the upgrading node records each stream's last entry then (sealed, once).
// - Metrics: switchboard_cluster_lease_renew_seconds (histogram), switchboard_cluster_owned_shards,
//   switchboard_cluster_live_nodes.

import { hostname } from 'node:os';
import Redis from 'ioredis';
import type { Timer } from '../../actors/runtime/clock.ts';
import type { ChannelAdapter, InboundMessage } from '../channels/types.ts';
import { ChannelError } from '../channels/types.ts';
// ApiError: the base domain error under its former name (the cluster split renames the call sites).
import { DomainError as ApiError } from '../core/errors.ts';
import type { Gateway } from '../gateway.ts';
import { isoNow, maskSecret, newId } from '../services/ids.ts';
import { conversationIdFor, type InboxRow, type IngestOutcome, TERMINAL } from '../services/inbox.ts';
import type { Histogram } from '../services/metrics.ts';
import { limitsFromSettings } from '../services/rate-limit.ts';
import { ConfigSync } from './config-sync.ts';
import { ClusterKeys } from './crypto.ts';
import { peerRequestParts } from './gather.ts';
import { LiveRelay } from './live.ts';
import { ACK, ACQUIRE, APPEND, DEAD_LETTER, DEAD_LETTER_REPLAY, HEARTBEAT, RELEASE, RENEW } from './lua.ts';
import { PersonLog } from './person-log.ts';
import { RedisRateLimiter } from './rate-limit.ts';
import { desiredShards, shardOf } from './shards.ts';

/** Marks a request one node passed to another, so the receiver answers from its own data only. */
export const FORWARDED_HEADER = 'x-switchboard-forwarded-by';
/** HMAC of a peer request with a key derived from CLUSTER_SECRET: lets a node recognise its peers' requests. */
export const PEER_SIGNATURE_HEADER = 'x-switchboard-peer-signature';

export interface ClusterOptions {
  redisUrl: string;
  nodeId: string;
  prefix: string;
  shards: number;
  leaseMs: number;
  /** Dedupe window for provider message ids (ms). */
  dedupeTtlMs: number;
  /** This node's base URL for the other nodes (null: http://host:port once the server listens). */
  advertiseUrl?: string | null;
  /** CLUSTER_SECRET: the same on every node; keys for what is sealed in Redis and for peer requests. */
  secret: string;
}

interface Owned {
  epoch: number;
  /** Monotonic ms after which this node must not act on the shard. */
  validUntil: number;
  acquiredAt: number;
  draining: boolean;
}

export interface ClusterStatus {
  node: string;
  shards: number;
  leaseMs: number;
  nodes: Array<{
    id: string;
    self: boolean;
    info: Record<string, unknown> | null;
    shards: Array<{ shard: number; epoch: number; leaseAgeMs: number | null; acquiredAt: string | null }>;
  }>;
  unowned: number[];
  counters: Record<string, number>;
}

export class Cluster {
  readonly node: string;
  /** The shared log of person link/unlink decisions. */
  readonly personLog: PersonLog;
  private lease: Redis;
  private cmd: Redis;
  private sub: Redis;
  private reader: Redis;
  private owned = new Map<number, Owned>();
  /** Last epoch held per shard, kept after losing it so late writes are sent (and rejected). */
  private lastEpoch = new Map<number, number>();
  private live: string[] = [];
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
  private timer: ReturnType<typeof setInterval> | null = null;
  /** Fires at the earliest validUntil of the owned shards, so fencing never waits for a tick. */
  private fenceTimer: Timer | null = null;
  private ticking = false;
  private tickAgain = false;
  private url: string | null;
  private peerCache: { at: number; peers: Array<{ id: string; url: string }>; untrusted: number } | null = null;
  /** Node entries whose URL failed its MAC (id + URL), logged once each. */
  private untrustedUrls = new Set<string>();
  private renewSeconds: Histogram;
  readonly rateLimiter: RedisRateLimiter;
  private stopped = false;
  /** Set at the end of stop(): no timer is armed again. */
  private closed = false;
  private consumerDone: Promise<void> | null = null;
  /** conversation id → instance id: a bounded cache (LRU) in front of the conversations table. */
  private convInstance = new Map<string, string>();
  /**
   * Acks Redis did not answer, by (shard, epoch), retried every tick. Bounded by what this node
   * can finish without Redis: only entries it read from a stream (so ≤ its inbox backlog bound
   * while Redis is away) — and by MAX_PENDING_ACK_IDS in any case (a dropped ack is redone by the
   * next catch-up on this node; on another node the message runs again: the documented duplicate point).
   */
  private pendingAcks = new Map<string, { shard: number; epoch: number; ids: Set<string> }>();
  private pendingAckIds = 0;
  private config: ConfigSync;
  private relay: LiveRelay;
  private keys: ClusterKeys;
  readonly counters = {
    acquired: 0,
    released: 0,
    fenced: 0,
    fencedWrites: 0,
    appended: 0,
    duplicates: 0,
    consumed: 0,
    acked: 0,
    handedOffRows: 0,
    blockedSends: 0,
    deadLettered: 0,
    ingestRetries: 0,
    droppedForDeletedInstance: 0,
  };
  private readonly renewMs: number;
  private readonly marginMs: number;

  constructor(
    private gw: Gateway,
    private o: ClusterOptions,
  ) {
    this.node = o.nodeId;
    this.renewMs = Math.max(50, Math.floor(o.leaseMs / 3));
    this.marginMs = Math.max(100, Math.floor(o.leaseMs / 5));
    const base = { lazyConnect: true, connectTimeout: 2000 };
    // Leases: a renewal must never be replayed late from an offline queue, and a Redis that stops
    // answering with the connection up must not hold a tick (and so every later renewal) forever.
    this.lease = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: false,
      commandTimeout: this.renewMs,
      connectionName: `sb-lease-${this.node}`,
    });
    // Appends, acks, config, shutdown steps: an unanswered call fails (webhook → 503) instead of hanging.
    this.cmd = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: 2,
      commandTimeout: 5000,
      connectionName: `sb-cmd-${this.node}`,
    });
    this.sub = new Redis(o.redisUrl, { ...base, connectionName: `sb-sub-${this.node}` });
    this.reader = new Redis(o.redisUrl, {
      ...base,
      maxRetriesPerRequest: null,
      connectionName: `sb-reader-${this.node}`,
    });
    for (const c of [this.lease, this.cmd, this.sub, this.reader]) c.on('error', () => {});
    this.keys = new ClusterKeys(o.secret);
    this.config = new ConfigSync({
      db: gw.db,
      redis: this.cmd,
      prefix: o.prefix,
      node: this.node,
      log: gw.log,
      keys: this.keys,
      applied: (tables, instanceIds) => this.configApplied(tables, instanceIds),
      // It could read nothing the others write, and they nothing it seals: it must not own shards.
      foreignSecret: () => {
        this.gw.ready = false;
        void this.stop();
      },
    });
    this.relay = new LiveRelay(gw.pipeline.hub, this.cmd, `${o.prefix}live`, this.node);
    this.personLog = new PersonLog({ redis: this.cmd, prefix: o.prefix, persons: gw.persons, log: gw.log });
    this.url = o.advertiseUrl ?? null;
    this.rateLimiter = new RedisRateLimiter({
      redisUrl: o.redisUrl,
      prefix: o.prefix,
      node: this.node,
      limitOf: limitsFromSettings(gw.settings),
      log: gw.log,
    });
    const m = gw.pipeline.metrics;
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

  /** Called once the HTTP server listens (port 0 → the real port), unless CLUSTER_ADVERTISE_URL is set. */
  advertisePort(port: number): void {
    if (this.url || !port) return;
    const host = this.gw.config.host;
    const h =
      host === '0.0.0.0' || host === '::'
        ? hostname()
        : host.includes(':') && !host.startsWith('[')
          ? `[${host}]`
          : host;
    this.url = `http://${h}:${port}`;
  }

  private k(s: string): string {
    return this.o.prefix + s;
  }

  private now(): number {
    return this.gw.clock.monotonic();
  }

  shardOfInstance(instanceId: string): number {
    return shardOf(instanceId, this.o.shards);
  }

  /** Synchronous self-fence check: true only while the lease is certainly still ours. */
  ownsShard(shard: number): boolean {
    const o = this.owned.get(shard);
    return !!o && !o.draining && this.now() < o.validUntil;
  }

  ownsInstance(instanceId: string): boolean {
    return this.ownsShard(this.shardOfInstance(instanceId));
  }

  /** The lease is still certainly ours (also while draining: the turn in flight may still send). */
  leaseValid(instanceId: string): boolean {
    const o = this.owned.get(this.shardOfInstance(instanceId));
    return !!o && this.now() < o.validUntil;
  }

  ownsConversation(conversationId: string): boolean {
    const inst = this.instanceOfConversation(conversationId);
    if (!inst) return false;
    const shard = this.shardOfInstance(inst);
    return this.ownsShard(shard) && !this.catchingUp.has(shard);
  }

  private instanceOfConversation(conversationId: string): string | null {
    const inst = this.convInstance.get(conversationId);
    if (inst) {
      // Most recently used last, so eviction takes the longest unused.
      this.convInstance.delete(conversationId);
      this.convInstance.set(conversationId, inst);
      return inst;
    }
    const r = this.gw.db
      .query<{ instance_id: string }, [string]>('SELECT instance_id FROM conversations WHERE id = ?')
      .get(conversationId);
    if (!r) return null;
    this.rememberConversation(conversationId, r.instance_id);
    return r.instance_id;
  }

  private rememberConversation(conversationId: string, instanceId: string): void {
    this.convInstance.delete(conversationId);
    this.convInstance.set(conversationId, instanceId);
    if (this.convInstance.size > CONV_CACHE_MAX) this.convInstance.delete(this.convInstance.keys().next().value!);
  }

  /** Conversations with a live actor whose instance is on this shard. */
  private activeOfShard(shard: number): string[] {
    return this.gw.pipeline.conversations.activeKeys().filter((k) => {
      const inst = this.instanceOfConversation(k);
      return !!inst && this.shardOfInstance(inst) === shard;
    });
  }

  /** Headers for a request to a peer: who forwards it, and a signature the peer can check. */
  peerHeaders(method: string, pathAndQuery: string): Record<string, string> {
    return { [FORWARDED_HEADER]: this.node, [PEER_SIGNATURE_HEADER]: this.keys.signPeer(method, pathAndQuery) };
  }

  /** True for a request signed by a node with the same CLUSTER_SECRET within the last 30 s (the forwarded-by header alone proves nothing). */
  verifyPeer(request: Request): boolean {
    const sig = request.headers.get(PEER_SIGNATURE_HEADER);
    if (!sig) return false;
    const u = new URL(request.url);
    return this.keys.verifyPeer(sig, request.method, u.pathname + u.search);
  }

  async start(): Promise<void> {
    await Promise.all([
      this.lease.connect(),
      this.cmd.connect(),
      this.sub.connect(),
      this.reader.connect(),
      this.rateLimiter.connect(),
    ]);
    const found = await this.config.checkSecret().catch((err: unknown) => {
      // Another secret: nothing was touched; leave no connection behind.
      for (const c of [this.lease, this.cmd, this.sub, this.reader]) c.disconnect();
      this.rateLimiter.close();
      throw err;
    });
    // An older version's plain-text configuration is adopted and sealed by config.start (bootstrap).
    if (found === 'legacy') await this.sealLegacyDeadLetters();
    // Older versions kept the peer-request secret in Redis, where any reader could sign with it.
    await this.cmd.del(this.k('peer-secret'));
    this.gw.rateLimiter = this.rateLimiter;
    const p = this.gw.pipeline;
    p.owns = { conversation: (id) => this.ownsConversation(id), instance: (id) => this.ownsInstance(id) };
    p.ingestHook = (msg, kind) => this.append(msg, kind);
    p.wrapAdapter = (instanceId, adapter) => this.fenceAdapter(instanceId, adapter);
    p.onTerminal((row) => this.terminal(row));
    this.gw.instances.onChange((c) => {
      if (c.type === 'deleted')
        void this.dropEntriesOf(c.instance.id).catch((err) =>
          this.gw.log.warn({ err: String(err) }, "cluster: removing a deleted instance's entries failed"),
        );
    });

    this.sub.on('message', (channel: string, message: string) => {
      if (channel === this.k('live')) this.relay.receive(message);
      else if (channel === this.k('cfg')) void this.config.pull();
      else if (channel === this.k('notice')) void this.tick();
    });
    // Registered after the first connect: every 'ready' seen here is a re-connection.
    this.sub.on('ready', () => this.relay.resubscribed());
    await this.sub.subscribe(this.k('live'), this.k('cfg'), this.k('notice'));
    await this.config.start(Math.min(500, this.renewMs));
    // Only once the older configuration is adopted (no old node writes any more): what the streams
    // hold now is the older version's last plain entries. Before the reader starts.
    if (found === 'legacy') await this.markLegacyStreams();
    await this.loadLegacyStreams();
    // Links decided while this node was away apply before its first message names a person.
    await this.personLog.catchUp();
    this.personLog.start();
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.renewMs);
    this.consumerDone = this.consume();
    await this.cmd.publish(this.k('notice'), JSON.stringify({ type: 'joined', node: this.node }));
  }

  // ------------------------------------------------------------------ membership and leases

  private async tick(): Promise<void> {
    if (this.closed) return;
    if (this.ticking) {
      // A notice (a node left, a shard was released) must not wait for the next interval.
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    try {
      if (this.stopped) {
        // Leaving: renew only, so a drain that outlasts one lease is not self-fenced (and re-run by the next owner).
        await this.renew();
        this.fenceExpired();
        return;
      }
      const mac = this.url ? this.keys.signNode(this.node, this.url) : null;
      const info = JSON.stringify({
        pid: process.pid,
        host: hostname(),
        port: this.gw.config.port,
        url: this.url,
        mac,
        startedAt: startedAt,
      });
      this.live = (
        (await this.lease.eval(HEARTBEAT, 0, this.o.prefix, this.node, this.o.leaseMs, info)) as string[]
      ).sort();
      await this.renew();
      this.fenceExpired();
      if (this.stopped) return;
      const want = desiredShards(
        this.node,
        this.live.includes(this.node) ? this.live : [...this.live, this.node],
        this.o.shards,
      );
      const toAcquire = [...want].filter((s) => !this.owned.has(s));
      if (toAcquire.length) await this.acquire(toAcquire);
      for (const [s, o] of this.owned) if (!want.has(s) && !o.draining) void this.release(s, 'rebalance');
      await this.retryAcks();
    } catch (err) {
      this.gw.log.warn({ err: String(err) }, 'cluster: tick failed');
      this.fenceExpired();
    } finally {
      this.ticking = false;
      if (this.tickAgain && !this.stopped) {
        this.tickAgain = false;
        void this.tick();
      }
    }
  }

  private async renew(): Promise<void> {
    const held = [...this.owned.entries()].filter(([, o]) => this.now() < o.validUntil);
    if (!held.length) return;
    const sentAt = this.now();
    const args: Array<string | number> = [this.o.prefix, this.node, this.o.leaseMs];
    for (const [s, o] of held) args.push(s, o.epoch);
    const res = (await this.lease.eval(RENEW, 0, ...args)) as number[];
    this.renewSeconds.observe((this.now() - sentAt) / 1000);
    held.forEach(([s, o], i) => {
      if (res[i] === 1) o.validUntil = sentAt + this.o.leaseMs - this.marginMs;
      else void this.lose(s, 'lease taken over');
    });
    this.scheduleFence();
  }

  private fenceExpired(): void {
    for (const [s, o] of this.owned)
      if (this.now() >= o.validUntil) void this.lose(s, 'lease not renewed in time (self-fence)');
    this.scheduleFence();
  }

  /** One timer at the earliest validUntil: a shard whose renewal never came back is fenced on time. */
  private scheduleFence(): void {
    this.fenceTimer?.cancel();
    this.fenceTimer = null;
    if (this.closed || !this.owned.size) return;
    let earliest = Infinity;
    for (const o of this.owned.values()) earliest = Math.min(earliest, o.validUntil);
    this.fenceTimer = this.gw.clock.setTimeout(
      () => {
        this.fenceTimer = null;
        this.fenceExpired();
      },
      Math.max(0, earliest - this.now()) + 1,
    );
  }

  private async acquire(shards: number[]): Promise<void> {
    const sentAt = this.now();
    const res = (await this.lease.eval(ACQUIRE, 0, this.o.prefix, this.node, this.o.leaseMs, ...shards)) as number[];
    const gained: number[] = [];
    shards.forEach((s, i) => {
      if (!res[i]) return;
      this.owned.set(s, {
        epoch: res[i],
        validUntil: sentAt + this.o.leaseMs - this.marginMs,
        acquiredAt: Date.now(),
        draining: false,
      });
      this.lastEpoch.set(s, res[i]);
      this.counters.acquired++;
      gained.push(s);
    });
    if (!gained.length) return;
    this.scheduleFence();
    this.gw.log.info({ node: this.node, shards: gained.length }, 'cluster: shards acquired');
    const set = new Set(gained);
    // Channel connections first, so the resumed conversations can send at once.
    await Promise.all(
      this.gw.instances
        .list()
        .filter((i) => set.has(this.shardOfInstance(i.id)))
        .map((i) => this.gw.pipeline.syncInstance(i)),
    );
    for (const s of gained) this.catchingUp.add(s);
    this.catchUp.push(...gained);
  }

  /** Lost without a hand-off (fenced or taken over): abort at once, close connections. */
  private async lose(shard: number, reason: string): Promise<void> {
    if (!this.owned.has(shard)) return;
    this.owned.delete(shard);
    this.cursors.delete(shard);
    this.counters.fenced++;
    this.gw.log.warn({ node: this.node, shard, reason }, 'cluster: shard lost');
    for (const key of this.activeOfShard(shard)) {
      this.gw.pipeline.cancelConversation(key);
      void this.retire(key);
    }
    await this.stopInstancesOf(shard, 'shard lost');
  }

  /** A cancelled actor stays stopped for good: drop it once idle so a later owner period gets a fresh one. */
  private async retire(key: string): Promise<void> {
    const sup = this.gw.pipeline.conversations;
    for (let i = 0; i < 500 && sup.has(key); i++) {
      if (await sup.passivate(key)) {
        // Owned again meanwhile: a wake that reached the cancelled actor was lost; repeat it.
        this.gw.pipeline.wake(key);
        return;
      }
      await Bun.sleep(20);
    }
  }

  private async stopInstancesOf(shard: number, reason: string): Promise<void> {
    await Promise.all(
      this.gw.instances
        .list()
        .filter((i) => this.shardOfInstance(i.id) === shard)
        .map((i) => this.gw.pipeline.stopInstance(i.id, reason)),
    );
  }

  /** Graceful hand-off: the turn in flight finishes and commits, connections close, then the lease goes. */
  private async release(shard: number, why: string, maxWaitMs = 10_000): Promise<void> {
    const o = this.owned.get(shard);
    if (!o || o.draining) return;
    o.draining = true;
    const deadline = this.now() + maxWaitMs;
    const sup = this.gw.pipeline.conversations;
    for (;;) {
      const busy = this.activeOfShard(shard);
      let left = 0;
      for (const k of busy) if (sup.has(k) && !(await sup.passivate(k)) && sup.has(k)) left++;
      if (left === 0 || this.now() > deadline || this.now() >= o.validUntil) break;
      await Bun.sleep(20);
    }
    // Lost while draining (lose() cleaned up, and the shard may be owned again under a new epoch):
    // nothing here is this release's to touch any more.
    if (this.owned.get(shard) !== o) return;
    await this.stopInstancesOf(shard, 'handed off');
    await this.retryAcks();
    try {
      await this.lease.eval(RELEASE, 0, this.o.prefix, this.node, shard, o.epoch);
    } catch {
      /* the lease expires on its own */
    }
    if (this.owned.get(shard) !== o) return;
    this.owned.delete(shard);
    this.cursors.delete(shard);
    this.counters.released++;
    this.gw.log.info({ node: this.node, shard, why }, 'cluster: shard released');
    this.cmd.publish(this.k('notice'), JSON.stringify({ type: 'released', node: this.node, shard })).catch(() => {});
  }

  // ------------------------------------------------------------------ hand-off of messages

  /** Any node: durable append for the owner, with dedupe, before the caller is answered. */
  async append(msg: InboundMessage, kind: 'inbound' | 'send'): Promise<IngestOutcome> {
    const traceId = newId();
    const shard = this.shardOfInstance(msg.instanceId);
    // Sealed: message text never sits readable in Redis, and an entry a Redis writer adds (it cannot
    // seal) is never run — it would otherwise make this gateway call the agent and send replies.
    const payload = this.keys.seal(
      JSON.stringify({ ...msg, extra: { ...(msg.extra ?? {}), clusterTraceId: traceId } }),
      STREAM_CONTEXT,
    );
    const res = (await this.store(() =>
      this.cmd.eval(
        APPEND,
        0,
        this.o.prefix,
        shard,
        `${msg.instanceId}:${msg.providerMessageId}`,
        traceId,
        this.o.dedupeTtlMs,
        payload,
        kind,
      ),
    )) as [number, string];
    const conversationId = conversationIdFor(msg.instanceId, msg.chat);
    if (res[0] === 1) {
      this.counters.appended++;
      return { status: 'accepted', traceId, conversationId, seq: 0, shed: false };
    }
    this.counters.duplicates++;
    return { status: 'duplicate', traceId: res[1], conversationId, seq: 0, shed: false };
  }

  private async consume(): Promise<void> {
    while (!this.stopped) {
      try {
        while (this.catchUp.length) {
          const s = this.catchUp.shift()!;
          if (this.ownsShard(s)) await this.catchUpShard(s);
          else this.catchingUp.delete(s);
        }
        await this.retryDeferred();
        const now = this.now();
        // A shard whose ingest failed waits out its retry time; the others go on.
        const shards = [...this.cursors.keys()].filter((s) => this.ownsShard(s) && (this.retryAt.get(s) ?? 0) <= now);
        if (!shards.length) {
          await Bun.sleep(50);
          continue;
        }
        const res = (await this.reader.xread(
          'COUNT',
          500,
          'BLOCK',
          200,
          'STREAMS',
          ...shards.map((s) => this.k(`stream:${s}`)),
          ...shards.map((s) => this.cursors.get(s)!),
        )) as Array<[string, Array<[string, string[]]>]> | null;
        if (!res) continue;
        for (const [key, entries] of res) {
          const s = Number(key.slice(this.k('stream:').length));
          const o = this.owned.get(s);
          if (!o || !this.ownsShard(s) || !this.cursors.has(s)) continue;
          const last = await this.ingestEntries(s, entries);
          // The same ownership period still (a lost and re-acquired shard is read from its start).
          if (last && this.owned.get(s) === o && this.cursors.has(s)) this.cursors.set(s, last);
        }
      } catch (err) {
        if (this.stopped) return;
        this.gw.log.warn({ err: String(err) }, 'cluster: stream read failed; retrying');
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
    if (!this.ownsShard(shard)) return;
    const { pipeline } = this.gw;
    for (const { conversationId, instanceId } of pipeline.inbox.conversationsWithWork()) {
      if (this.shardOfInstance(instanceId) === shard) pipeline.wake(conversationId);
    }
  }

  private async catchUpRows(shard: number): Promise<void> {
    const o = this.owned.get(shard);
    // After each await: still the ownership period this catch-up started in (else the next
    // acquisition queued its own catch-up, or the shard is gone).
    const current = () => !!o && this.owned.get(shard) === o && this.ownsShard(shard);
    // A stream is never deleted (XDEL leaves it empty): a missing one means a fresh Redis, and
    // then its absent entries say nothing about what other owners finished.
    const streamKnown = (await this.cmd.exists(this.k(`stream:${shard}`))) === 1;
    const entries: Array<[string, string[]]> = [];
    let from = '-';
    for (;;) {
      const page = (await this.cmd.xrange(this.k(`stream:${shard}`), from, '+', 'COUNT', 1000)) as Array<
        [string, string[]]
      >;
      entries.push(...page);
      if (page.length < 1000) break;
      from = `(${page[page.length - 1][0]}`;
    }
    if (!current()) return;
    const present = new Set(entries.map((e) => e[0]));
    const { db, pipeline } = this.gw;
    const open = db
      .query<InboxRow, []>("SELECT * FROM inbox WHERE status IN ('pending','processing') ORDER BY seq")
      .all();
    for (const row of open) {
      if (this.shardOfInstance(row.instance_id) !== shard) continue;
      const sid = streamIdOf(row);
      if (!sid || present.has(sid) || !streamKnown) continue;
      db.query("UPDATE inbox SET status = 'completed', completed_at = ? WHERE seq = ?").run(isoNow(), row.seq);
      pipeline.traces.addStep(row.id, 'handled_by_other_node', 'success', {
        reason: 'another owner finished this message while this node did not own its shard',
      });
      pipeline.inbox.settled(row.conversation_id);
      this.counters.handedOffRows++;
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
    const { inbox } = this.gw.pipeline;
    let last: string | null = null;
    const batch: Array<{ id: string; msg: InboundMessage; kind: 'inbound' | 'send' }> = [];
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
        this.counters.consumed++;
        last = batch[i].id;
      }
      const complete = last === batch[batch.length - 1].id;
      batch.length = 0;
      if (done.length) await this.ack(shard, done);
      return complete;
    };
    try {
      for (const [id, fields] of entries) {
        const parsed = this.entry(shard, id, fields);
        if (typeof parsed === 'string') {
          if (!(await flush())) return this.retryLater(shard, last);
          if (!(await this.deadLetter(shard, id, fields, parsed))) return last; // fenced: stop reading
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
        if (!this.gw.instances.get(instanceId)) {
          if (!(await flush())) return this.retryLater(shard, last);
          const r = await this.unknownInstance(shard, id, fields, instanceId);
          if (r === 'fenced') return last;
          if (r === 'handled') {
            last = id;
            continue;
          }
        }
        this.rememberConversation(conversationIdFor(parsed.msg.instanceId, parsed.msg.chat), parsed.msg.instanceId);
        batch.push({ id, ...parsed });
      }
      if (!(await flush())) return this.retryLater(shard, last);
      return last;
    } catch (err) {
      this.gw.log.warn({ err: String(err), shard }, 'cluster: stream ingest failed; retrying this shard');
      return this.retryLater(shard, last);
    }
  }

  private retryLater(shard: number, last: string | null): string | null {
    this.counters.ingestRetries++;
    this.retryAt.set(shard, this.now() + INGEST_RETRY_MS);
    return last;
  }

  /** One entry on its own after its group commit failed: 'done' (terminal), 'ok', 'dead' or 'retry'. */
  private async ingestOne(
    shard: number,
    p: { id: string; msg: InboundMessage; kind: 'inbound' | 'send' },
  ): Promise<'ok' | 'done' | 'dead' | 'retry'> {
    const { inbox } = this.gw.pipeline;
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
        this.gw.log.warn({ err: String(err), shard }, 'cluster: local ingest failed; retrying this shard');
        return 'retry';
      }
      await this.deadLetter(
        shard,
        p.id,
        ['m', this.keys.seal(JSON.stringify(p.msg), STREAM_CONTEXT), 'k', p.kind],
        `ingest failed: ${String(err)}`,
      );
      return 'dead';
    }
  }

  /**
   * An entry for an instance this node does not know. Configuration may lag the message (the
   * instance was created on another node a moment ago): pull it, then keep the entry aside and
   * retry it for UNKNOWN_INSTANCE_GRACE_MS before dead-lettering it. True when handled.
   */
  private async unknownInstance(
    shard: number,
    id: string,
    fields: string[],
    instanceId: string,
  ): Promise<'known' | 'handled' | 'fenced'> {
    if (this.now() - this.lastForcedPull >= 500) {
      this.lastForcedPull = this.now();
      await this.config.pullFresh();
      if (this.gw.instances.get(instanceId)) return 'known';
    }
    const age = Date.now() - Number(id.split('-')[0]);
    if (age < UNKNOWN_INSTANCE_GRACE_MS) {
      let d = this.deferred.get(shard);
      if (!d) this.deferred.set(shard, (d = new Map()));
      d.set(id, { fields, instanceId });
      return 'handled';
    }
    return (await this.deadLetter(shard, id, fields, `instance ${instanceId} unknown on this node`))
      ? 'handled'
      : 'fenced';
  }

  /** Entries set aside for an unknown instance: ingested once it is known, dead-lettered after the grace. */
  private async retryDeferred(): Promise<void> {
    if (!this.deferred.size || this.now() - this.lastDeferredPass < 250) return;
    this.lastDeferredPass = this.now();
    for (const [shard, d] of [...this.deferred]) {
      this.deferred.delete(shard);
      if (!this.ownsShard(shard)) continue; // the next owner reads them from the stream
      const last = await this.ingestEntries(
        shard,
        [...d].map(([id, w]) => [id, w.fields] as [string, string[]]),
      );
      // After a passing failure, what was not handled goes back behind what was set aside again.
      const rest = [...d].filter(([id]) => last === null || compareIds(id, last) > 0);
      if (rest.length) this.deferred.set(shard, new Map([...(this.deferred.get(shard) ?? []), ...rest]));
    }
  }

  /** Logs, keeps a record in `<prefix>deadletter` (bounded; the entry sealed) and deletes the entry, epoch-checked. */
  private async deadLetter(shard: number, id: string, fields: string[], reason: string): Promise<boolean> {
    const epoch = this.owned.get(shard)?.epoch;
    if (epoch === undefined) return false;
    // An older version's plain message that was accepted (see entry()) is kept sealed, so a replay
    // (appended after the legacy mark) is run; an entry refused as unsealed stays as it came.
    if (typeof this.entry(shard, id, fields) !== 'string') {
      fields = this.withSealedMessage(fields);
    }
    const record = JSON.stringify(this.deadLetterRecord(shard, id, fields, reason, this.node, isoNow()));
    const ok = (await this.cmd.eval(
      DEAD_LETTER,
      0,
      this.o.prefix,
      this.node,
      shard,
      epoch,
      id,
      record,
      DEAD_LETTER_KEEP,
    )) as number;
    if (ok !== 1) {
      this.counters.fencedWrites++;
      return false;
    }
    this.counters.deadLettered++;
    this.gw.log.error(
      { node: this.node, shard, entry: id, reason },
      'cluster: stream entry dead-lettered (kept in the deadletter list)',
    );
    return true;
  }

  /** A deleted instance: its entries still in the stream (unread or unfinished) are removed. */
  private async dropEntriesOf(instanceId: string): Promise<void> {
    const shard = this.shardOfInstance(instanceId);
    const d = this.deferred.get(shard);
    if (d) for (const [id, w] of d) if (w.instanceId === instanceId) d.delete(id);
    const o = this.owned.get(shard);
    if (!o || !this.ownsShard(shard)) return; // the owner does it
    const ids: string[] = [];
    let from = '-';
    for (;;) {
      const page = (await this.cmd.xrange(this.k(`stream:${shard}`), from, '+', 'COUNT', 1000)) as Array<
        [string, string[]]
      >;
      for (const [id, fields] of page) {
        const p = this.entry(shard, id, fields);
        if (typeof p !== 'string' && p.msg.instanceId === instanceId) ids.push(id);
      }
      if (page.length < 1000) break;
      from = `(${page[page.length - 1][0]}`;
    }
    if (!ids.length) return;
    await this.ack(shard, ids, o.epoch);
    this.counters.droppedForDeletedInstance += ids.length;
    this.gw.log.info(
      { node: this.node, shard, instanceId, entries: ids.length },
      'cluster: stream entries of a deleted instance removed',
    );
  }

  private terminal(row: InboxRow): void {
    const sid = streamIdOf(row);
    if (!sid) return;
    void this.ack(this.shardOfInstance(row.instance_id), [sid]);
  }

  /** The commit of finished entries, epoch-checked in Redis; rejected when this node lost the shard. */
  private async ack(
    shard: number,
    ids: string[],
    epoch = this.owned.get(shard)?.epoch ?? this.lastEpoch.get(shard) ?? 0,
  ): Promise<void> {
    try {
      const ok = (await this.cmd.eval(ACK, 0, this.o.prefix, this.node, shard, epoch, ...ids)) as number;
      if (ok === 1) this.counters.acked += ids.length;
      else {
        this.counters.fencedWrites++;
        this.gw.log.warn(
          { node: this.node, shard, epoch },
          'cluster: write rejected by the epoch check (shard owned elsewhere)',
        );
      }
    } catch {
      const key = `${shard}:${epoch}`;
      let p = this.pendingAcks.get(key);
      if (!p) this.pendingAcks.set(key, (p = { shard, epoch, ids: new Set() }));
      for (const id of ids)
        if (!p.ids.has(id)) {
          p.ids.add(id);
          this.pendingAckIds++;
        }
      while (this.pendingAckIds > MAX_PENDING_ACK_IDS) {
        const [oldestKey, oldest] = this.pendingAcks.entries().next().value!;
        this.pendingAcks.delete(oldestKey);
        this.pendingAckIds -= oldest.ids.size;
        this.gw.log.warn(
          { shard: oldest.shard, entries: oldest.ids.size },
          'cluster: unacknowledged stream entries dropped from the retry list (bound reached)',
        );
      }
    }
  }

  private async retryAcks(): Promise<void> {
    const pending = [...this.pendingAcks.values()];
    this.pendingAcks.clear();
    this.pendingAckIds = 0;
    for (const a of pending) await this.ack(a.shard, [...a.ids], a.epoch);
  }

  /** Every outbound call is refused once the shard is not certainly ours (self-fence). */
  private fenceAdapter(instanceId: string, adapter: ChannelAdapter): ChannelAdapter {
    const guarded = new Set(['send', 'edit', 'typing']);
    return new Proxy(adapter, {
      get: (target, prop) => {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        if (typeof prop === 'string' && guarded.has(prop)) {
          return (...args: unknown[]) => {
            if (!this.leaseValid(instanceId)) {
              this.counters.blockedSends++;
              return Promise.reject(new ChannelError('this node no longer owns the instance (cluster fence)', true));
            }
            return (v as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return (v as (...a: unknown[]) => unknown).bind(target);
      },
    });
  }

  // ------------------------------------------------------------------ configuration

  private configApplied(tables: Set<string>, instanceIds: Set<string>): void {
    const { gw } = this;
    gw.instances.invalidate();
    gw.keys.invalidate();
    gw.settings.invalidate();
    const extra = gw as unknown as Record<string, { invalidate?: () => void } | undefined>;
    for (const name of ['access', 'rateLimiter']) extra[name]?.invalidate?.();
    if (!tables.has('instances')) return;
    for (const id of instanceIds) {
      const inst = gw.instances.get(id);
      if (inst) void gw.pipeline.syncInstance(inst);
      else {
        void gw.pipeline.stopInstance(id, 'deleted');
        void this.dropEntriesOf(id).catch((err) =>
          gw.log.warn({ err: String(err) }, "cluster: removing a deleted instance's entries failed"),
        );
      }
    }
  }

  // ------------------------------------------------------------------ dead letters (admin API)

  private deadLetterRecord(
    shard: number,
    entryId: string,
    fields: string[],
    reason: string,
    node: string,
    at: string,
  ): DeadLetterRecord {
    const id = newId();
    return {
      id,
      shard,
      entryId,
      reason,
      node,
      at,
      sealed: this.keys.seal(JSON.stringify(fields), deadLetterContext(id)),
    };
  }

  /** Per shard, the last entry an older version (plain messages) appended before this cluster sealed them. */
  private legacyUntil = new Map<number, string>();

  /** An entry's fields with its message (`m`) sealed, when it is not already. */
  private withSealedMessage(fields: string[]): string[] {
    return fields.map((v, i) =>
      i % 2 === 1 && fields[i - 1] === 'm' && this.keys.open(v, STREAM_CONTEXT) === null
        ? this.keys.seal(v, STREAM_CONTEXT)
        : v,
    );
  }

  /** A stream entry of `shard` as its message (see parseEntry). */
  private entry(shard: number, id: string, fields: string[]) {
    return parseEntry(id, fields, (m) => {
      const text = this.keys.open(m, STREAM_CONTEXT);
      if (text !== null) return text;
      // A plain entry is accepted only if an older version wrote it before the upgrade: ids only
      // grow, so nothing appended since can pass for one.
      const until = this.legacyUntil.get(shard);
      return until && !m.startsWith('v1.') && compareIds(id, until) <= 0 ? m : null;
    });
  }

  /**
   * Upgrade from a version that appended plain messages (run by the node that adopts the older
   * configuration): the last entry of every stream then is recorded, sealed, once. Entries up to it
   * are still run; any later plain entry is refused.
   */
  private async markLegacyStreams(): Promise<void> {
    const last: Record<number, string> = {};
    for (let s = 0; s < this.o.shards; s++) {
      const top = (await this.cmd.xrevrange(this.k(`stream:${s}`), '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
      if (top.length) last[s] = top[0][0];
    }
    await this.cmd.set(this.k('stream-legacy'), this.keys.seal(JSON.stringify(last), LEGACY_MARK_CONTEXT));
  }

  private async loadLegacyStreams(): Promise<void> {
    const sealed = await this.cmd.get(this.k('stream-legacy'));
    const text = sealed ? this.keys.open(sealed, LEGACY_MARK_CONTEXT) : null;
    if (!text) return;
    for (const [s, id] of Object.entries(JSON.parse(text) as Record<string, string>))
      this.legacyUntil.set(Number(s), id);
  }

  /** Records of an older version hold the entry in plain text: sealed in place (no node of that version runs any more). */
  private async sealLegacyDeadLetters(): Promise<void> {
    const key = this.k('deadletter');
    const raw = await this.cmd.lrange(key, 0, -1);
    let changed = 0;
    const records = raw.map((r) => {
      const v = parseRecord(r);
      if (!v || isSealed(v) || !Array.isArray(v.fields)) return r;
      changed++;
      // Its message was written by a node of the older version: sealed now like any entry's.
      return JSON.stringify(
        this.deadLetterRecord(
          Number(v.shard),
          String(v.id),
          this.withSealedMessage(v.fields.map(String)),
          String(v.reason),
          String(v.node),
          String(v.at),
        ),
      );
    });
    if (changed)
      await this.cmd
        .multi()
        .del(key)
        .rpush(key, ...records)
        .exec();
  }

  /** Every record, newest first (the list is bounded, so it is read whole). Messages are shown with their secrets masked. */
  async deadLetters(): Promise<DeadLetterView[]> {
    const raw = await this.store(() => this.cmd.lrange(this.k('deadletter'), 0, -1));
    const views: DeadLetterView[] = [];
    for (const r of raw) {
      const rec = parseRecord(r);
      if (isSealed(rec)) views.push(this.deadLetterView(rec));
    }
    return views.sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1));
  }

  /** Takes the record out of the list and appends its entry to the stream of its instance's shard again (one call). */
  async replayDeadLetter(id: string): Promise<{ id: string; shard: number; entryId: string }> {
    const { raw, record } = await this.findDeadLetter(id);
    const view = this.deadLetterView(record);
    if (!view.replayable)
      throw new ApiError('CONFLICT', `This dead letter cannot be replayed: ${view.problem}`, { id });
    const fields = this.openDeadLetter(record)!;
    const instanceId = String(view.message!.instanceId);
    const shard = this.shardOfInstance(instanceId);
    const entryId = (await this.store(() =>
      this.cmd.eval(DEAD_LETTER_REPLAY, 0, this.o.prefix, raw, shard, ...fields),
    )) as string | number;
    if (entryId === 0) throw new ApiError('NOT_FOUND', 'Dead letter not found (already replayed or deleted)', { id });
    this.gw.log.info({ node: this.node, deadLetter: id, shard, entry: entryId }, 'cluster: dead letter replayed');
    return { id, shard, entryId: String(entryId) };
  }

  async deleteDeadLetter(id: string): Promise<void> {
    const { raw } = await this.findDeadLetter(id);
    if ((await this.store(() => this.cmd.lrem(this.k('deadletter'), 1, raw))) === 0)
      throw new ApiError('NOT_FOUND', 'Dead letter not found (already replayed or deleted)', { id });
  }

  private async findDeadLetter(id: string): Promise<{ raw: string; record: DeadLetterRecord }> {
    for (const raw of await this.store(() => this.cmd.lrange(this.k('deadletter'), 0, -1))) {
      const rec = parseRecord(raw);
      if (isSealed(rec) && rec.id === id) return { raw, record: rec };
    }
    throw new ApiError('NOT_FOUND', 'Dead letter not found', { id });
  }

  private openDeadLetter(rec: DeadLetterRecord): string[] | null {
    const text = this.keys.open(rec.sealed, deadLetterContext(rec.id));
    const fields = text === null ? null : (JSON.parse(text) as unknown);
    return Array.isArray(fields) ? fields.map(String) : null;
  }

  private deadLetterView(rec: DeadLetterRecord): DeadLetterView {
    const base = { id: rec.id, shard: rec.shard, entryId: rec.entryId, reason: rec.reason, node: rec.node, at: rec.at };
    const fields = this.openDeadLetter(rec);
    if (!fields)
      return {
        ...base,
        kind: null,
        message: null,
        replayable: false,
        problem: "the record does not open with this node's CLUSTER_SECRET",
      };
    const parsed = this.entry(rec.shard, rec.entryId, fields);
    if (typeof parsed === 'string') return { ...base, kind: null, message: null, replayable: false, problem: parsed };
    const message = masked(parsed.msg) as Record<string, unknown>;
    // Replayed for an instance still unknown, it would only wait out the grace and come back here.
    if (!this.gw.instances.get(parsed.msg.instanceId))
      return {
        ...base,
        kind: parsed.kind,
        message,
        replayable: false,
        problem: `instance ${parsed.msg.instanceId} is unknown; create it first`,
      };
    return { ...base, kind: parsed.kind, message, replayable: true, problem: null };
  }

  /** A Redis call for an API request: unavailable Redis → 503 in the error envelope. */
  private async store<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw new ApiError(
        'UNAVAILABLE',
        'Cluster store unavailable; retry later',
        { reason: String((err as Error).message ?? err) },
        { 'retry-after': '2' },
      );
    }
  }

  // ------------------------------------------------------------------ reads and requests across nodes

  /** Live peers with an advertised URL (heartbeat info), cached for one renew interval. */
  async peers(): Promise<Array<{ id: string; url: string }>> {
    return (await this.peerList()).peers;
  }

  /**
   * Live peers with a verified URL, and how many live node entries were not trusted (no valid MAC):
   * a read gathered without them is partial (their rows, if they are real nodes, are missing).
   */
  async peerList(): Promise<{ peers: Array<{ id: string; url: string }>; untrusted: number }> {
    const now = this.now();
    if (this.peerCache && now - this.peerCache.at < this.renewMs) return this.peerCache;
    const others = this.live.filter((n) => n !== this.node);
    const infos = others.length ? await this.cmd.mget(...others.map((n) => this.k(`node:${n}`))) : [];
    const peers: Array<{ id: string; url: string }> = [];
    let untrusted = 0;
    others.forEach((id, i) => {
      const url = this.trustedUrl(id, infos[i]);
      if (url) peers.push({ id, url });
      else if (infos[i]) untrusted++;
    });
    this.peerCache = { at: now, peers, untrusted };
    return this.peerCache;
  }

  /**
   * Gathered read: a GET this node cannot answer (e.g. a trace that lives on the node owning its
   * instance's shard) is asked of every live peer in parallel, with the caller's own credentials;
   * the first 200 answer is returned (its JSON body), or null when no peer has it. A request that
   * already came from a peer is never passed on again.
   */
  async fromPeers(request: Request, timeoutMs = 2000): Promise<unknown | null> {
    if (request.method !== 'GET' || request.headers.has(FORWARDED_HEADER)) return null;
    const peers = await this.peers().catch(() => []);
    if (!peers.length) return null;
    const { path, credentials } = peerRequestParts(request);
    const headers: Record<string, string> = {
      ...this.peerHeaders('GET', path),
      accept: 'application/json',
      ...credentials,
    };
    const ask = async (p: { url: string }) => {
      const res = await fetch(p.url + path, { headers, signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) throw new Error(String(res.status));
      return (await res.json()) as unknown;
    };
    try {
      return await Promise.any(peers.map(ask));
    } catch {
      return null;
    }
  }

  /** Base URL of the node holding the lease of an instance's shard; null when that is this node or unknown. */
  async ownerUrl(instanceId: string): Promise<string | null> {
    const holder = await this.cmd.get(this.k(`lease:${this.shardOfInstance(instanceId)}`));
    if (!holder || holder === this.node) return null;
    return this.trustedUrl(holder, await this.cmd.get(this.k(`node:${holder}`)));
  }

  /**
   * The URL in a node's heartbeat info when its MAC (CLUSTER_SECRET) proves a node wrote it, else
   * null: anyone who can write to Redis could otherwise name a URL that receives callers' API keys.
   * A refused URL is logged once.
   */
  private trustedUrl(id: string, info: string | null | undefined): string | null {
    const v = info ? parseInfo(info) : null;
    if (typeof v?.url !== 'string' || !v.url) return null;
    if (this.keys.verifyNode(id, v.url, v.mac)) return v.url;
    const seen = `${id}\n${v.url}`;
    if (!this.untrustedUrls.has(seen)) {
      if (this.untrustedUrls.size >= 1000) this.untrustedUrls.clear();
      this.untrustedUrls.add(seen);
      this.gw.log.warn(
        { node: id, url: v.url },
        'cluster: a node entry in Redis advertises a URL without a valid MAC of this CLUSTER_SECRET (written by something other than a node, or a node with another secret); never contacted',
      );
    }
    return null;
  }

  /**
   * Passes a webhook this node cannot serve (its channel connection lives on the owner, e.g. the
   * Slack Events API verified by the owner's adapter) to the owner: same path, raw body and headers.
   * Null when the request already came from a peer or no owner is reachable.
   */
  async forwardToOwner(instanceId: string, request: Request, rawBody: string): Promise<Response | null> {
    if (request.headers.has(FORWARDED_HEADER)) return null;
    const url = await this.ownerUrl(instanceId).catch(() => null);
    if (!url) return null;
    const headers = new Headers();
    request.headers.forEach((v, k) => {
      if (k === 'content-type' || k === 'user-agent' || k.startsWith('x-slack-')) headers.set(k, v);
    });
    headers.set(FORWARDED_HEADER, this.node);
    const u = new URL(request.url);
    try {
      const res = await fetch(url + u.pathname + u.search, {
        method: request.method,
        headers,
        body: rawBody,
        signal: AbortSignal.timeout(10_000),
      });
      const out = new Headers();
      for (const h of ['content-type', 'retry-after']) {
        const v = res.headers.get(h);
        if (v) out.set(h, v);
      }
      return new Response(await res.text(), { status: res.status, headers: out });
    } catch (err) {
      this.gw.log.warn({ err: String(err), owner: url }, 'cluster: forwarding to the owner failed');
      return null;
    }
  }

  // ------------------------------------------------------------------ status and shutdown

  async status(): Promise<ClusterStatus> {
    const live = (await this.cmd.smembers(this.k('nodes'))).sort();
    const infos = live.length ? await this.cmd.mget(...live.map((n) => this.k(`node:${n}`))) : [];
    const meta = await this.cmd.hgetall(this.k('leasemeta'));
    const pipe = this.cmd.pipeline();
    for (let s = 0; s < this.o.shards; s++)
      pipe
        .get(this.k(`lease:${s}`))
        .pttl(this.k(`lease:${s}`))
        .get(this.k(`epoch:${s}`));
    const r = ((await pipe.exec()) ?? []).map(([, v]) => v);
    const byNode = new Map<string, ClusterStatus['nodes'][number]['shards']>();
    const unowned: number[] = [];
    for (let s = 0; s < this.o.shards; s++) {
      const holder = r[s * 3] as string | null;
      const pttl = r[s * 3 + 1] as number;
      const epoch = Number(r[s * 3 + 2] ?? 0);
      if (!holder) {
        unowned.push(s);
        continue;
      }
      const m = meta[String(s)]?.split('|');
      const list = byNode.get(holder) ?? [];
      list.push({
        shard: s,
        epoch,
        leaseAgeMs: pttl >= 0 ? this.o.leaseMs - pttl : null,
        acquiredAt: m?.[2] ? new Date(Number(m[2]) * 1000).toISOString() : null,
      });
      byNode.set(holder, list);
    }
    const ids = new Set([...live.filter((_, i) => infos[i] !== null), ...byNode.keys()]);
    return {
      node: this.node,
      shards: this.o.shards,
      leaseMs: this.o.leaseMs,
      nodes: [...ids].sort().map((id) => {
        const i = live.indexOf(id);
        return {
          id,
          self: id === this.node,
          info: i >= 0 && infos[i] ? parseInfo(infos[i]!) : null,
          shards: byNode.get(id) ?? [],
        };
      }),
      unowned,
      counters: {
        ...this.counters,
        configPublished: this.config.counters.published,
        configApplied: this.config.counters.applied,
        configRejected: this.config.counters.rejected,
        personLogSkipped: this.personLog.counters.skipped,
        liveGaps: this.relay.counters.gaps,
        liveResyncs: this.relay.counters.resyncs,
      },
    };
  }

  /** Graceful: hand every shard off, announce, leave. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    // Bounded: every call of a tick has a command timeout, but stop must not depend on it.
    const waitUntil = this.now() + this.o.leaseMs;
    while (this.ticking && this.now() < waitUntil) await Bun.sleep(5);
    // From here the timer's ticks only renew the leases still held, until every release is done.
    this.stopped = true;
    // Leave the membership FIRST: the others compute this node's shards as theirs at once and
    // take each one the moment its lease is released (notice below), instead of after a heartbeat TTL.
    try {
      await this.cmd
        .multi()
        .del(this.k(`node:${this.node}`))
        .srem(this.k('nodes'), this.node)
        .exec();
      await this.cmd.publish(this.k('notice'), JSON.stringify({ type: 'leaving', node: this.node }));
    } catch {
      /* the heartbeat expires on its own */
    }
    await Promise.all([...this.owned.keys()].map((s) => this.release(s, 'shutdown')));
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.config.stop();
    this.personLog.stop();
    await this.config.publish();
    try {
      await this.cmd
        .multi()
        .del(this.k(`node:${this.node}`))
        .srem(this.k('nodes'), this.node)
        .exec();
      await this.cmd.publish(this.k('notice'), JSON.stringify({ type: 'left', node: this.node }));
    } catch {
      /* the heartbeat expires on its own */
    }
    this.closed = true;
    this.fenceTimer?.cancel();
    this.reader.disconnect();
    await this.consumerDone?.catch(() => {});
    for (const c of [this.lease, this.cmd, this.sub]) c.disconnect();
    this.rateLimiter.close();
  }
}

const startedAt = new Date().toISOString();

/** conversation → instance entries kept in memory (the conversations table answers the rest). */
const CONV_CACHE_MAX = 50_000;
/** Unacknowledged stream entry ids kept for retry while Redis does not answer. */
const MAX_PENDING_ACK_IDS = 200_000;
/** A shard whose ingest failed is read again after this long. */
const INGEST_RETRY_MS = 500;
/** How long an entry for an unknown instance waits for its configuration before it is dead-lettered. */
const UNKNOWN_INSTANCE_GRACE_MS = 10_000;
/** Records kept in `<prefix>deadletter`. */
const DEAD_LETTER_KEEP = 1000;

/** A stream entry that could not be handled, as kept in `<prefix>deadletter`: the entry itself only sealed. */
interface DeadLetterRecord {
  /** Unique (entry ids repeat across shards). */
  id: string;
  shard: number;
  entryId: string;
  reason: string;
  node: string;
  at: string;
  /** The entry's fields (JSON), sealed with the cluster secret. */
  sealed: string;
}

export interface DeadLetterView extends Omit<DeadLetterRecord, 'sealed'> {
  kind: 'inbound' | 'send' | null;
  /** The message with tokens, keys and inline media masked; null when it is not one. */
  message: Record<string, unknown> | null;
  replayable: boolean;
  /** Why it cannot be replayed. */
  problem: string | null;
}

export function deadLetterContext(id: string): string {
  return `deadletter\n${id}`;
}

/** A list value: a record, or one of an older version (entry `fields` in plain text, `id` = entry id). */
function parseRecord(raw: string): (Partial<DeadLetterRecord> & { fields?: unknown }) | null {
  try {
    const v = JSON.parse(raw) as unknown;
    return v && typeof v === 'object' ? (v as Partial<DeadLetterRecord>) : null;
  } catch {
    return null;
  }
}

function isSealed(r: Partial<DeadLetterRecord> | null): r is DeadLetterRecord {
  return typeof r?.sealed === 'string' && typeof r.id === 'string';
}

/** Field names whose values a dead-letter view never shows in full (e.g. a Discord interaction token, inline media). */
const SECRET_FIELD = /token|secret|password|authorization|cookie|api_?key|signature|base64/i;

function masked(v: unknown, key = ''): unknown {
  if (SECRET_FIELD.test(key) && v !== null && v !== undefined) return typeof v === 'string' ? maskSecret(v) : '****';
  if (Array.isArray(v)) return v.map((x) => masked(x));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, masked(x, k)]));
  return v;
}

/** What stream entry messages are sealed for (see ClusterKeys.seal). */
export const STREAM_CONTEXT = 'stream-entry';
/** What the upgrade's record of the older version's last stream entries is sealed for. */
const LEGACY_MARK_CONTEXT = 'stream-legacy';

/**
 * A stream entry as the message it carries, or why it cannot be one. `open` turns the sealed
 * message into its JSON (null: not sealed with this cluster's secret, and not an older version's
 * plain entry).
 */
function parseEntry(
  id: string,
  fields: string[],
  open: (m: string) => string | null,
): { msg: InboundMessage; kind: 'inbound' | 'send' } | string {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]] = fields[i + 1];
  const text = open(f.m ?? '');
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
function permanentIngestError(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT');
}

/** Orders stream entry ids ("ms-seq"). */
function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am !== bm ? am - bm : as - bs;
}

function streamIdOf(row: InboxRow): string | null {
  try {
    const id = (JSON.parse(row.payload_json) as InboundMessage).extra?.clusterStreamId;
    return typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}

export function defaultNodeId(): string {
  return `${hostname()}-${process.pid}-${newId().slice(0, 6)}`;
}

/** Starts cluster mode for a gateway (called from gateway.start when REDIS_URL is set). */
export async function startCluster(gw: Gateway): Promise<Cluster> {
  const c = gw.config;
  const cluster = new Cluster(gw, {
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
  gw.onClose(() => cluster.stop());
  return cluster;
}

/** A node's heartbeat info as stored in Redis; anything that is not a JSON object reads as null. */
function parseInfo(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
