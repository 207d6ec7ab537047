// `bun run bench`: every benchmark in sequence, then one table. The SSE and fan-out benchmarks
// run as their own processes (their output is shown as printed). BENCH_QUICK=1 shrinks the runs.
import { runFloodBench } from './flood.ts';
import { runPipelineBench } from './pipeline.ts';
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

console.log('pipeline…');
const pl = await runPipelineBench(
  QUICK ? { messages: 4000, chats: 200 } : { messages: 20_000, chats: 500, concurrency: 64 },
);
rows.push([
  'pipeline: replies/s (instant AG-UI agent, 10 deltas)',
  `${fmt(pl.repliesPerSec, 0)} replies/s (acked ${fmt(pl.ackedPerSec, 0)} msg/s; ${pl.messages} msgs, ${pl.chats} chats, ${pl.concurrency} in flight)`,
  '≥ 4,000',
  verdict(pl.repliesPerSec >= 4000),
]);
rows.push([
  'pipeline: ack / end-to-end latency at max load',
  `ack p50 ${fmt(pl.ackP50)} ms, p99 ${fmt(pl.ackP99)} ms; e2e p50 ${fmt(pl.e2eP50)} ms, p99 ${fmt(pl.e2eP99)} ms`,
  '—',
  '—',
]);
rows.push([
  'pipeline: ack p99 at half load',
  `${fmt(pl.halfAckP99)} ms at ${fmt(pl.halfAchievedRate, 0)} msg/s (half of measured max; p50 ${fmt(pl.halfAckP50)} ms, e2e p99 ${fmt(pl.halfE2eP99)} ms)`,
  '≤ 20 ms at 2,000/s',
  verdict(pl.halfAckP99 <= 20 && pl.halfAchievedRate >= 2000),
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

console.log('SSE parse…');
const sse = await script('bench/sse.ts');
console.log('WebSocket fan-out…');
const fan = await script('bench/fanout.ts');

console.log('\n| Benchmark | Result | Target | |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log(`\nSSE parse (bench/sse.ts):\n${sse}\n\nWebSocket fan-out (bench/fanout.ts):\n${fan}`);
