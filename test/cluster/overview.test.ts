// Cluster mode, the console overview (GET /api/v2/stats/overview): every node holds the messages
// of the shards it owned, so the node asked gathers the others' figures — the same totals from
// either node — and names the node that does not answer.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { startFakeEvolution } from '../fakes/evolution.ts';
import { type ClusterHarness, clusterHarness, type NodeProc, until, upsert, waitForShardOwner } from './nodes.ts';

let agent: FakeAgent;
let evo: Awaited<ReturnType<typeof startFakeEvolution>>;
let h: ClusterHarness | null = null;

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
  h = null;
});

describe('cluster overview (2 node processes, real Redis)', () => {
  test("either node reports both nodes' figures; a node that does not answer is named as missing", async () => {
    h = clusterHarness();
    const nodes = await Promise.all(['o1', 'o2'].map((id) => h!.start(id)));
    await until(
      async () =>
        (await nodes[0].call('GET', '/api/v2/cluster')).body.data.nodes.filter((n: any) => n.shards.length > 0)
          .length === 2,
      6000,
      'both nodes own shards',
    );
    // One instance owned by each node.
    const bots: Array<{ name: string; token: string; owner: NodeProc }> = [];
    for (let i = 0; i < 16 && new Set(bots.map((b) => b.owner.id)).size < 2; i++) {
      const name = `ov${i}`;
      const res = await nodes[0].call('POST', '/api/v1/instances', {
        name,
        evolution_url: evo.url,
        evolution_key: evo.apikey,
        agent_api_url: agent.url,
        agent_timeout: 10,
      });
      expect(res.status).toBe(201);
      const id = (await nodes[0].call('GET', `/api/v2/instances/${name}`)).body.data.id as string;
      const owner = await waitForShardOwner(nodes, id);
      if (bots.some((b) => b.owner === owner)) continue;
      bots.push({ name, token: new URL(res.body.webhook_url).searchParams.get('token')!, owner });
    }
    expect(new Set(bots.map((b) => b.owner.id)).size).toBe(2);
    // Two messages to the first instance, one to the second.
    for (const [b, n] of [
      [bots[0]!, 2],
      [bots[1]!, 1],
    ] as const) {
      await until(async () => (await nodes[1].call('GET', `/api/v2/instances/${b.name}`)).status === 200, 3000);
      for (let k = 0; k < n; k++) {
        const posted = await b.owner.call(
          'POST',
          `/webhook/evolution/${b.name}?token=${b.token}`,
          upsert(b.name, `${b.name}-m${k}`, `hi ${k}`, `1555000000${k}`),
          { 'x-api-key': '' },
        );
        expect(posted.status).toBe(200);
      }
    }
    await until(
      async () => (await nodes[0].call('GET', '/api/v2/stats/overview')).body.data?.totals.sent === 3,
      8000,
      'replies sent',
    );

    for (const n of nodes) {
      const o = (await n.call('GET', '/api/v2/stats/overview')).body.data;
      expect(o.totals).toMatchObject({ messagesIn: 3, sent: 3, agentFailures: 0, backlog: 0 });
      expect(o.cluster).toEqual({ nodes: [n.id, nodes.find((x) => x !== n)!.id], missing: [], partial: false });
      const byName = Object.fromEntries(o.instances.map((i: any) => [i.name, i.totals.messagesIn]));
      expect(byName).toMatchObject({ [bots[0]!.name]: 2, [bots[1]!.name]: 1 }); // (the other instances: 0)
    }

    const [alive, frozen] = [bots[0]!.owner, bots[1]!.owner];
    frozen.proc.kill('SIGSTOP');
    try {
      const res = await alive.call('GET', '/api/v2/stats/overview');
      expect(res.status).toBe(200);
      expect(res.body.data.cluster).toEqual({ nodes: [alive.id], missing: [frozen.id], partial: true });
      expect(res.body.data.totals.messagesIn).toBe(2); // only the answering node's messages
    } finally {
      frozen.proc.kill('SIGCONT');
    }
  }, 60_000);
});
