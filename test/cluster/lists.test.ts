// Cluster mode, reads across nodes: traces (v1, v2), events (list and search), conversations and
// dead letters live on the node that owned the instance's shard; a list on any node gathers every
// node's rows, pages across nodes with one cursor, keeps instance-bound keys to their instances,
// and says `partial` when a node does not answer. A dead letter is replayed or deleted through
// any node, also after its shard moved; a conversation two nodes hold is listed once.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { shardOf, ownerOf as shardOwnerAmong } from '../../src/cluster/membership/shards.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { startFakeEvolution } from '../fakes/evolution.ts';
import {
  type ClusterHarness,
  clusterHarness,
  type NodeProc,
  shardOwner,
  until,
  upsert,
  waitForShardOwner,
  walk,
  walkPages,
} from './nodes.ts';

let agent: FakeAgent;
/** The agent of the dead-letter test: fails (500) until told otherwise. */
let doom: FakeAgent;
let h: ClusterHarness | null = null;
let evo: Awaited<ReturnType<typeof startFakeEvolution>>;

beforeAll(async () => {
  agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
  doom = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
  evo = await startFakeEvolution();
});
afterAll(async () => {
  await agent.stop();
  await doom.stop();
  await evo.stop();
});
afterEach(async () => {
  await h?.cleanup();
  h = null;
});

const ownerOf = waitForShardOwner;

interface Bot {
  name: string;
  id: string;
  token: string;
  owner: NodeProc;
  traces: string[];
}

/** Two nodes and one instance owned by each, with two completed messages each (posted to the non-owner). */
async function twoNodesTwoOwners(): Promise<{ nodes: NodeProc[]; bots: Bot[] }> {
  h = clusterHarness();
  const nodes = await Promise.all(['l1', 'l2'].map((id) => h!.start(id)));
  // Both nodes must hold shards before ownership is read.
  await until(
    async () =>
      (await nodes[0].call('GET', '/api/v2/cluster')).body.data.nodes.filter((n: any) => n.shards.length > 0).length ===
      2,
    6000,
    'both nodes own shards',
  );
  const bots: Bot[] = [];
  for (let i = 0; i < 16 && new Set(bots.map((b) => b.owner.id)).size < 2; i++) {
    const name = `list${i}`;
    const res = await nodes[0].call('POST', '/api/v1/instances', {
      name,
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      agent_api_url: agent.url,
      agent_timeout: 10,
    });
    expect(res.status).toBe(201);
    const id = (await nodes[0].call('GET', `/api/v2/instances/${name}`)).body.data.id as string;
    const owner = await ownerOf(nodes, id);
    if (bots.some((b) => b.owner === owner)) continue;
    bots.push({ name, id, token: new URL(res.body.webhook_url).searchParams.get('token')!, owner, traces: [] });
  }
  expect(new Set(bots.map((b) => b.owner.id)).size).toBe(2);
  for (const b of bots)
    await until(
      async () => (await nodes[1].call('GET', `/api/v2/instances/${b.name}`)).status === 200,
      3000,
      'instance replicated',
    );
  for (const b of bots) {
    const other = nodes.find((n) => n !== b.owner)!;
    for (let k = 0; k < 2; k++) {
      const posted = await other.call(
        'POST',
        `/webhook/evolution/${b.name}?token=${b.token}`,
        upsert(b.name, `${b.name}-m${k}`, `hi ${b.name} ${k}`),
        { 'x-api-key': '' },
      );
      expect(posted.status).toBe(200);
      b.traces.push(posted.body.trace_id as string);
    }
  }
  for (const b of bots) {
    for (const t of b.traces) {
      await until(
        async () => (await b.owner.call('GET', `/api/v2/traces/${t}`)).body.data?.status === 'completed',
        8000,
        'trace completed on its owner',
      );
    }
  }
  return { nodes, bots };
}

