// The cluster's duplicate point (issue 26): a reply the channel accepted just before its owner
// died is sent again by the next owner while the message's stream entry is still there. The entry
// leaves the stream as soon as the reply's last part is accepted, not after the terminal commit.
// Real node processes on a local redis-server.
import { afterAll, expect, test } from 'bun:test';
import { startFakeAgent } from '../fakes/agents.ts';
import { startFakeEvolution } from '../fakes/evolution.ts';
import { clusterHarness, shardOwner, until, upsert } from './nodes.ts';

const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
const evo = await startFakeEvolution();
afterAll(async () => {
  await agent.stop();
  await evo.stop();
});

test('a kill -9 right after the channel accepted the reply (before its outbox commit): the next owner does not send it again', async () => {
  // Every node kills itself at its first pass between a channel send and the write recording it.
  const h = clusterHarness({ SWITCHBOARD_CRASH_AT: 'after_send_before_outbox_commit:1' });
  try {
    const nodes = [await h.start('a'), await h.start('b')];
    const res = await nodes[0].call('POST', '/api/v1/instances', {
      name: 'bot',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      agent_api_url: agent.url,
      agent_timeout: 10,
    });
    expect(res.status).toBe(201);
    const token = new URL(res.body.webhook_url).searchParams.get('token')!;
    const id: string = (await nodes[0].call('GET', '/api/v2/instances/bot')).body.data.id;
    let owner = null as Awaited<ReturnType<typeof shardOwner>>;
    await until(
      async () => {
        for (const n of nodes) if ((await n.call('GET', '/api/v2/instances/bot')).status !== 200) return false;
        return (owner = await shardOwner(nodes, id)) !== null;
      },
      8000,
      'instance replicated and owned',
    );
    const survivor = nodes.find((n) => n !== owner)!;
    const posted = await fetch(`${survivor.url}/webhook/evolution/bot?token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(upsert('bot', 'dw-1', 'hello')),
    });
    expect(posted.status).toBe(200);
    // The owner sends the reply and dies before recording it.
    await owner!.proc.exited;
    expect(evo.sent.map((s) => s.text)).toEqual(['echo: hello']);
    // The survivor takes the shard (one lease) and reads its stream; a second send would come now.
    await until(async () => (await shardOwner([survivor], id))?.id === survivor.id, 10_000, 'survivor owns the shard');
    await Bun.sleep(1500);
    expect(evo.sent.map((s) => s.text)).toEqual(['echo: hello']);
    expect(survivor.proc.exitCode).toBeNull(); // it never reached the crash point: it sent nothing
  } finally {
    await h.cleanup();
  }
}, 30_000);
