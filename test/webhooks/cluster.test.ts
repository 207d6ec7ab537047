// Outgoing webhooks in cluster mode (3 node processes, real Redis): a subscription created on one
// node reaches every node (configuration replication); each event is delivered once for the whole
// cluster, by the node that recorded it (the owner of the conversation's shard).
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { type ClusterHarness, clusterHarness, until, upsert } from '../cluster/nodes.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { type Receiver, startReceiver } from './receiver.ts';

let agent: FakeAgent;
let evo: FakeEvolution;
let h: ClusterHarness | null = null;
let rx: Receiver | null = null;

beforeAll(async () => {
  agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
  evo = await startFakeEvolution();
});
afterAll(async () => {
  await agent.stop();
  await evo.stop();
});
afterEach(async () => {
  await h?.cleanup();
  rx?.stop();
  h = null;
  rx = null;
});

describe('outgoing webhooks in a cluster', () => {
  test('three nodes: every message event is delivered exactly once, verified, in order per conversation', async () => {
    h = clusterHarness();
    const nodes = await Promise.all(['n1', 'n2', 'n3'].map((id) => h!.start(id)));
    rx = startReceiver();
    const sub = await nodes[1].call('POST', '/api/v2/webhooks', {
      url: rx.url,
      events: ['message.received', 'message.sent'],
    });
    expect(sub.status).toBe(201);
    rx.secrets = [sub.body.data.secret];
    const res = await nodes[0].call('POST', '/api/v1/instances', {
      name: 'bot',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      agent_api_url: agent.url,
      agent_timeout: 10,
    });
    expect(res.status).toBe(201);
    const token = new URL(res.body.webhook_url).searchParams.get('token')!;
    await until(
      async () => {
        for (const n of nodes) {
          if ((await n.call('GET', '/api/v2/instances/bot')).status !== 200) return false;
          if ((await n.call('GET', `/api/v2/webhooks/${sub.body.data.id}`)).status !== 200) return false;
        }
        return true;
      },
      5000,
      'instance and subscription replicated',
    );
    const phones = ['5511900000001', '5511900000002', '5511900000003'];
    const traces: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await nodes[i % 3].call(
        'POST',
        `/webhook/evolution/bot?token=${token}`,
        upsert('bot', `wh-${i}`, `m${i}`, phones[i % 3]),
        { 'x-api-key': '' },
      );
      expect(r.status).toBe(200);
      traces.push(r.body.trace_id);
    }
    const receiver = rx;
    await until(() => receiver.got.length >= 24, 10_000, '24 deliveries');
    await Bun.sleep(500); // a second delivery of any event would arrive by now
    expect(rx.unverified).toEqual([]);
    expect(rx.got).toHaveLength(24);
    expect(new Set(rx.got.map((d) => d.webhookId)).size).toBe(24);
    const keys = rx.got.map((d) => `${d.type}:${d.data.traceId}`);
    expect(new Set(keys)).toEqual(new Set(traces.flatMap((t) => [`message.received:${t}`, `message.sent:${t}`])));
    // Per conversation: received then sent, message after message, in the order they were posted.
    for (const phone of phones) {
      const mine = traces.filter((_, i) => phones[i % 3] === phone);
      const got = rx.got.filter((d) => mine.includes(d.data.traceId)).map((d) => `${d.type}:${d.data.traceId}`);
      expect(got).toEqual(mine.flatMap((t) => [`message.received:${t}`, `message.sent:${t}`]));
    }
  }, 30_000);
});
