// Cluster, one in-process node on the local redis-server: a node that gets a shard back (after it
// was fenced) runs none of its old unfinished rows before the shard's catch-up has compared them
// with the stream — a row another owner finished meanwhile is closed, never run again. (A wake
// that reaches such a conversation first, e.g. a retry timer, used to run and send it again.)
import { afterAll, beforeAll, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { shardOf } from '../../src/cluster/membership/shards.ts';
import type { InboundMessage } from '../../src/core/message.ts';
import { conversationIdFor } from '../../src/services/inbox.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { createTestGateway } from '../helpers.ts';
import { CLUSTER_SECRET, dropKeys, REDIS_URL, until } from './nodes.ts';

const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
const SHARDS = 4;
const t = createTestGateway({
  REDIS_URL,
  CLUSTER_SECRET,
  CLUSTER_KEY_PREFIX: prefix,
  CLUSTER_NODE_ID: 'catchup',
  CLUSTER_SHARDS: String(SHARDS),
  CLUSTER_LEASE_MS: '1500',
});
let agent: FakeAgent;
let evo: FakeEvolution;

beforeAll(async () => {
  agent = startFakeAgent({ protocol: 'json' });
  evo = await startFakeEvolution();
  await t.gw.start();
  await until(
    async () => (await t.call('GET', '/api/v2/cluster')).body.data.unowned.length === 0,
    5000,
    'every shard owned',
  );
});
afterAll(async () => {
  await t.close();
  await agent.stop();
  await evo.stop();
  await dropKeys(prefix);
});

test('a re-acquired shard runs no old row before its catch-up: a row another owner finished is closed, not sent again', async () => {
  const created = await t.call('POST', '/api/v1/instances', {
    name: 'bot',
    evolution_url: evo.url,
    evolution_key: evo.apikey,
    agent_api_url: agent.url,
  });
  expect(created.status).toBe(201);
  const instanceId: string = (await t.call('GET', '/api/v2/instances/bot')).body.data.id;
  const shard = shardOf(instanceId, SHARDS);
  // Internals driven directly: the race needs a wake between acquisition and catch-up.
  const leases = (
    t.gw.cluster as unknown as {
      leases: {
        lose(s: number, why: string): Promise<void>;
        acquire(s: number[]): Promise<void>;
        timer: ReturnType<typeof setInterval> | null;
      };
    }
  ).leases;
  const cluster = {
    lose: (s: number, why: string) => leases.lose(s, why),
    acquire: (s: number[]) => leases.acquire(s),
  };
  if (leases.timer) clearInterval(leases.timer); // no periodic tick re-acquires behind the test's back
  leases.timer = null;
  await cluster.lose(shard, 'test: fenced');

  // The shard's stream exists (it always does once used; XDEL leaves it empty) and no longer has
  // the entry: another owner finished it.
  const redis = new Redis(REDIS_URL);
  await redis.xadd(`${prefix}stream:${shard}`, '1-1', 'm', 'x');
  await redis.xdel(`${prefix}stream:${shard}`, '1-1');
  redis.disconnect();
  // A row of this node's earlier ownership, whose stream entry another owner finished (gone).
  const jid = '15550009999@s.whatsapp.net';
  const msg: InboundMessage = {
    instanceId,
    providerMessageId: 'finished-elsewhere',
    chat: { chatId: jid, kind: 'direct' },
    sender: { id: jid },
    text: 'answered by the other owner',
    contentType: 'text',
    timestamp: Date.now(),
    extra: { clusterStreamId: '1-1' },
  };
  await t.gw.pipeline.inbox.ingest(msg);
  const conversationId = conversationIdFor(instanceId, msg.chat);

  await cluster.acquire([shard]);
  t.gw.pipeline.wake(conversationId); // e.g. a retry timer of the old turn firing now
  const row = () =>
    t.gw.db
      .query<{ id: string; status: string }, [string]>('SELECT id, status FROM inbox WHERE provider_message_id = ?')
      .get('finished-elsewhere')!;
  await until(() => row().status === 'completed', 3000, 'row closed by the catch-up');
  await Bun.sleep(200);
  expect(agent.requests.filter((r) => r.message === 'answered by the other owner')).toEqual([]);
  expect(evo.sent).toEqual([]);
  expect(t.gw.pipeline.traces.get(row().id)!.steps.map((s) => s.step)).toContain('handled_by_other_node');
});
