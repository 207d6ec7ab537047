// Cluster mode, list reads: traces (v1, v2) and events live on the node that owned the instance's
// shard; a list on any node gathers every node's rows, pages across nodes with one cursor, keeps
// instance-bound keys to their instances, and says `partial` when a node does not answer.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { clusterHarness, until, upsert, waitForShardOwner, type ClusterHarness, type NodeProc } from './cluster-nodes.ts';
import { startFakeAgent, type FakeAgent } from './fakes/agents.ts';
import { startFakeEvolution } from './fakes/evolution.ts';

let agent: FakeAgent;
let h: ClusterHarness | null = null;
let evo: Awaited<ReturnType<typeof startFakeEvolution>>;

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

const ownerOf = waitForShardOwner;

interface Bot { name: string; id: string; token: string; owner: NodeProc; traces: string[] }

/** Two nodes and one instance owned by each, with two completed messages each (posted to the non-owner). */
async function twoNodesTwoOwners(): Promise<{ nodes: NodeProc[]; bots: Bot[] }> {
  h = clusterHarness();
  const nodes = await Promise.all(['l1', 'l2'].map((id) => h!.start(id)));
  // Both nodes must hold shards before ownership is read.
  await until(async () => (await nodes[0].call('GET', '/api/v2/cluster')).body.data.nodes.filter((n: any) => n.shards.length > 0).length === 2, 6000, 'both nodes own shards');
  const bots: Bot[] = [];
  for (let i = 0; i < 16 && new Set(bots.map((b) => b.owner.id)).size < 2; i++) {
    const name = `list${i}`;
    const res = await nodes[0].call('POST', '/api/v1/instances', { name, evolution_url: evo.url, evolution_key: evo.apikey, agent_api_url: agent.url, agent_timeout: 10 });
    expect(res.status).toBe(201);
    const id = (await nodes[0].call('GET', `/api/v2/instances/${name}`)).body.data.id as string;
    const owner = await ownerOf(nodes, id);
    if (bots.some((b) => b.owner === owner)) continue;
    bots.push({ name, id, token: new URL(res.body.webhook_url).searchParams.get('token')!, owner, traces: [] });
  }
  expect(new Set(bots.map((b) => b.owner.id)).size).toBe(2);
  for (const b of bots) await until(async () => (await nodes[1].call('GET', `/api/v2/instances/${b.name}`)).status === 200, 3000, 'instance replicated');
  for (const b of bots) {
    const other = nodes.find((n) => n !== b.owner)!;
    for (let k = 0; k < 2; k++) {
      const posted = await other.call('POST', `/webhook/evolution/${b.name}?token=${b.token}`, upsert(b.name, `${b.name}-m${k}`, `hi ${b.name} ${k}`), { 'x-api-key': '' });
      expect(posted.status).toBe(200);
      b.traces.push(posted.body.trace_id as string);
    }
  }
  for (const b of bots) {
    for (const t of b.traces) {
      await until(async () => (await b.owner.call('GET', `/api/v2/traces/${t}`)).body.data?.status === 'completed', 8000, 'trace completed on its owner');
    }
  }
  return { nodes, bots };
}

/** Walks a v2 list with ?limit=1 and the cursor; returns the ids in order. */
async function walk(n: NodeProc, path: string, headers: Record<string, string> = {}): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 50; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const res = await n.call('GET', `${path}${sep}limit=1${cursor ? `&cursor=${cursor}` : ''}`, undefined, headers);
    expect(res.status).toBe(200);
    expect(res.body.meta.partial).toBeUndefined();
    ids.push(...res.body.items.map((x: any) => x.id));
    cursor = res.body.meta.cursor;
    if (!res.body.meta.hasMore) break;
  }
  return ids;
}

