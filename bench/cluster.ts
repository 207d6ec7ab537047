// Cluster benchmark: 3 real node processes on one Redis, 6 Evolution instances spread over the
// shards, webhooks posted round-robin to every node. Phases (all by default; BENCH_PHASES picks):
//   formation  3 nodes started on a fresh key prefix (a fresh Redis to the cluster: quiet period
//              of one lease first) → every instance owned
//   throughput MESSAGES webhooks, 50 in flight: ingest and end-to-end rate, per node
//   window     the duplicate window: for each reply, from the channel receiving it to its stream
//              entry's removal (a kill -9 of the owner inside it makes the next owner send it again);
//              quiet (one message every 20 ms) and under a flood of the other instances
//              (BENCH_WINDOW_S seconds each)
//   failover   kill -9 of an instance owner under load → first reply by the new owner; duplicates
//   loaded     BENCH_LOADED_S seconds of flood with no kill: leases lost (false fail-overs)
//   pause      SIGSTOP of a node (a stand-in for a GC or event-loop pause) of BENCH_PAUSES ms each:
//              whether it lost its shards
//   handoff    SIGTERM hand-off under load: largest gap between replies, duplicates
// The nodes run with the shipped CLUSTER_LEASE_MS unless BENCH_LEASE_MS is set.
//   bun bench/cluster.ts [messages=600] [kills=3]
import Redis from 'ioredis';
import { shardOf } from '../src/cluster/membership/shards.ts';
import { loadConfig } from '../src/config.ts';
import {
  CLUSTER_SECRET,
  clusterHarness,
  type NodeProc,
  REDIS_URL,
  shardOwner,
  until,
  upsert,
} from '../test/cluster/nodes.ts';
import { startFakeAgent } from '../test/fakes/agents.ts';
import { startFakeEvolution } from '../test/fakes/evolution.ts';

const MESSAGES = Number(process.argv[2] ?? 600);
const KILLS = Number(process.argv[3] ?? 3);
const PHASES = new Set(
  (process.env.BENCH_PHASES ?? 'formation,throughput,window,failover,loaded,pause,handoff').split(','),
);
const LOADED_S = Number(process.env.BENCH_LOADED_S ?? 30);
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 8);
const PAUSES = (process.env.BENCH_PAUSES ?? '500,1000,1500').split(',').map(Number);
const SHARDS = 32; // the harness's CLUSTER_SHARDS
// '' = the shipped default (the configuration ignores an empty value).
const LEASE_ENV = process.env.BENCH_LEASE_MS ?? '';
const LEASE_MS = LEASE_ENV
  ? Number(LEASE_ENV)
  : loadConfig({ REDIS_URL, CLUSTER_SECRET, SWITCHBOARD_API_KEY: 'x'.repeat(16) }).cluster.leaseMs;

const agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
const evo = await startFakeEvolution();
// info level: the harness reads the port from the 'listening' line
const h = clusterHarness({ CLUSTER_LEASE_MS: LEASE_ENV });
const redis = new Redis(REDIS_URL);

/** The owner of an instance's shard, null while none (or the node asked does not answer yet). */
const ownerOf = (nodes: NodeProc[], id: string) => shardOwner(nodes, id, SHARDS).catch(() => null);
/**
 * Waits for the instance's owner, the same one twice 500 ms apart (none while a shard moves, and a
 * restarted node takes its shards back from the others shortly after it joins).
 */
async function ownerNow(nodes: NodeProc[], id: string): Promise<NodeProc> {
  let owner: NodeProc | null = null;
  let seen: NodeProc | null = null;
  await until(
    async () => {
      seen = owner;
      owner = await ownerOf(nodes, id);
      if (owner === null || owner !== seen) await Bun.sleep(500);
      return owner !== null && owner === seen;
    },
    4 * LEASE_MS + 10_000,
    'a settled owner',
  );
  return owner!;
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};
const summary = (xs: number[]) =>
  `n=${xs.length} p50 ${pct(xs, 50)} ms, p90 ${pct(xs, 90)} ms, p99 ${pct(xs, 99)} ms, max ${Math.max(...xs)} ms`;

interface Inst {
  name: string;
  id: string;
  token: string;
}

/** A message to one instance every 20 ms, alternating between the given nodes, until stopped. */
function steadyLoad(
  targets: NodeProc[],
  inst: Inst,
  tag: string,
  traces?: Map<string, string>,
): { stop(): Promise<number> } {
  let running = true;
  let posted = 0;
  const done = (async () => {
    for (let seq = 0; running; seq++, posted++) {
      const n = targets[seq % targets.length]!;
      const text = `${tag}-${seq}`;
      const res = await fetch(`${n.url}/webhook/evolution/${inst.name}?token=${inst.token}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(upsert(inst.name, text, text)),
      }).catch(() => null);
      if (res && traces) {
        const body = (await res.json().catch(() => null)) as { trace_id?: string } | null;
        if (body?.trace_id) traces.set(text, body.trace_id);
      }
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

/** Webhooks to the given instances as fast as `inFlight` allow, until stopped. */
function flood(
  nodes: () => NodeProc[],
  insts: Inst[],
  tag: string,
  inFlight = 50,
): { stop(): Promise<number>; accepted(): number } {
  let running = true;
  let next = 0;
  let accepted = 0;
  const done = Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (running) {
        const i = next++;
        const inst = insts[i % insts.length];
        const ns = nodes();
        const res = await fetch(`${ns[i % ns.length].url}/webhook/evolution/${inst.name}?token=${inst.token}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(upsert(inst.name, `${tag}-${i}`, `${tag}-${i}`, `1555100${i % 40}`)),
        }).catch(() => null);
        await res?.arrayBuffer();
        if (res?.status === 200) accepted++;
      }
    }),
  );
  return {
    stop: async () => {
      running = false;
      await done;
      return next;
    },
    /** Webhooks answered 200. */
    accepted: () => accepted,
  };
}

