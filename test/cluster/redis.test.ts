// Cluster mode when Redis restarts WITHOUT its data (no persistence): a dedicated redis-server on a
// free port is killed and started again mid-reply. The owner keeps its shard (reclaims the lease
// inside its self-fenced validity), pub/sub re-subscribes and the WebSocket client on the other
// node gets a resync of the running turn; configuration is put back for nodes that join later.
// Also: a Redis that stops answering with the connection up (SIGSTOP) — the owner fences itself on
// time (command timeouts, fence timer) and closes its channel connection, then recovers.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import type { Subprocess } from 'bun';
import Redis from 'ioredis';
import { shardOf } from '../../src/cluster/membership/shards.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import {
  CLUSTER_ADMIN_KEY,
  type ClusterHarness,
  clusterHarness,
  type NodeProc,
  shardOwner,
  until,
  upsert,
} from './nodes.ts';

const REPLY = 'a reply long enough to be streamed across the restart of redis';

let agent: FakeAgent;
let evo: FakeEvolution;
let h: ClusterHarness | null = null;
let redis: Subprocess | null = null;

function freePort(): number {
  const l = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const port = l.port;
  l.stop(true);
  return port;
}

async function startRedis(port: number): Promise<Subprocess> {
  const proc = Bun.spawn(
    ['redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdout: 'ignore', stderr: 'ignore' },
  );
  await until(
    async () => {
      const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
      r.on('error', () => {});
      try {
        await r.connect();
        return (await r.ping()) === 'PONG';
      } catch {
        return false;
      } finally {
        r.disconnect();
      }
    },
    5000,
    'redis-server up',
  );
  return proc;
}

beforeAll(async () => {
  agent = startFakeAgent({ protocol: 'agui', reply: () => REPLY, deltaChars: 3, deltaDelayMs: 90 });
  evo = await startFakeEvolution();
});
afterAll(async () => {
  await agent.stop();
  await evo.stop();
});
afterEach(async () => {
  await h?.stopAll();
  h = null;
  redis?.kill('SIGKILL');
  await redis?.exited;
  redis = null;
  evo.reset();
  agent.setBehaviour({ reply: () => REPLY, deltaDelayMs: 90 });
});

describe('cluster: Redis restarted without its data', () => {
  test('nodes recover (leases, pub/sub, config) and WebSocket subscribers get a resync of the running turn', async () => {
    const port = freePort();
    redis = await startRedis(port);
    h = clusterHarness({ REDIS_URL: `redis://127.0.0.1:${port}`, CLUSTER_LEASE_MS: '3000' });
    const nodes = await Promise.all(['r1', 'r2'].map((id) => h!.start(id)));
    const created = await nodes[0].call('POST', '/api/v1/instances', {
      name: 'bot',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      agent_api_url: agent.url,
      agent_timeout: 20,
    });
    expect(created.status).toBe(201);
    const token = new URL(created.body.webhook_url).searchParams.get('token')!;
    const instanceId: string = (await nodes[0].call('GET', '/api/v2/instances/bot')).body.data.id;
    let owner: NodeProc | null = null;
    await until(
      async () =>
        (owner = await shardOwner(nodes, instanceId)) !== null &&
        (await nodes[1].call('GET', '/api/v2/instances/bot')).status === 200,
      8000,
      'owned and replicated',
    );
    const other = nodes.find((n) => n !== owner)!;

    const frames: any[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${other.port}/ws?apiKey=${CLUSTER_ADMIN_KEY}`);
    await new Promise((r) => (ws.onopen = r));
    ws.onmessage = (e) => frames.push(JSON.parse(String(e.data)));
    ws.send(JSON.stringify({ type: 'subscribe', channels: ['conversations'] }));
    await Bun.sleep(200);
    const payloads = () => frames.filter((f) => f.channel === 'conversations').map((f) => f.payload);

    const post = (n: NodeProc, id: string, text: string) =>
      n.call('POST', `/webhook/evolution/bot?token=${token}`, upsert('bot', id, text), { 'x-api-key': '' });
    expect((await post(other, 'rr-1', 'before restart')).status).toBe(200);
    await until(
      () => payloads().filter((p) => p.type === 'TEXT_MESSAGE_CONTENT').length >= 2,
      5000,
      'deltas on the other node',
    );

    // Redis dies and comes back empty on the same port, mid-reply.
    redis.kill('SIGKILL');
    await redis.exited;
    redis = await startRedis(port);

    await until(
      () => payloads().some((p) => p.type === 'CUSTOM' && p.name === 'TURN_RESTARTED' && p.value?.reason === 'resync'),
      8000,
      'resync on the other node',
    ).catch((e) => {
      console.log(
        payloads()
          .map((p) => p.type + (p.delta ? `:${p.delta}` : ''))
          .join(' '),
      );
      for (const n of nodes)
        void n.call('GET', '/api/v2/cluster').then((r) => console.log(n.id, JSON.stringify(r.body.data?.counters)));
      for (const n of nodes)
        console.log(n.id, n.log.filter((l) => /"level":(40|50)|"msg":"cluster:/.test(l)).join('\n'));
      return Bun.sleep(500).then(() => {
        throw e;
      });
    });
    await until(() => payloads().some((p) => p.type === 'RUN_FINISHED'), 10_000, 'turn finished').catch((e) => {
      console.log(
        payloads()
          .map((p) => p.type + (p.delta ? `:${p.delta}` : ''))
          .join(' '),
      );
      for (const n of nodes)
        console.log(n.id, n.log.filter((l) => /"level":(40|50)|"msg":"cluster:/.test(l)).join('\n'));
      throw e;
    });
    const all = payloads();
    const restartAt = all.findLastIndex((p) => p.type === 'CUSTOM' && p.name === 'TURN_RESTARTED');
    const after = all
      .slice(restartAt + 1)
      .filter((p) => p.type === 'TEXT_MESSAGE_CONTENT')
      .map((p) => p.delta)
      .join('');
    expect(after).toBe(REPLY); // the text so far again in one piece, then the rest
    await until(() => evo.sent.length >= 1, 5000, 'reply delivered');
    ws.close();

    // Leases are held again (reclaimed by the same owner) and hand-off works on the new Redis.
    await until(
      async () => {
        const st = (await other.call('GET', '/api/v2/cluster')).body.data;
        return (
          st.unowned.length === 0 &&
          st.nodes.some(
            (n: any) => n.id === owner!.id && n.shards.some((s: any) => s.shard === shardOf(instanceId, 32)),
          )
        );
      },
      8000,
      'all shards owned again, the instance still by its owner',
    );
    expect((await post(other, 'rr-2', 'after restart')).status).toBe(200);
    await until(() => evo.sent.length >= 2, 8000, 'second reply');
    await Bun.sleep(300);
    expect(evo.sent.map((s) => s.text)).toEqual([REPLY, REPLY]);
    expect(agent.requests).toHaveLength(2); // one agent run per message: nothing re-ran after the restart

    // The configuration was put back into the empty Redis: a node joining now sees the instance.
    const late = await h.start('r3');
    await until(
      async () => (await late.call('GET', '/api/v2/instances/bot')).status === 200,
      5000,
      'late node got the configuration',
    );
  }, 50_000);
});

describe('cluster: Redis stops answering', () => {
  test('Redis stops answering with its connection up (SIGSTOP): the owner closes its channel connection before its lease ends, and recovers on SIGCONT', async () => {
    const port = freePort();
    redis = await startRedis(port);
    h = clusterHarness({ REDIS_URL: `redis://127.0.0.1:${port}`, CLUSTER_LEASE_MS: '3000' });
    const node = await h.start('f1');
    agent.setBehaviour({ deltaDelayMs: 0 });
    const created = await node.call('POST', '/api/v1/instances', {
      name: 'bot',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      agent_api_url: agent.url,
      agent_timeout: 10,
    });
    expect(created.status).toBe(201);
    const token = new URL(created.body.webhook_url).searchParams.get('token')!;
    const running = async () => (await node.call('GET', '/api/v2/instances/bot/status')).body.data?.running === true;
    await until(running, 8000, 'channel connection running on the owner');

    redis.kill('SIGSTOP');
    const frozenAt = Date.now();
    try {
      // Lease 3000 ms, renewed every 1000 ms, valid until renewal + lease − 600 ms margin.
      await until(async () => !(await running()), 4000, 'channel connection stopped');
      expect(Date.now() - frozenAt).toBeLessThan(3000);
      expect(node.log.some((l) => l.includes('cluster: shard lost') && l.includes('self-fence'))).toBe(true);
      await Bun.sleep(3200 - (Date.now() - frozenAt)); // past the lease in Redis's own time
    } finally {
      redis.kill('SIGCONT');
    }
    await until(running, 10_000, 'channel connection back after SIGCONT');
    const r = await node.call(
      'POST',
      `/webhook/evolution/bot?token=${token}`,
      upsert('bot', 'after-freeze', 'still there?'),
      { 'x-api-key': '' },
    );
    expect(r.status).toBe(200);
    await until(() => evo.sent.length === 1, 8000, 'reply after recovery');
    expect(evo.sent[0].text).toBe(REPLY);
  }, 40_000);
});