describe('cluster list reads (2 node processes, real Redis)', () => {
  test('traces (v2, v1) and events listed on either node hold both nodes\' rows; limit=1 paging walks all with no gaps or repeats; instance-bound keys see their instance only', async () => {
    const { nodes, bots } = await twoNodesTwoOwners();
    const all = bots.flatMap((b) => b.traces).sort();

    // Without gathering (a forwarded request), each owner has only its own instance's traces.
    for (const b of bots) {
      const local = await b.owner.call('GET', '/api/v2/traces', undefined, { 'x-switchboard-forwarded-by': 'test' });
      expect(local.body.items.map((x: any) => x.id).sort()).toEqual([...b.traces].sort());
    }

    for (const n of nodes) {
      const listed = await n.call('GET', '/api/v2/traces?limit=50');
      expect(listed.status).toBe(200);
      expect(listed.body.items.map((x: any) => x.id).sort()).toEqual(all);
      expect(listed.body.meta).toEqual({ cursor: null, hasMore: false });
      // Newest first by receivedAt across nodes.
      const at: string[] = listed.body.items.map((x: any) => x.receivedAt);
      expect(at).toEqual([...at].sort().reverse());

      const walked = await walk(n, '/api/v2/traces');
      expect(walked).toEqual(listed.body.items.map((x: any) => x.id));

      // Filters go to every node: one instance's traces, by name, from either node.
      const one = await n.call('GET', `/api/v2/traces?instanceId=${bots[1].name}`);
      expect(one.body.items.map((x: any) => x.id).sort()).toEqual([...bots[1].traces].sort());

      const v1 = await n.call('GET', '/api/v1/traces');
      expect(v1.status).toBe(200);
      expect(v1.body.total).toBe(4);
      expect(v1.body.partial).toBeUndefined();
      expect(v1.body.traces.map((x: any) => x.trace_id).sort()).toEqual(all);
      // Offset paging across nodes, one row at a time.
      const byOffset: string[] = [];
      for (let off = 0; off < 5; off++) byOffset.push(...(await n.call('GET', `/api/v1/traces?limit=1&offset=${off}`)).body.traces.map((x: any) => x.trace_id));
      expect(byOffset).toEqual(v1.body.traces.map((x: any) => x.trace_id));
    }

    // A key bound to one instance sees only that instance's traces, whichever node it asks.
    const bound = bots[0];
    const key = (await nodes[0].call('POST', '/api/v2/keys', { name: 'only-one', scopes: ['events:read'], instanceIds: [bound.id] })).body.data.key as string;
    await until(async () => (await nodes[1].call('GET', '/api/v2/traces', undefined, { 'x-api-key': key })).status === 200, 3000, 'key replicated');
    for (const n of nodes) {
      const v2 = await n.call('GET', '/api/v2/traces', undefined, { 'x-api-key': key });
      expect(v2.body.items.map((x: any) => x.id).sort()).toEqual([...bound.traces].sort());
      const v1 = await n.call('GET', '/api/v1/traces', undefined, { 'x-api-key': key });
      expect(v1.body.total).toBe(2);
      expect(v1.body.traces.map((x: any) => x.trace_id).sort()).toEqual([...bound.traces].sort());
      const ev = await n.call('GET', '/api/v2/events?eventType=message.received', undefined, { 'x-api-key': key });
      expect(ev.body.items.map((x: any) => x.traceId).sort()).toEqual([...bound.traces].sort());
    }

    // Events are written by the owner; the list on either node shows both nodes' events.
    await until(async () => (await nodes[0].call('GET', '/api/v2/events?eventType=message.received')).body.items?.length === 4, 3000, 'events written');
    for (const n of nodes) {
      const ev = await n.call('GET', '/api/v2/events?eventType=message.received&limit=50');
      expect(ev.body.items.map((x: any) => x.traceId).sort()).toEqual(all);
      const at: string[] = ev.body.items.map((x: any) => x.createdAt);
      expect(at).toEqual([...at].sort().reverse());
      expect(await walk(n, '/api/v2/events?eventType=message.received')).toEqual(ev.body.items.map((x: any) => x.id));
    }
  }, 60_000);

  test('a node that does not answer is skipped after ~2 s and the list says partial (never a 500)', async () => {
    const { bots } = await twoNodesTwoOwners();
    const [alive, frozen] = [bots[0], bots[1]];
    frozen.owner.proc.kill('SIGSTOP');
    try {
      // Asked at once: the frozen node is still a member (its heartbeat has not expired yet).
      const started = Date.now();
      const [v2, v1, ev] = await Promise.all(['/api/v2/traces', '/api/v1/traces', '/api/v2/events'].map((p) => alive.owner.call('GET', p)));
      expect(Date.now() - started).toBeLessThan(4000);
      expect(v2.status).toBe(200);
      expect(v2.body.meta.partial).toBe(true);
      expect(v2.body.items.map((x: any) => x.id).sort()).toEqual([...alive.traces].sort());
      expect(v1.status).toBe(200);
      expect(v1.body.partial).toBe(true);
      expect(v1.body.total).toBe(2);
      expect(ev.status).toBe(200);
      expect(ev.body.meta.partial).toBe(true);
    } finally {
      frozen.owner.proc.kill('SIGCONT');
    }
  }, 60_000);
});
