// Cluster mode, API side, with real node processes on the local redis-server: rate limits shared
// across nodes, Slack Events posted to a non-owner forwarded to the owner, gathered trace reads
// honour instance-bound keys, lease metrics on /metrics, poison stream entries dead-lettered.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { ClusterKeys } from '../../src/cluster/crypto.ts';
import { STREAM_CONTEXT } from '../../src/cluster/handoff/entry.ts';
import { shardOf } from '../../src/cluster/membership/shards.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { startFakeEvolution } from '../fakes/evolution.ts';
import { eventCallback, signRequest } from '../fakes/slack/events.ts';
import { FakeSlack } from '../fakes/slack/server.ts';
import {
  CLUSTER_SECRET,
  type ClusterHarness,
  clusterHarness,
  type NodeProc,
  REDIS_URL,
  until,
  upsert,
  waitForShardOwner,
} from './nodes.ts';

/** A stream entry's message as a node of this cluster seals it. */
const sealed = (text: string) => new ClusterKeys(CLUSTER_SECRET).seal(text, STREAM_CONTEXT);
const opened = (value: string) => new ClusterKeys(CLUSTER_SECRET).open(value, STREAM_CONTEXT);

const SECRET = 'cluster-signing-secret-0123456789abcdef';

let agent: FakeAgent;
let h: ClusterHarness | null = null;

beforeAll(() => {
  agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
});
afterAll(async () => {
  await agent.stop();
});
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

async function twoNodes(): Promise<NodeProc[]> {
  h = clusterHarness();
  return Promise.all(['a1', 'a2'].map((id) => h!.start(id)));
}

async function holderOf(nodes: NodeProc[], instanceId: string): Promise<{ owner: NodeProc; other: NodeProc }> {
  const owner = await waitForShardOwner(nodes, instanceId);
  return { owner, other: nodes.find((n) => n !== owner)! };
}

