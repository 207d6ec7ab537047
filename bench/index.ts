// `bun run bench`: every benchmark in sequence, then one table: the ratios to the references (bench/ratios.ts),
// the pipeline with paced runs at 25/50/75 % of its max, memory, flood isolation, the cost curve (bench/curve.ts),
// then SSE and fan-out as their own processes (their output is shown as printed). BENCH_QUICK=1 shrinks the runs.
import { CURVE_HEADER, formatPoint, runCurveBench } from './curve.ts';
import { runFloodBench } from './flood.ts';
import { runPipelineBench } from './pipeline.ts';
import { formatRound, runRatioBench, spread } from './ratios.ts';
import { fmt } from './standins.ts';

const QUICK = process.env.BENCH_QUICK === '1';
const rows: Array<[string, string, string, string]> = [];
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');

async function script(file: string): Promise<string> {
  const p = Bun.spawn([process.execPath, file], { cwd: `${import.meta.dir}/..`, stdout: 'pipe', stderr: 'inherit' });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out.trim();
}

console.log(
  `switchboard benchmarks — Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs, ${new Date().toISOString()}\n`,
);

// Ratios first: measured side by side in one run, they hold on any machine (issue 24).
console.log('ratios (gateway next to P1 and P2, alternating)…');
const ratios = await runRatioBench(
  QUICK ? { rounds: 2, messages: 3000, chats: 200 } : { rounds: 3, messages: 10_000, chats: 500 },
);
for (const [i, r] of ratios.entries()) console.log(formatRound(i + 1, r));
rows.push([
  'P2: replies/s ÷ hand-written durable pipeline (bench/reference.ts p2)',
  `${spread(ratios.map((r) => r.p2Ratio))} over ${ratios.length} rounds (by CPU per message ${spread(ratios.map((r) => r.p2CpuRatio))}); gateway ${ratios.map((r) => fmt(r.gateway.repliesPerSec, 0)).join(' / ')} vs P2 ${ratios.map((r) => fmt(r.p2.repliesPerSec, 0)).join(' / ')} replies/s; CPU µs/msg (all threads) gateway ${ratios.map((r) => fmt(r.gateway.totalUs, 0)).join(' / ')} vs P2 ${ratios.map((r) => fmt(r.p2.totalUs, 0)).join(' / ')}`,
  '≥ 0.7',
  verdict(ratios.every((r) => r.p2Ratio >= 0.7)),
]);
rows.push([
  'P1: durable acks/s ÷ bare Elysia route (ack-only)',
  `${spread(ratios.map((r) => r.p1Ratio))} (by CPU per message ${spread(ratios.map((r) => r.p1CpuRatio))}); gateway ${ratios.map((r) => fmt(r.gatewayAck.ackedPerSec, 0)).join(' / ')} vs P1 ${ratios.map((r) => fmt(r.p1.ackedPerSec, 0)).join(' / ')} acks/s; CPU µs/msg (all threads) gateway ${ratios.map((r) => fmt(r.gatewayAck.totalUs, 0)).join(' / ')} vs P1 ${ratios.map((r) => fmt(r.p1.totalUs, 0)).join(' / ')}`,
  '≥ 0.5',
  verdict(ratios.every((r) => r.p1Ratio >= 0.5)),
]);

console.log('pipeline…');
const pl = await runPipelineBench(
  QUICK ? { messages: 4000, chats: 200 } : { messages: 20_000, chats: 500, concurrency: 64 },
);
rows.push([
  'pipeline: replies/s (instant AG-UI agent, 10 deltas)',
  `${fmt(pl.repliesPerSec, 0)} replies/s (acked ${fmt(pl.ackedPerSec, 0)} msg/s; ${pl.messages} msgs, ${pl.chats} chats, ${pl.concurrency} in flight)`,
  '— (see P2)',
  '—',
]);
rows.push([
  'pipeline: ack / end-to-end latency at max load',
  `ack p50 ${fmt(pl.ackP50)} ms, p99 ${fmt(pl.ackP99)} ms; e2e p50 ${fmt(pl.e2eP50)} ms, p99 ${fmt(pl.e2eP99)} ms`,
  '—',
  '—',
]);
for (const p of pl.paced)
  rows.push([
    `pipeline: ack p99 at ${p.fraction * 100} % of the measured max`,
    `${fmt(p.ackP99)} ms at ${fmt(p.achieved, 0)} msg/s (p50 ${fmt(p.ackP50)} ms, e2e p99 ${fmt(p.e2eP99)} ms; load average ${p.load})`,
    p.fraction === 0.5 ? '≤ 20 ms' : '—',
    p.fraction === 0.5 ? verdict(p.ackP99 <= 20) : '—',
  ]);

console.log('memory…');
// In its own process so the RSS is the gateway's alone.
const memArgs = QUICK ? ['10000', '2000'] : [];
const mp = Bun.spawn([process.execPath, 'bench/memory.ts', ...memArgs, '--json'], {
  cwd: `${import.meta.dir}/..`,
  stdout: 'pipe',
  stderr: 'inherit',
});
const mem = JSON.parse((await new Response(mp.stdout).text()).trim().split('\n').at(-1)!);
rows.push([
  `memory: ${mem.passivated} passivated + ${mem.active} active conversations`,
  `${mem.afterActiveMiB} MiB RSS (base ${mem.baseMiB}, after passivated ${mem.afterPassivatedMiB}; ${mem.activeActors} actors in memory)`,
  '≤ 256 MB',
  verdict(mem.afterActiveMiB * 2 ** 20 <= 256e6),
]);
rows.push([
  'memory: flood of 20k msgs to one chat (in-process)',
  `+${mem.floodAddedMiB} MiB peak`,
  '≤ 50 MB',
  verdict(mem.floodAddedMiB * 2 ** 20 <= 50e6),
]);

console.log('flood isolation…');
const fl = await runFloodBench(200, QUICK ? 1000 : 3000);
rows.push([
  `flood isolation: ${fl.quietChats} quiet chats next to ${fl.floodMessages} msgs to one chat`,
  `quiet e2e p99 ${fmt(fl.quietP99)} ms → ${fmt(fl.floodedQuietP99)} ms with flood (p50 ${fmt(fl.quietP50)} → ${fmt(fl.floodedQuietP50)}); gateway RSS +${fmt(fl.floodAddedMiB, 0)} MiB`,
  'p99 within 10 %, ≤ 50 MB',
  verdict(fl.floodedQuietP99 <= fl.quietP99 * 1.1 && fl.floodAddedMiB * 2 ** 20 <= 50e6),
]);

console.log('cost curve…');
const curve = await runCurveBench(QUICK ? { messages: 3000, maxConversations: 10_000 } : {});

console.log('SSE parse…');
const sse = await script('bench/sse.ts');
console.log('WebSocket fan-out…');
const fan = await script('bench/fanout.ts');

console.log('\n| Benchmark | Result | Target | |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nCost curve (bench/curve.ts):\n${CURVE_HEADER}\n${curve.map(formatPoint).join('\n')}`);
console.log(`\nSSE parse (bench/sse.ts):\n${sse}\n\nWebSocket fan-out (bench/fanout.ts):\n${fan}`);