/** Walks POST /api/v2/events/search with limit 1 and the cursor. */
function walkSearch(n: NodeProc, body: Record<string, unknown>): Promise<string[]> {
  return walkPages((cursor) =>
    n.call('POST', '/api/v2/events/search', { ...body, limit: 1, ...(cursor ? { cursor } : {}) }),
  );
}

const FORWARDED = { 'x-switchboard-forwarded-by': 'test' };

describe('cluster list reads (2 node processes, real Redis)', () => {
  test("traces (v2, v1), events (list and search) and conversations listed on either node hold both nodes' rows; limit=1 paging walks all with no gaps or repeats; instance-bound keys see their instance only", async () => {
    const { nodes, bots } = await twoNodesTwoOwners();
    const all = bots.flatMap((b) => b.traces).sort();

    // Without gathering (a forwarded request), each owner has only its own instance's traces.
    for (const b of bots) {
      const local = await b.owner.call('GET', '/api/v2/traces', undefined, FORWARDED);
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
      for (let off = 0; off < 5; off++)
        byOffset.push(
          ...(await n.call('GET', `/api/v1/traces?limit=1&offset=${off}`)).body.traces.map((x: any) => x.trace_id),
        );
      expect(byOffset).toEqual(v1.body.traces.map((x: any) => x.trace_id));
    }

    // A key bound to one instance sees only that instance's traces, whichever node it asks.
    const bound = bots[0];
    const key = (
      await nodes[0].call('POST', '/api/v2/keys', {
        name: 'only-one',
        scopes: ['events:read', 'messages:read'],
        instanceIds: [bound.id],
      })
    ).body.data.key as string;
    await until(
      async () => (await nodes[1].call('GET', '/api/v2/traces', undefined, { 'x-api-key': key })).status === 200,
      3000,
      'key replicated',
    );
    for (const n of nodes) {
      const v2 = await n.call('GET', '/api/v2/traces', undefined, { 'x-api-key': key });
      expect(v2.body.items.map((x: any) => x.id).sort()).toEqual([...bound.traces].sort());
      const v1 = await n.call('GET', '/api/v1/traces', undefined, { 'x-api-key': key });
      expect(v1.body.total).toBe(2);
      expect(v1.body.traces.map((x: any) => x.trace_id).sort()).toEqual([...bound.traces].sort());
      const ev = await n.call('GET', '/api/v2/events?eventType=message.received', undefined, { 'x-api-key': key });
      expect(ev.body.items.map((x: any) => x.traceId).sort()).toEqual([...bound.traces].sort());
      const found = await n.call('POST', '/api/v2/events/search', { query: 'hi' }, { 'x-api-key': key });
      expect(found.body.total).toBe(4);
      expect(found.body.items.every((x: any) => x.instanceId === bound.id)).toBe(true);
      const convs = await n.call('GET', '/api/v2/conversations', undefined, { 'x-api-key': key });
      expect(convs.body.items.map((x: any) => x.instanceId)).toEqual([bound.id]);
    }

    // Events are written by the owner; the list on either node shows both nodes' events.
    await until(
      async () => (await nodes[0].call('GET', '/api/v2/events?eventType=message.received')).body.items?.length === 4,
      3000,
      'events written',
    );
    for (const n of nodes) {
      const ev = await n.call('GET', '/api/v2/events?eventType=message.received&limit=50');
      expect(ev.body.items.map((x: any) => x.traceId).sort()).toEqual(all);
      const at: string[] = ev.body.items.map((x: any) => x.createdAt);
      expect(at).toEqual([...at].sort().reverse());
      expect(await walk(n, '/api/v2/events?eventType=message.received')).toEqual(ev.body.items.map((x: any) => x.id));

      // Full-text search: both nodes' matches, newest first by (createdAt, id), one cursor across nodes.
      const hits = await n.call('POST', '/api/v2/events/search', { query: 'hi', limit: 50 });
      expect(hits.status).toBe(200);
      expect(hits.body.total).toBe(8); // each message: received "hi …" and sent "echo: hi …"
      expect(hits.body.meta).toEqual({ cursor: null, hasMore: false });
      expect(new Set(hits.body.items.map((x: any) => x.traceId))).toEqual(new Set(all));
      const hitAt: string[] = hits.body.items.map((x: any) => x.createdAt);
      expect(hitAt).toEqual([...hitAt].sort().reverse());
      expect(await walkSearch(n, { query: 'hi' })).toEqual(hits.body.items.map((x: any) => x.id));
      const received = await n.call('POST', '/api/v2/events/search', {
        query: 'hi',
        filters: { eventType: 'message.received' },
        format: 'agent',
      });
      expect(received.body.total).toBe(4);
      expect(received.body.asContext.split('\n')).toHaveLength(4);
      for (const b of bots) expect(received.body.asContext).toContain(`hi ${b.name} 1`);

      // Conversations: one per instance, each on its owner; listed on either node.
      const convs = await n.call('GET', '/api/v2/conversations');
      expect(convs.body.items.map((x: any) => x.instanceId).sort()).toEqual(bots.map((b) => b.id).sort());
      expect(convs.body.meta).toEqual({ cursor: null, hasMore: false });
      expect(await walk(n, '/api/v2/conversations')).toEqual(convs.body.items.map((x: any) => x.id));
      for (const c of convs.body.items)
        expect((await n.call('GET', `/api/v2/conversations/${c.id}`)).body.data).toEqual(c);
    }
  }, 60_000);

  test('a node that does not answer is skipped after ~2 s and the list says partial (never a 500)', async () => {
    const { bots } = await twoNodesTwoOwners();
    const [alive, frozen] = [bots[0], bots[1]];
    const frozenConversation = (await alive.owner.call('GET', `/api/v2/conversations?instanceId=${frozen.name}`)).body
      .items[0].id as string;
    frozen.owner.proc.kill('SIGSTOP');
    try {
      // Asked at once: the frozen node is still a member (its heartbeat has not expired yet).
      const started = Date.now();
      const [v2, v1, ev, convs, dead, search, replay, conv] = await Promise.all([
        ...['/api/v2/traces', '/api/v1/traces', '/api/v2/events', '/api/v2/conversations', '/api/v2/dead-letters'].map(
          (p) => alive.owner.call('GET', p),
        ),
        alive.owner.call('POST', '/api/v2/events/search', { query: 'hi' }),
        // By id, on no node that answered: the frozen one may hold it.
        alive.owner.call('POST', `/api/v2/dead-letters/${crypto.randomUUID()}/replay`),
        alive.owner.call('GET', `/api/v2/conversations/${frozenConversation}`),
      ]);
      expect(Date.now() - started).toBeLessThan(4000);
      for (const r of [convs, dead, search]) {
        expect(r.status).toBe(200);
        expect(r.body.meta.partial).toBe(true);
      }
      expect(convs.body.items.map((x: any) => x.instanceId)).toEqual([alive.id]);
      expect(search.body.items.every((x: any) => x.instanceId === alive.id)).toBe(true);
      for (const r of [replay, conv]) {
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe('UNAVAILABLE');
      }
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

  test('a dead letter written on node A is listed, replayed and deleted through node B — also after its shard moved to B; the moved conversation is listed once, with its latest activity', async () => {
    h = clusterHarness({ PIPELINE_MAX_ATTEMPTS: '1' });
    const a = await h.start('d1');
    await until(
      async () => (await a.call('GET', '/api/v2/cluster')).body.data.nodes[0]?.shards.length === 32,
      6000,
      'd1 owns every shard',
    );
    // One instance whose shard d2 takes when it joins, one that stays with d1 (rendezvous hashing).
    const picked: Partial<Record<'moving' | 'staying', { name: string; id: string; token: string }>> = {};
    for (let i = 0; i < 16 && !(picked.moving && picked.staying); i++) {
      const name = `dead${i}`;
      const res = await a.call('POST', '/api/v1/instances', {
        name,
        evolution_url: evo.url,
        evolution_key: evo.apikey,
        agent_api_url: doom.url,
        agent_timeout: 10,
      });
      expect(res.status).toBe(201);
      const id = (await a.call('GET', `/api/v2/instances/${name}`)).body.data.id as string;
      picked[shardOwnerAmong(shardOf(id, 32), ['d1', 'd2']) === 'd2' ? 'moving' : 'staying'] ??= {
        name,
        id,
        token: new URL(res.body.webhook_url).searchParams.get('token')!,
      };
    }
    const { moving, staying } = picked as Required<typeof picked>;
    expect(moving && staying).toBeTruthy();

    doom.setBehaviour({ status: 500 });
    const post = async (inst: typeof moving, id: string, text: string, phone: string) =>
      (
        await a.call(
          'POST',
          `/webhook/evolution/${inst.name}?token=${inst.token}`,
          upsert(inst.name, id, text, phone),
          { 'x-api-key': '' },
        )
      ).body.trace_id as string;
    const mTrace = await post(moving, 'dm-1', 'doomed moving', '15550000001');
    const sTrace = await post(staying, 'ds-1', 'doomed staying', '15550000002');
    await post(staying, 'ds-2', 'doomed again', '15550000002');
    await until(
      async () => (await a.call('GET', '/api/v2/dead-letters')).body.items?.length === 3,
      8000,
      'three dead letters on d1',
    );

    const b = await h.start('d2');
    await until(async () => (await shardOwner([a, b], moving.id))?.id === 'd2', 8000, 'the moving shard owned by d2');
    await until(
      async () => (await b.call('GET', `/api/v2/instances/${moving.name}`)).status === 200,
      3000,
      'instances replicated',
    );
    doom.setBehaviour({ status: null });

    // Listed through d2, which holds none of them.
    expect((await b.call('GET', '/api/v2/dead-letters', undefined, FORWARDED)).body.items).toEqual([]);
    const listed = await b.call('GET', '/api/v2/dead-letters');
    expect(listed.status).toBe(200);
    expect(listed.body.items.map((d: any) => d.text).sort()).toEqual([
      'doomed again',
      'doomed moving',
      'doomed staying',
    ]);
    expect(await walk(b, '/api/v2/dead-letters')).toEqual(listed.body.items.map((d: any) => d.id));
    const dead = (text: string) => listed.body.items.find((d: any) => d.text === text).id as string;

    // A key bound to the moving instance sees (and can act on) its dead letter only.
    const key = (
      await a.call('POST', '/api/v2/keys', {
        name: 'moving-only',
        scopes: ['events:read', 'messages:send'],
        instanceIds: [moving.id],
      })
    ).body.data.key as string;
    await until(
      async () => (await b.call('GET', '/api/v2/dead-letters', undefined, { 'x-api-key': key })).status === 200,
      3000,
      'key replicated',
    );
    expect(
      (await b.call('GET', '/api/v2/dead-letters', undefined, { 'x-api-key': key })).body.items.map((d: any) => d.text),
    ).toEqual(['doomed moving']);
    expect(
      (await b.call('POST', `/api/v2/dead-letters/${dead('doomed staying')}/replay`, undefined, { 'x-api-key': key }))
        .status,
    ).toBe(404);
    expect(
      (await b.call('DELETE', `/api/v2/dead-letters/${dead('doomed again')}`, undefined, { 'x-api-key': key })).status,
    ).toBe(404);

    // Replayed through d2. d1 holds it but no longer owns the shard: the message goes to the owner
    // (d2) through the stream, as a new trace that d2 runs.
    const moved = await b.call('POST', `/api/v2/dead-letters/${dead('doomed moving')}/replay`, undefined, {
      'x-api-key': key,
    });
    expect(moved.status).toBe(200);
    expect(moved.body.data.traceId).not.toBe(mTrace);
    await until(
      async () =>
        (await b.call('GET', `/api/v2/traces/${moved.body.data.traceId}`, undefined, FORWARDED)).body.data?.status ===
        'completed',
      8000,
      'replay completed on d2',
    );
    const old = (await b.call('GET', `/api/v2/traces/${mTrace}`)).body.data;
    expect(old.status).toBe('dead_lettered');
    expect(old.steps.find((x: any) => x.step === 'replayed').details.replay_trace_id).toBe(moved.body.data.traceId);

    // Replayed through d2 while d1 still owns the shard: handed to d1 through the stream too (a
    // replay must survive the shard moving while it runs), as a new trace.
    const stayed = await b.call('POST', `/api/v2/dead-letters/${dead('doomed staying')}/replay`);
    expect(stayed.status).toBe(200);
    expect(stayed.body.data.traceId).not.toBe(sTrace);
    await until(
      async () =>
        (await a.call('GET', `/api/v2/traces/${stayed.body.data.traceId}`, undefined, FORWARDED)).body.data?.status ===
        'completed',
      8000,
      'replay completed on d1',
    );
    expect(
      (await a.call('GET', `/api/v2/traces/${sTrace}`, undefined, FORWARDED)).body.data.steps.find(
        (x: any) => x.step === 'replayed',
      ).details.replay_trace_id,
    ).toBe(stayed.body.data.traceId);
    await until(
      () =>
        evo.sent.some((m) => m.text === 'echo: doomed moving') &&
        evo.sent.some((m) => m.text === 'echo: doomed staying'),
      3000,
      'both replies sent',
    );
    // A replay is the same message again: one received event (the original's) and the reply's sent
    // event across the cluster, and the sender counted once.
    const eventsOf = async (type: string) =>
      (await b.call('GET', `/api/v2/events?eventType=${type}&limit=100`)).body.items.map((e: any) => e.text as string);
    await until(
      async () => (await eventsOf('message.sent')).includes('echo: doomed moving'),
      3000,
      'reply event recorded',
    );
    expect((await eventsOf('message.received')).filter((t: string) => t === 'doomed moving')).toHaveLength(1);
    const sender = (await b.call('GET', '/api/v2/persons?search=15550000001')).body.items[0];
    expect(sender.identities[0].messageCount).toBe(1);

    // Deleted through d2; then gone everywhere.
    expect((await b.call('DELETE', `/api/v2/dead-letters/${dead('doomed again')}`)).body).toEqual({ success: true });
    expect((await b.call('DELETE', `/api/v2/dead-letters/${dead('doomed again')}`)).status).toBe(404);
    expect((await b.call('POST', `/api/v2/dead-letters/${dead('doomed moving')}/replay`)).status).toBe(404);
    for (const n of [a, b]) expect((await n.call('GET', '/api/v2/dead-letters')).body.items).toEqual([]);

    // The moving conversation: d1 kept its copy from before the move, d2 has its own (same id, a
    // hash of instance and chat) with the later activity. Listed once, at d2's activity.
    const conv = (await b.call('GET', `/api/v2/conversations?instanceId=${moving.name}`, undefined, FORWARDED)).body
      .items[0];
    const stale = (await a.call('GET', `/api/v2/conversations/${conv.id}`, undefined, FORWARDED)).body.data;
    expect(stale.lastActivityAt < conv.lastActivityAt).toBe(true);
    for (const n of [a, b]) {
      expect((await n.call('GET', `/api/v2/conversations/${conv.id}`)).body.data.lastActivityAt).toBe(
        conv.lastActivityAt,
      );
      const all = (await n.call('GET', '/api/v2/conversations')).body;
      expect(all.items.map((c: any) => c.instanceId).sort()).toEqual([moving.id, staying.id].sort());
      expect(all.items.find((c: any) => c.id === conv.id).lastActivityAt).toBe(conv.lastActivityAt);
      // Page by page, d1's older copy comes up below the cursor again; it is left out, not repeated.
      expect(await walk(n, '/api/v2/conversations')).toEqual(all.items.map((c: any) => c.id));
    }
  }, 60_000);
});
