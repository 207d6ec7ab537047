// Cluster mode, persons: each node records the persons of the messages it handles, under ids every
// node derives alike, so one sender handled by two nodes is one person on any node (identities
// merged, timeline gathered); link and unlink hold on every node, also for an identity a node
// first sees after the link (failover); a node that does not answer makes the answer `partial`.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { startFakeEvolution } from '../fakes/evolution.ts';
import {
  CLUSTER_ADMIN_KEY,
  type ClusterHarness,
  clusterHarness,
  type NodeProc,
  until,
  upsert,
  waitForShardOwner,
  walk,
} from './nodes.ts';

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

const FORWARDED = { 'x-switchboard-forwarded-by': 'test' };
const [S, T, U] = ['15550000001', '15550000002', '15550000003'];

interface Bot {
  name: string;
  id: string;
  token: string;
  owner: NodeProc;
}

/** Two nodes and two instances whose shards are owned by different nodes. */
async function twoNodesTwoOwners(): Promise<{ nodes: NodeProc[]; bots: Bot[] }> {
  h = clusterHarness();
  const nodes = await Promise.all(['p1', 'p2'].map((id) => h!.start(id)));
  await until(
    async () =>
      (await nodes[0].call('GET', '/api/v2/cluster')).body.data.nodes.filter((n: any) => n.shards.length > 0).length ===
      2,
    6000,
    'both nodes own shards',
  );
  const bots: Bot[] = [];
  for (let i = 0; i < 16 && bots.length < 2; i++) {
    const name = `pb${i}`;
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
    if (!bots.some((b) => b.owner === owner))
      bots.push({ name, id, token: new URL(res.body.webhook_url).searchParams.get('token')!, owner });
  }
  expect(bots.map((b) => b.owner.id).sort()).toEqual(['p1', 'p2']);
  for (const b of bots)
    await until(
      async () => (await nodes[1].call('GET', `/api/v2/instances/${b.name}`)).status === 200,
      3000,
      'instance replicated',
    );
  return { nodes, bots: bots[0].owner === nodes[0] ? bots : [bots[1], bots[0]] };
}

/** Posts a message from `phone` to a bot through `via` and waits until its owner has recorded it as an event. */
async function message(
  via: NodeProc,
  bot: Bot,
  id: string,
  text: string,
  phone: string,
  owner = bot.owner,
): Promise<void> {
  const posted = await via.call(
    'POST',
    `/webhook/evolution/${bot.name}?token=${bot.token}`,
    upsert(bot.name, id, text, phone),
    { 'x-api-key': '' },
  );
  expect(posted.status).toBe(200);
  const trace = posted.body.trace_id as string;
  await until(
    async () =>
      (
        await owner.call('GET', `/api/v2/events?eventType=message.received&limit=100`, undefined, FORWARDED)
      ).body.items.some((e: any) => e.traceId === trace),
    8000,
    'message recorded by its owner',
  );
}

/** Follows meta.cursor with ?limit=1; returns the ids in order. */
const byPhone = (items: any[], phone: string) =>
  items.find((p) => p.identities.some((i: any) => i.platformUserId.startsWith(phone)));
async function receivedTexts(n: NodeProc, personId: string, headers: Record<string, string> = {}): Promise<string[]> {
  const res = await n.call('GET', `/api/v2/persons/${personId}/timeline?limit=100`, undefined, headers);
  expect(res.status).toBe(200);
  expect(res.body.meta.partial).toBeUndefined();
  return res.body.items.filter((e: any) => e.type === 'message.received').map((e: any) => e.text);
}