describe('cluster API (2 node processes, real Redis)', () => {
  test("one key's rate limit is one budget across nodes; /metrics shows lease renewals and owned shards", async () => {
    const nodes = await twoNodes();
    expect((await nodes[0].call('PUT', '/api/v2/settings/rateLimit.eventsListPerMinute', { value: 4 })).status).toBe(
      200,
    );
    const key = (await nodes[0].call('POST', '/api/v2/keys', { name: 'reader', scopes: ['events:read'] })).body.data
      .key as string;
    await until(
      async () => (await nodes[1].call('GET', '/api/v2/settings/rateLimit.eventsListPerMinute')).body.data?.value === 4,
      3000,
      'setting replicated',
    );
    await until(
      async () => (await nodes[1].call('GET', '/api/v2/keys')).body.items?.some((k: any) => k.name === 'reader'),
      3000,
      'key replicated',
    );
    // Eight listings alternating between the nodes: with per-node buckets 8 would pass.
    const statuses: number[] = [];
    const remaining: string[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${nodes[i % 2].url}/api/v2/traces`, { headers: { 'x-api-key': key } });
      statuses.push(res.status);
      remaining.push(res.headers.get('x-ratelimit-remaining')!);
      await res.arrayBuffer();
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429, 429, 429]);
    expect(remaining.slice(0, 4)).toEqual(['3', '2', '1', '0']);

    // Both nodes renew leases and hold all 32 shards between them.
    await until(
      async () => {
        let owned = 0;
        for (const n of nodes) {
          const text = await (await fetch(`${n.url}/metrics`)).text();
          const count = Number(/^switchboard_cluster_lease_renew_seconds_count (\d+)/m.exec(text)?.[1] ?? 0);
          if (count < 1) return false;
          owned += Number(/^switchboard_cluster_owned_shards (\d+)/m.exec(text)?.[1] ?? -100);
        }
        return owned === 32;
      },
      5000,
      'renewals observed and 32 shards owned',
    );
  }, 30_000);

  test('Slack Events posted to the non-owner are verified and handled by the owner; bad signatures still 401', async () => {
    const slack = new FakeSlack().start();
    try {
      const nodes = await twoNodes();
      const created = await nodes[0].call('POST', '/api/v2/instances', {
        name: 'sl',
        channel: 'slack',
        channelConfig: { slackBotToken: 'xoxb-cluster-bot', slackSigningSecret: SECRET, slackApiUrl: slack.apiUrl },
        agent: { url: agent.url, type: 'json', timeoutSeconds: 10 },
      });
      expect(created.status).toBe(201);
      const { owner, other } = await holderOf(nodes, created.body.data.id);
      await until(
        async () => (await owner.call('GET', '/api/v2/instances/sl')).body.data?.status === 'connected',
        6000,
        'slack connected on the owner',
      );
      await until(
        async () => (await other.call('GET', '/api/v2/instances/sl')).status === 200,
        3000,
        'instance replicated',
      );
      const post = async (n: NodeProc, body: unknown, secret = SECRET) => {
        const raw = JSON.stringify(body);
        const res = await fetch(`${n.url}/webhook/slack/sl`, {
          method: 'POST',
          body: raw,
          headers: { ...signRequest(secret, raw), 'content-type': 'application/json' },
        });
        const text = await res.text();
        return { status: res.status, body: (text.startsWith('{') ? JSON.parse(text) : text) as any };
      };
      const event = eventCallback(
        {
          type: 'app_mention',
          user: 'UHUMAN01',
          text: '<@UBOT0001> via the other node',
          ts: '1765375900.000100',
          channel: 'C0000001',
        },
        { eventId: 'EvCLUSTER01' },
      );
      const res = await post(other, event);
      expect(res.status).toBe(200);
      expect(res.body.trace_id).toBeTruthy();
      await until(() => slack.callsOf('chat.postMessage').length >= 1, 6000, 'reply posted');
      expect(slack.callsOf('chat.postMessage')[0].params.text).toBe('echo: via the other node');
      // Slack's retry of the same event to the owner is a duplicate with the same trace.
      const retry = await post(owner, event);
      expect(retry.status).toBe(200);
      expect(retry.body.trace_id).toBe(res.body.trace_id);
      const forged = await post(
        other,
        eventCallback({
          type: 'app_mention',
          user: 'UHUMAN01',
          text: '<@UBOT0001> forged',
          ts: '1765375901.000100',
          channel: 'C0000001',
        }),
        'wrong-secret',
      );
      expect(forged.status).toBe(401);
      await Bun.sleep(300);
      expect(slack.callsOf('chat.postMessage')).toHaveLength(1);
      expect(agent.requests.filter((r) => r.message === 'forged')).toHaveLength(0);
    } finally {
      await slack.stop();
    }
  }, 30_000);

  test('gathered trace reads keep instance-bound keys to their instances', async () => {
    const evo = await startFakeEvolution();
    try {
      const nodes = await twoNodes();
      const mk = async (name: string) => {
        const res = await nodes[0].call('POST', '/api/v1/instances', {
          name,
          evolution_url: evo.url,
          evolution_key: evo.apikey,
          agent_api_url: agent.url,
          agent_timeout: 10,
        });
        expect(res.status).toBe(201);
        return {
          token: new URL(res.body.webhook_url).searchParams.get('token')!,
          id: (await nodes[0].call('GET', `/api/v2/instances/${name}`)).body.data.id as string,
        };
      };
      const a = await mk('bota');
      const b = await mk('botb');
      const key = (
        await nodes[0].call('POST', '/api/v2/keys', { name: 'only-b', scopes: ['events:read'], instanceIds: [b.id] })
      ).body.data.key as string;
      expect(key).toBeTruthy();
      const { owner, other } = await holderOf(nodes, a.id);
      await until(async () => (await other.call('GET', '/api/v2/instances/bota')).status === 200, 3000, 'replicated');
      const posted = await other.call(
        'POST',
        `/webhook/evolution/bota?token=${a.token}`,
        upsert('bota', 'g-1', 'hello'),
        { 'x-api-key': '' },
      );
      expect(posted.status).toBe(200);
      const traceId: string = posted.body.trace_id;
      await until(
        async () => (await owner.call('GET', `/api/v2/traces/${traceId}`)).status === 200,
        5000,
        'trace on the owner',
      );
      // The admin key reads it from either node; the key bound to the other instance gets 404 from both.
      expect((await other.call('GET', `/api/v2/traces/${traceId}`)).status).toBe(200);
      await until(
        async () => (await other.call('GET', '/api/v2/traces', undefined, { 'x-api-key': key })).status === 200,
        3000,
        'key replicated',
      );
      for (const n of [owner, other])
        expect((await n.call('GET', `/api/v2/traces/${traceId}`, undefined, { 'x-api-key': key })).status).toBe(404);
    } finally {
      await evo.stop();
    }
  }, 30_000);
  test("an instance edited on another node keeps the owner's conversations and traces (replication never deletes the row)", async () => {
    const evo = await startFakeEvolution();
    try {
      const nodes = await twoNodes();
      const res = await nodes[0].call('POST', '/api/v1/instances', {
        name: 'keep',
        evolution_url: evo.url,
        evolution_key: evo.apikey,
        agent_api_url: agent.url,
        agent_timeout: 10,
      });
      const token = new URL(res.body.webhook_url).searchParams.get('token')!;
      const id = (await nodes[0].call('GET', '/api/v2/instances/keep')).body.data.id as string;
      await until(
        async () => (await nodes[1].call('GET', '/api/v2/instances/keep')).status === 200,
        3000,
        'instance replicated',
      );
      const { owner, other } = await holderOf(nodes, id);
      const posted = await other.call(
        'POST',
        `/webhook/evolution/keep?token=${token}`,
        upsert('keep', 'k-1', 'hello'),
        { 'x-api-key': '' },
      );
      await until(() => evo.sent.length >= 1, 8000, 'reply');
      const traceId = posted.body.trace_id as string;
      await until(
        async () => (await owner.call('GET', `/api/v2/traces/${traceId}`)).body.data?.status === 'completed',
        3000,
        'trace completed on the owner',
      );
      // Edit on the node that does not own it; the change replicates to the owner.
      expect((await other.call('PATCH', '/api/v2/instances/keep', { agent: { timeoutSeconds: 20 } })).status).toBe(200);
      await until(
        async () => (await owner.call('GET', '/api/v2/instances/keep')).body.data.agent.timeoutSeconds === 20,
        3000,
        'edit replicated',
      );
      const trace = await owner.call('GET', `/api/v2/traces/${traceId}`, undefined, {
        'x-switchboard-forwarded-by': 'test',
      });
      expect(trace.status).toBe(200);
      expect(trace.body.data.status).toBe('completed');
      const convs = await owner.call('GET', '/api/v2/conversations?instanceId=keep');
      expect(convs.body.items.length).toBe(1);
    } finally {
      await evo.stop();
    }
  }, 30_000);

  test("poison stream entries are dead-lettered and every shard keeps answering; a deleted instance's pending entries leave the stream", async () => {
    const evo = await startFakeEvolution();
    const r = new Redis(REDIS_URL);
    try {
      const nodes = await twoNodes();
      const mk = async (name: string) => {
        const res = await nodes[0].call('POST', '/api/v1/instances', {
          name,
          evolution_url: evo.url,
          evolution_key: evo.apikey,
          agent_api_url: agent.url,
          agent_timeout: 10,
        });
        expect(res.status).toBe(201);
        const id = (await nodes[0].call('GET', `/api/v2/instances/${name}`)).body.data.id as string;
        await until(
          async () => (await nodes[1].call('GET', `/api/v2/instances/${name}`)).status === 200,
          3000,
          'instance replicated',
        );
        return { token: new URL(res.body.webhook_url).searchParams.get('token')!, id };
      };
      const bot = await mk('bot');
      const { other } = await holderOf(nodes, bot.id);
      // Every shard's stream starts with two entries no node can ingest: not JSON, and a message
      // for an instance no node knows (old, so past the wait for its configuration).
      const stranger = {
        instanceId: 'no-such-instance',
        providerMessageId: 'p1',
        chat: { chatId: '1', kind: 'direct' },
        sender: { id: 'u1' },
        text: 'hi',
        contentType: 'text',
        timestamp: 1,
      };
      for (let s = 0; s < 32; s++) {
        // Sealed as a node seals its entries (an unsealed one is refused before it is read at all).
        await r.xadd(`${h!.prefix}stream:${s}`, '1-1', 'm', sealed('{not json'), 'k', 'inbound');
        await r.xadd(`${h!.prefix}stream:${s}`, '1-2', 'm', sealed(JSON.stringify(stranger)), 'k', 'inbound');
      }
      for (let i = 0; i < 3; i++) {
        const res = await other.call(
          'POST',
          `/webhook/evolution/bot?token=${bot.token}`,
          upsert('bot', `poison-${i}`, `after poison ${i}`),
          { 'x-api-key': '' },
        );
        expect(res.status).toBe(200);
      }
      await until(() => evo.sent.length >= 3, 8000, 'replies behind the poison entries');
      expect(evo.sent.map((x) => x.text)).toEqual([0, 1, 2].map((i) => `echo: after poison ${i}`));
      await until(async () => (await r.llen(`${h!.prefix}deadletter`)) === 64, 5000, 'poison entries dead-lettered');
      const reasons = (await r.lrange(`${h!.prefix}deadletter`, 0, -1)).map((x) => JSON.parse(x).reason as string);
      expect(reasons.filter((x) => x.includes('not JSON'))).toHaveLength(32);
      expect(reasons.filter((x) => x.includes('no-such-instance'))).toHaveLength(32);
      const lens = async () => Promise.all(Array.from({ length: 32 }, (_, s) => r.xlen(`${h!.prefix}stream:${s}`)));
      await until(async () => (await lens()).every((n) => n === 0), 3000, 'streams empty');

      // An instance deleted with one message in flight (the agent never answers) and one queued behind it.
      const tmp = await mk('tmp');
      agent.plan((req) => (req.message.startsWith('slow') ? { hang: true } : undefined));
      for (const [id, text] of [
        ['t-1', 'slow one'],
        ['t-2', 'queued behind'],
      ]) {
        expect(
          (
            await other.call('POST', `/webhook/evolution/tmp?token=${tmp.token}`, upsert('tmp', id, text), {
              'x-api-key': '',
            })
          ).status,
        ).toBe(200);
      }
      await until(() => agent.requests.some((q) => q.message === 'slow one'), 5000, 'first message at the agent');
      const stream = `${h!.prefix}stream:${shardOf(tmp.id, 32)}`;
      const entriesOfTmp = async () =>
        (await r.xrange(stream, '-', '+')).filter(([, f]) => opened(f[1])?.includes(tmp.id)).length;
      expect(await entriesOfTmp()).toBe(2);
      expect((await other.call('DELETE', '/api/v2/instances/tmp')).status).toBeLessThan(300);
      await until(async () => (await entriesOfTmp()) === 0, 3000, 'entries of the deleted instance removed');
    } finally {
      agent.plan(null);
      r.disconnect();
      await evo.stop();
    }
  }, 30_000);
});