/**
 * Watches one shard's stream: when each entry (by its trace id, field `t`) was last seen present
 * and first seen gone. Polls XRANGE back to back (~1 ms apart on loopback).
 */
function watchStream(shard: number) {
  const key = `${h.prefix}stream:${shard}`;
  const present = new Map<string, string>(); // entry id → trace id
  const goneAt = new Map<string, number>(); // trace id → first poll that missed it
  let running = true;
  const done = (async () => {
    while (running) {
      const entries = (await redis.xrange(key, '-', '+')) as Array<[string, string[]]>;
      const now = Date.now();
      const ids = new Set<string>();
      for (const [id, fields] of entries) {
        ids.add(id);
        if (!present.has(id)) present.set(id, fields[fields.indexOf('t') + 1] ?? '');
      }
      for (const [id, trace] of present)
        if (!ids.has(id)) {
          goneAt.set(trace, now);
          present.delete(id);
        }
      await Bun.sleep(0);
    }
  })();
  return {
    goneAt,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** GET /api/v2/cluster counters of each node. */
async function counters(nodes: NodeProc[]): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const n of nodes) out[n.id] = (await n.call('GET', '/api/v2/cluster')).body.data.counters;
  return out;
}
const lossLines = (n: NodeProc) => n.log.filter((l) => l.includes('cluster: shard lost')).length;