describe('cluster persons (2 node processes, real Redis)', () => {
  test("a sender handled by two nodes is one person on either node with both nodes' messages; pages have no gaps or repeats; link and unlink hold on both nodes; instance-bound keys see their instance only", async () => {
    const { nodes, bots } = await twoNodesTwoOwners();
    // S writes to both instances (so both nodes record it), T only to the second, U only to the first.
    await message(nodes[0], bots[0], 's-0', 'S to zero', S);
    await message(nodes[0], bots[1], 's-1', 'S to one', S);
    await message(nodes[0], bots[1], 't-1', 'T to one', T);
    await message(nodes[1], bots[0], 'u-0', 'U to zero', U);

    // Each node holds its own row of S, under the same id.
    const localS = await Promise.all(
      nodes.map(async (n) =>
        byPhone((await n.call('GET', `/api/v2/persons?search=${S}`, undefined, FORWARDED)).body.items, S),
      ),
    );
    expect(localS[0].id).toBe(localS[1].id);
    expect(localS.map((p) => p.identities[0].messageCount)).toEqual([1, 1]);

    let ids: string[] = [];
    for (const n of nodes) {
      const listed = await n.call('GET', '/api/v2/persons?limit=50');
      expect(listed.status).toBe(200);
      expect(listed.body.meta).toEqual({ cursor: null, hasMore: false });
      expect(listed.body.items).toHaveLength(3);
      ids = listed.body.items.map((p: any) => p.id);
      expect(ids).toEqual([...ids].sort());
      expect(await walk(n, '/api/v2/persons')).toEqual(ids);
      const s = byPhone(listed.body.items, S);
      expect(s.id).toBe(localS[0].id);
      expect(s.identities).toHaveLength(1);
      expect(s.identities[0].messageCount).toBe(2);
      expect(await receivedTexts(n, s.id)).toEqual(['S to one', 'S to zero']);
      const all = (await n.call('GET', `/api/v2/persons/${s.id}/timeline?limit=100`)).body.items.map((e: any) => e.id);
      expect(all).toHaveLength(4); // two messages and two agent replies, from two nodes
      expect(await walk(n, `/api/v2/persons/${s.id}/timeline`)).toEqual(all);
      // The events API's timeline of the same person is gathered the same way.
      const evTimeline = await n.call('GET', `/api/v2/events/timeline/${s.id}?limit=100`);
      expect(evTimeline.status).toBe(200);
      expect(evTimeline.body.items.map((e: any) => e.id)).toEqual(all);
      expect(evTimeline.body.channels).toEqual(['whatsapp-evolution']);
      expect((await n.call('GET', '/api/v2/events/timeline/p_nobody')).status).toBe(404);
      const got = await n.call('GET', `/api/v2/persons/${s.id}`);
      expect(got.body.data.identities[0].messageCount).toBe(2);
      expect(got.body.meta).toBeUndefined();
      expect((await n.call('GET', `/api/v2/persons/${s.id}/presence`)).body.data.summary.totalMessages).toBe(2);
      // Search matches on whichever node holds the matching row; the person comes back whole.
      const found = (await n.call('GET', `/api/v2/persons?search=${S}`)).body.items;
      expect(found.map((p: any) => p.id)).toEqual([s.id]);
      expect(found[0].identities[0].messageCount).toBe(2);
    }

    // A key bound to the first instance: S (through that instance) and U, never T; S's timeline holds only that instance's events.
    const key = (
      await nodes[0].call('POST', '/api/v2/keys', {
        name: 'tenant',
        scopes: ['persons:*', 'events:read'],
        instanceIds: [bots[0].id],
      })
    ).body.data.key as string;
    const asTenant = { 'x-api-key': key };
    await until(
      async () => (await nodes[1].call('GET', '/api/v2/persons', undefined, asTenant)).status === 200,
      3000,
      'key replicated',
    );
    const listed = (await nodes[0].call('GET', '/api/v2/persons')).body.items;
    const [s, t, u] = [S, T, U].map((p) => byPhone(listed, p));
    // A browser's ?apiKey= (no header) on the node that does not hold T: the peers are asked with the key too.
    const byQuery = await nodes[0].call('GET', `/api/v2/persons/${t.id}?apiKey=${CLUSTER_ADMIN_KEY}`, undefined, {
      'x-api-key': '',
    });
    expect(byQuery.status).toBe(200);
    expect(byQuery.body.data.id).toBe(t.id);
    for (const n of nodes) {
      const seen = (await n.call('GET', '/api/v2/persons', undefined, asTenant)).body.items;
      expect(seen.map((p: any) => p.id).sort()).toEqual([s.id, u.id].sort());
      // Gathered from both nodes, S counts only what reached the key's instance (issue 26).
      expect(seen.find((p: any) => p.id === s.id).identities[0].messageCount).toBe(1);
      const presence = (await n.call('GET', `/api/v2/persons/${s.id}/presence`, undefined, asTenant)).body.data;
      expect(presence.summary.totalMessages).toBe(1);
      expect((await n.call('GET', `/api/v2/persons/${t.id}`, undefined, asTenant)).status).toBe(404);
      expect((await n.call('GET', `/api/v2/persons/${t.id}/timeline`, undefined, asTenant)).status).toBe(404);
      expect(await receivedTexts(n, s.id, asTenant)).toEqual(['S to zero']);
    }

    // Link T (held by the second node only) with U (first node only), asked of the first node.
    const linked = await nodes[0].call('POST', '/api/v2/persons/link', {
      identityA: u.identities[0].id,
      identityB: t.identities[0].id,
    });
    expect(linked.status).toBe(200);
    expect(linked.body.data.id).toBe(u.id);
    expect(linked.body.data.identities.map((i: any) => i.id).sort()).toEqual(
      [u.identities[0].id, t.identities[0].id].sort(),
    );
    for (const n of nodes) {
      expect((await n.call('GET', `/api/v2/persons/${t.id}`)).status).toBe(404);
      expect((await n.call('GET', '/api/v2/persons')).body.items).toHaveLength(2);
      expect(await receivedTexts(n, u.id)).toEqual(['U to zero', 'T to one']);
    }
    // The second node puts T's next message in the linked person.
    await message(nodes[0], bots[1], 't-2', 'T again', T);
    expect(await receivedTexts(nodes[0], u.id)).toEqual(['T again', 'U to zero', 'T to one']);

    const un = await nodes[1].call('POST', '/api/v2/persons/unlink', {
      identityId: t.identities[0].id,
      reason: 'not the same',
    });
    expect(un.status).toBe(200);
    expect(un.body.data.identity.unlinkedReason).toBe('not the same');
    const split = un.body.data.person.id;
    for (const n of nodes) {
      expect(await receivedTexts(n, split)).toEqual(['T again', 'T to one']);
      expect(await receivedTexts(n, u.id)).toEqual(['U to zero']);
    }
    expect(
      (await nodes[0].call('POST', '/api/v2/persons/unlink', { identityId: t.identities[0].id, reason: 'again' }))
        .status,
    ).toBe(409);
    expect(
      (await nodes[0].call('POST', '/api/v2/persons/link', { identityA: 'nope', identityB: t.identities[0].id }))
        .status,
    ).toBe(404);
  }, 60_000);

  test('a silent node makes reads partial (never a 500); after a failover the new owner puts a linked sender it first sees in the linked person', async () => {
    const { nodes, bots } = await twoNodesTwoOwners();
    await message(nodes[0], bots[0], 'u-0', 'U to zero', U);
    await message(nodes[0], bots[1], 't-1', 'T to one', T);
    const listed = (await nodes[0].call('GET', '/api/v2/persons')).body.items;
    const [t, u] = [T, U].map((p) => byPhone(listed, p));
    expect(
      (
        await nodes[0].call('POST', '/api/v2/persons/link', {
          identityA: u.identities[0].id,
          identityB: t.identities[0].id,
        })
      ).status,
    ).toBe(200);

    const [alive, frozen] = nodes;
    frozen.proc.kill('SIGSTOP');
    try {
      const started = Date.now();
      const [list, one, timeline] = await Promise.all(
        ['/api/v2/persons', `/api/v2/persons/${u.id}`, `/api/v2/persons/${u.id}/timeline`].map((p) =>
          alive.call('GET', p),
        ),
      );
      expect(Date.now() - started).toBeLessThan(4000);
      expect(list.status).toBe(200);
      expect(list.body.meta.partial).toBe(true);
      expect(list.body.items.map((p: any) => p.id)).toEqual([u.id]);
      expect(one.status).toBe(200);
      expect(one.body.meta).toEqual({ partial: true });
      expect(one.body.data.identities.map((i: any) => i.id)).toEqual([u.identities[0].id]);
      expect(timeline.status).toBe(200);
      expect(timeline.body.meta.partial).toBe(true);
    } finally {
      frozen.proc.kill('SIGCONT');
    }

    // The second node dies; its instance moves to the first, which has never seen T.
    frozen.proc.kill('SIGKILL');
    await waitForShardOwner([alive], bots[1].id, 10_000);
    await message(alive, bots[1], 't-2', 'T after failover', T, alive);
    await until(
      async () => (await alive.call('GET', `/api/v2/persons/${u.id}`)).body.meta === undefined,
      8000,
      'dead node left the membership',
    );
    const merged = (await alive.call('GET', `/api/v2/persons/${u.id}`)).body.data;
    expect(merged.identities.map((i: any) => i.id).sort()).toEqual([u.identities[0].id, t.identities[0].id].sort());
    expect((await alive.call('GET', '/api/v2/persons')).body.items.map((p: any) => p.id)).toEqual([u.id]);
    expect(await receivedTexts(alive, u.id)).toEqual(['T after failover', 'U to zero']);
  }, 60_000);
});
