// Cluster benchmark: 3 real node processes on one Redis, 6 Evolution instances spread over the
// shards, webhooks posted round-robin to every node. Reports throughput (per owning node and in
// total) and a failover-time histogram over repeated kill -9 of an instance owner (time from the
// kill to the first reply sent by the new owner). Bounded runtime (~1 min).
//   bun bench/cluster.ts [messages=600] [kills=3]
import { clusterHarness, type NodeProc, shardOwner, until, upsert } from '../test/cluster/nodes.ts';
import { startFakeAgent } from '../test/fakes/agents.ts';
import { startFakeEvolution } from '../test/fakes/evolution.ts';

const MESSAGES = Number(process.argv[2] ?? 600);
const KILLS = Number(process.argv[3] ?? 3);
const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
const evo = await startFakeEvolution();
const h = clusterHarness(); // info level: the harness reads the port from the 'listening' line

const ownerOf = shardOwner;

/** A message to b0 every 20 ms, alternating between the given nodes, until stopped. */
function steadyLoad(targets: NodeProc[], token: string, tag: string): { stop(): Promise<number> } {
  let running = true;
  let posted = 0;
  const done = (async () => {
    for (let seq = 0; running; seq++, posted++) {
      const n = targets[seq % targets.length]!;
      const body = JSON.stringify(upsert('b0', `${tag}-${seq}`, `${tag}-${seq}`));
      await fetch(`${n.url}/webhook/evolution/b0?token=${token}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      }).catch(() => {});
      await Bun.sleep(20);
    }
  })();
  return {
    /** Stops the load; resolves to the number of messages posted. */
    stop: async () => {
      running = false;
      await done;
      return posted;
    },
  };
}

try {
  let nodes = await Promise.all(['n1', 'n2', 'n3'].map((id) => h.start(id)));
  const insts: Array<{ name: string; id: string; token: string }> = [];
  for (let i = 0; i < 6; i++) {
    const r = await nodes[0].call('POST', '/api/v1/instances', {
      name: `b${i}`,
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      agent_api_url: agent.url,
      agent_timeout: 10,
    });
    const id = (await nodes[0].call('GET', `/api/v2/instances/b${i}`)).body.data.id;
    insts.push({ name: `b${i}`, id, token: new URL(r.body.webhook_url).searchParams.get('token')! });
  }
  await until(async () => (await Promise.all(insts.map((i) => ownerOf(nodes, i.id)))).every(Boolean), 8000, 'owners');
  await Bun.sleep(800); // configuration replicated everywhere

  // Throughput: MESSAGES webhooks, 50 in flight, spread over instances and entry nodes.
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (next < MESSAGES) {
        const i = next++;
        const inst = insts[i % insts.length];
        await fetch(`${nodes[i % 3].url}/webhook/evolution/${inst.name}?token=${inst.token}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(upsert(inst.name, `tp-${i}`, `t${i}`, `1555000${i % 40}`)),
        });
      }
    }),
  );
  const tAck = performance.now();
  await until(() => evo.sent.length >= MESSAGES, 60_000, 'all replies');
  const tDone = performance.now();
  const perNode: Record<string, number> = {};
  for (const n of nodes) perNode[n.id] = (await n.call('GET', '/api/v2/cluster')).body.data.counters.consumed;
  console.log(
    `throughput: ${MESSAGES} messages, ingest ${(MESSAGES / ((tAck - t0) / 1000)).toFixed(0)} msg/s, end-to-end ${(MESSAGES / ((tDone - t0) / 1000)).toFixed(0)} msg/s`,
  );
  for (const [id, c] of Object.entries(perNode))
    console.log(`  ${id}: ${c} messages processed (${(c / ((tDone - t0) / 1000)).toFixed(0)} msg/s)`);

  // Failover: kill -9 the owner of b0 while b0 receives a message every 20 ms; restart it after.
  const failovers: number[] = [];
  for (let k = 0; k < KILLS; k++) {
    const victim = (await ownerOf(nodes, insts[0].id))!;
    evo.reset();
    const load = steadyLoad(
      nodes.filter((n) => n !== victim),
      insts[0].token,
      `fo-${k}`,
    );
    await Bun.sleep(300);
    victim.proc.kill('SIGKILL');
    const killedAt = Date.now();
    await until(() => evo.sent.some((s) => s.at > killedAt + 5), 15_000, 'first reply after kill');
    // First reply whose message was posted after the kill proves the new owner is serving.
    const first = evo.sent.find((s) => s.at > killedAt)!;
    failovers.push(first.at - killedAt);
    await load.stop();
    await victim.proc.exited;
    h.nodes.splice(h.nodes.indexOf(victim), 1);
    const fresh = await h.start(`${victim.id}r${k}`);
    nodes = nodes.map((n) => (n === victim ? fresh : n));
    await Bun.sleep(1500);
  }
  failovers.sort((a, b) => a - b);
  console.log(
    `failover (kill -9 → first reply by the new owner), lease 1500 ms, ${KILLS} kills: ${failovers.map((f) => `${f} ms`).join(', ')}`,
  );
  const buckets = [1000, 2000, 3000, 5000, Infinity];
  let prev = 0;
  for (const b of buckets) {
    const n = failovers.filter((f) => f >= prev && f < b).length;
    console.log(`  ${prev}-${b === Infinity ? '∞' : b} ms: ${'#'.repeat(n)} ${n}`);
    prev = b;
  }

  // Graceful hand-off: SIGTERM the owner of b0 under the same load; the largest gap between
  // consecutive replies (issue target: ≤ 0.5 s) and duplicates.
  const gaps: number[] = [];
  let dups = 0;
  for (let k = 0; k < KILLS; k++) {
    const victim = (await ownerOf(nodes, insts[0].id))!;
    evo.reset();
    const load = steadyLoad(
      nodes.filter((n) => n !== victim),
      insts[0].token,
      `st-${k}`,
    );
    await Bun.sleep(500);
    victim.proc.kill('SIGTERM');
    await victim.proc.exited;
    await Bun.sleep(1000);
    const posted = await load.stop();
    await until(() => evo.sent.length >= posted, 10_000, 'hand-off replies');
    let gap = 0;
    for (let i = 1; i < evo.sent.length; i++) gap = Math.max(gap, evo.sent[i].at - evo.sent[i - 1].at);
    gaps.push(gap);
    dups += evo.sent.length - new Set(evo.sent.map((x) => x.text)).size;
    h.nodes.splice(h.nodes.indexOf(victim), 1);
    const fresh = await h.start(`${victim.id}t${k}`);
    nodes = nodes.map((n) => (n === victim ? fresh : n));
    await Bun.sleep(1500);
  }
  console.log(
    `SIGTERM hand-off under load (a message every ~20 ms), ${KILLS} runs: largest gap between replies ${gaps.map((g) => `${g} ms`).join(', ')}; duplicates ${dups}`,
  );
} finally {
  await h.cleanup();
  await agent.stop();
  await evo.stop();
}