try {
  console.log(`lease ${LEASE_MS} ms${LEASE_ENV ? ' (BENCH_LEASE_MS)' : ' (shipped default)'}, ${SHARDS} shards`);
  const t0Formation = performance.now();
  let nodes = await Promise.all(['n1', 'n2', 'n3'].map((id) => h.start(id)));
  const listening = performance.now() - t0Formation;
  // The bench polls GET /api/v2/cluster far more often than the default per-key budget allows.
  await nodes[0].call('PATCH', '/api/v2/settings', { 'rateLimit.generalPerMinute': 1_000_000 });
  const insts: Inst[] = [];
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
  await until(
    async () => (await Promise.all(insts.map((i) => ownerOf(nodes, i.id)))).every(Boolean),
    4 * LEASE_MS + 8000,
    'owners',
  );
  const formation = performance.now() - t0Formation;
  if (PHASES.has('formation'))
    console.log(
      `formation: 3 nodes started on a fresh prefix → all listening after ${listening.toFixed(0)} ms, all 6 instances owned after ${formation.toFixed(0)} ms`,
    );
  await Bun.sleep(800); // configuration replicated everywhere

  if (PHASES.has('throughput')) {
    // MESSAGES webhooks, 50 in flight, spread over instances and entry nodes.
    evo.reset();
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
    for (const [id, c] of Object.entries(await counters(nodes))) perNode[id] = c.consumed;
    console.log(
      `throughput: ${MESSAGES} messages, ingest ${(MESSAGES / ((tAck - t0) / 1000)).toFixed(0)} msg/s, end-to-end ${(MESSAGES / ((tDone - t0) / 1000)).toFixed(0)} msg/s`,
    );
    for (const [id, c] of Object.entries(perNode))
      console.log(`  ${id}: ${c} messages processed (${(c / ((tDone - t0) / 1000)).toFixed(0)} msg/s)`);
  }

  if (PHASES.has('window')) {
    // The duplicate window of b0's replies: channel received the reply → its entry left the stream.
    for (const loaded of [false, true]) {
      evo.reset();
      const traces = new Map<string, string>();
      const watch = watchStream(shardOf(insts[0].id, SHARDS));
      const others = loaded ? flood(() => nodes, insts.slice(1), 'wf', 40) : null;
      const load = steadyLoad(nodes, insts[0], loaded ? 'wl' : 'wq', traces);
      await Bun.sleep(WINDOW_S * 1000);
      const posted = await load.stop();
      await others?.stop();
      await until(() => evo.sent.filter((s) => s.instance === 'b0').length >= posted, 30_000, 'window replies');
      await Bun.sleep(200);
      await watch.stop();
      const windows: number[] = [];
      for (const s of evo.sent) {
        if (s.instance !== 'b0' || !s.text.startsWith('echo: ')) continue;
        const trace = traces.get(s.text.slice('echo: '.length));
        const gone = trace ? watch.goneAt.get(trace) : undefined;
        if (gone !== undefined) windows.push(Math.max(0, gone - s.at));
      }
      console.log(
        `duplicate window (reply received by the channel → stream entry removed), ${loaded ? 'with the other 5 instances flooded (40 in flight)' : 'quiet'}: ${summary(windows)}`,
      );
    }
  }

  if (PHASES.has('failover')) {
    // kill -9 the owner of b0 while b0 receives a message every 20 ms; restart it after.
    const failovers: number[] = [];
    let dups = 0;
    for (let k = 0; k < KILLS; k++) {
      const victim = await ownerNow(nodes, insts[0].id);
      evo.reset();
      const load = steadyLoad(
        nodes.filter((n) => n !== victim),
        insts[0],
        `fo-${k}`,
      );
      await Bun.sleep(300 + Math.random() * 400); // a random phase of the victim's renewal cycle
      victim.proc.kill('SIGKILL');
      const killedAt = Date.now();
      await until(() => evo.sent.some((s) => s.at > killedAt + 5), 4 * LEASE_MS + 15_000, 'first reply after kill');
      // First reply whose message was posted after the kill proves the new owner is serving.
      const first = evo.sent.find((s) => s.at > killedAt)!;
      failovers.push(first.at - killedAt);
      const posted = await load.stop();
      await until(() => evo.sent.length >= posted, 15_000, 'replies after the kill').catch(() => {});
      dups += evo.sent.length - new Set(evo.sent.map((x) => x.text)).size;
      await victim.proc.exited;
      h.nodes.splice(h.nodes.indexOf(victim), 1);
      const fresh = await h.start(`${victim.id}r${k}`);
      nodes = nodes.map((n) => (n === victim ? fresh : n));
      await Bun.sleep(1500);
    }
    console.log(
      `failover (kill -9 → first reply by the new owner), lease ${LEASE_MS} ms, ${KILLS} kills: ${[...failovers].sort((a, b) => a - b).join(', ')} ms; ${summary(failovers)}; replies sent twice: ${dups}`,
    );
    const buckets = [1000, 2000, 3000, 4000, 5000, Infinity];
    let prev = 0;
    for (const b of buckets) {
      const n = failovers.filter((f) => f >= prev && f < b).length;
      console.log(`  ${prev}-${b === Infinity ? '∞' : b} ms: ${'#'.repeat(n)} ${n}`);
      prev = b;
    }
    await Bun.sleep(LEASE_MS); // the restarted nodes take their shards back
  }

  if (PHASES.has('loaded')) {
    // No kill: a flood on every instance; any lease lost is a false fail-over.
    const before = await counters(nodes);
    const linesBefore = nodes.map(lossLines);
    const f = flood(() => nodes, insts, 'ld', 50);
    const t0 = performance.now();
    await Bun.sleep(LOADED_S * 1000);
    const posted = await f.stop();
    const after = await counters(nodes);
    const lost = nodes.map((n) => after[n.id].fenced - before[n.id].fenced);
    const lines = nodes.map((n, i) => lossLines(n) - linesBefore[i]);
    console.log(
      `loaded, no kill: ${posted} webhooks (${f.accepted()} answered 200) in ${((performance.now() - t0) / 1000).toFixed(1)} s (${(posted / ((performance.now() - t0) / 1000)).toFixed(0)}/s), leases lost per node ${lost.join(' / ')} (log lines ${lines.join(' / ')})`,
    );
    // The backlog drains before the next phase.
    for (let last = -1, i = 0; last !== evo.sent.length && i < 60; i++) {
      last = evo.sent.length;
      await Bun.sleep(1000);
    }
  }

  if (PHASES.has('pause')) {
    // A stopped process (GC or event-loop stall stand-in): does it keep its shards?
    for (const ms of PAUSES) {
      const victim = nodes[1];
      const before = await counters(nodes);
      victim.proc.kill('SIGSTOP');
      await Bun.sleep(ms);
      victim.proc.kill('SIGCONT');
      await Bun.sleep(LEASE_MS + 1000);
      const after = await counters(nodes);
      const lost = after[victim.id].fenced - before[victim.id].fenced;
      const taken = nodes
        .filter((n) => n !== victim)
        .reduce((s, n) => s + after[n.id].acquired - before[n.id].acquired, 0);
      console.log(
        `pause of ${ms} ms (SIGSTOP/SIGCONT): shards lost by the paused node ${lost}, acquired by the others ${taken}`,
      );
      if (lost) await Bun.sleep(LEASE_MS + 1000); // it takes them back
    }
  }

  if (PHASES.has('handoff')) {
    // SIGTERM the owner of b0 under the same load; the largest gap between consecutive replies
    // (issue target: ≤ 0.5 s) and duplicates.
    const gaps: number[] = [];
    let dups = 0;
    for (let k = 0; k < KILLS; k++) {
      const victim = await ownerNow(nodes, insts[0].id);
      evo.reset();
      const load = steadyLoad(
        nodes.filter((n) => n !== victim),
        insts[0],
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
  }
} finally {
  redis.disconnect();
  await h.cleanup();
  await agent.stop();
  await evo.stop();
}
