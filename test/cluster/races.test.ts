// Cluster class on the local redis-server with an in-process gateway: a shard lost and owned
// again (new epoch) while a release or a catch-up of the previous period is still awaiting must
// keep the new period's ownership and stream cursor.
import { afterEach, describe, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { Cluster } from '../../src/cluster/index.ts';
import { ACQUIRE } from '../../src/cluster/lua.ts';
import { createTestGateway } from '../helpers.ts';
import { CLUSTER_SECRET, REDIS_URL } from './nodes.ts';

// Private state is reached on purpose: the races sit between awaits inside the cluster's parts.
type Owned = { epoch: number; validUntil: number; acquiredAt: number; draining: boolean };
type Parts = {
  leases: {
    owned: Map<number, Owned>;
    release(shard: number, why: string): Promise<void>;
    lose(shard: number, reason: string): Promise<void>;
  };
  handoff: { cursors: Map<number, string>; catchUpShard(shard: number): Promise<void> };
  lease: Redis;
  cmd: Redis;
  sub: Redis;
  reader: Redis;
  rateLimiter: { close(): void };
};

/** The internals the tests drive, gathered from the cluster's parts. */
function internalsOf(cluster: Cluster) {
  const p = cluster as unknown as Parts;
  return {
    owned: p.leases.owned,
    cursors: p.handoff.cursors,
    release: (shard: number, why: string) => p.leases.release(shard, why),
    lose: (shard: number, reason: string) => p.leases.lose(shard, reason),
    catchUpShard: (shard: number) => p.handoff.catchUpShard(shard),
    lease: p.lease,
    cmd: p.cmd,
    sub: p.sub,
    reader: p.reader,
    rateLimiter: p.rateLimiter,
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

async function setup() {
  const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
  const redis = new Redis(REDIS_URL);
  const t = createTestGateway();
  const cluster = new Cluster(t.gw, {
    redisUrl: REDIS_URL,
    nodeId: 'u1',
    prefix,
    shards: 4,
    leaseMs: 3000,
    dedupeTtlMs: 60_000,
    secret: CLUSTER_SECRET,
  });
  const c = internalsOf(cluster);
  cleanups.push(async () => {
    for (const r of [c.lease, c.cmd, c.sub, c.reader]) r.disconnect();
    c.rateLimiter.close();
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await t.close();
  });
  const [epoch] = (await redis.eval(ACQUIRE, 0, prefix, 'u1', 3000, 2)) as number[];
  const now = t.gw.clock.monotonic();
  c.owned.set(2, { epoch, validUntil: now + 2000, acquiredAt: Date.now(), draining: false });
  const again = () => {
    const next = {
      epoch: epoch + 1,
      validUntil: t.gw.clock.monotonic() + 2000,
      acquiredAt: Date.now(),
      draining: false,
    };
    c.owned.set(2, next);
    c.cursors.set(2, '5-0');
    return next;
  };
  return { cluster, c, again };
}

describe('cluster ownership periods (class, real Redis)', () => {
  test('a release of the old period finishing after the shard was lost and owned again leaves the new period alone', async () => {
    const { cluster, c, again } = await setup();
    c.cursors.set(2, '1-0');
    const releasing = c.release(2, 'rebalance'); // now awaiting (channel stop, acks, RELEASE)
    await c.lose(2, 'taken over meanwhile');
    const next = again();
    await releasing;
    expect(c.owned.get(2)).toBe(next);
    expect(c.cursors.get(2)).toBe('5-0');
    expect(cluster.ownsShard(2)).toBe(true);
  });

  test("a catch-up of the old period finishing after the shard was lost and owned again does not set the new period's cursor", async () => {
    const { cluster, c, again } = await setup();
    const catchingUp = c.catchUpShard(2); // now awaiting Redis (stream reads)
    await c.lose(2, 'taken over meanwhile');
    again();
    await catchingUp;
    expect(c.cursors.get(2)).toBe('5-0');
    expect(cluster.ownsShard(2)).toBe(true);
  });
});

describe('cluster conversation → instance cache (class, real Redis)', () => {
  test('stays bounded, and a conversation evicted from it is still recognised as owned', async () => {
    const { cluster, c } = await setup();
    const cache = (
      cluster as unknown as {
        conversations: { convInstance: Map<string, string>; remember(conv: string, inst: string): void };
      }
    ).conversations;
    const priv = {
      convInstance: cache.convInstance,
      rememberConversation: (conv: string, inst: string) => cache.remember(conv, inst),
    };
    const gw = (cluster as unknown as { host: ReturnType<typeof createTestGateway>['gw'] }).host;
    const inst = gw.instances.create({ name: 'cached', channel: 'api', agent: { url: 'http://127.0.0.1:9/agent' } });
    const msg = {
      instanceId: inst.id,
      providerMessageId: 'p1',
      chat: { chatId: 'chat-1', kind: 'direct' as const },
      sender: { id: 'u1' },
      text: 'hi',
      contentType: 'text' as const,
      timestamp: 1,
    };
    const { conversationId } = await gw.pipeline.inbox.ingest(msg);
    priv.rememberConversation(conversationId, inst.id);
    for (let i = 0; i < 50_000; i++) priv.rememberConversation(`c_other_${i}`, 'elsewhere');
    expect(priv.convInstance.size).toBe(50_000);
    expect(priv.convInstance.has(conversationId)).toBe(false);
    const shard = cluster.shardOfInstance(inst.id);
    c.owned.clear();
    expect(cluster.ownsConversation(conversationId)).toBe(false);
    c.owned.set(shard, { epoch: 1, validUntil: gw.clock.monotonic() + 2000, acquiredAt: Date.now(), draining: false });
    expect(cluster.ownsConversation(conversationId)).toBe(true);
  });
});
