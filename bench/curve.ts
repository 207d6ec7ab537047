// How the gateway's cost grows with the work (issue 24): CPU per message and RSS through the whole
// pipeline (bench/ratios.ts measure(): gateway child process, instant AG-UI agent, 10 deltas) at
// 1, 100 and 1,000 instances (messages spread round-robin over them, 500 chats) and at 1k, 10k and
// 100k conversations (one instance; every conversation gets at least one message). Ack p99 at 25,
// 50 and 75 % of the measured maximum is bench/pipeline.ts.
// Run: bun bench/curve.ts [messages per point, default 10000] [largest conversation count, default 100000]
import { readFileSync } from 'node:fs';
import { type LoadFigures, measure } from './ratios.ts';
import { fmt } from './standins.ts';

export interface CurvePoint {
  dimension: 'instances' | 'conversations';
  value: number;
  messages: number;
  load: string;
  figures: LoadFigures;
}

const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

export async function runCurveBench(
  opts: { messages?: number; maxConversations?: number; log?: (s: string) => void } = {},
): Promise<CurvePoint[]> {
  const N = opts.messages ?? 10_000;
  const maxConv = opts.maxConversations ?? 100_000;
  const points: CurvePoint[] = [];
  const point = async (dimension: CurvePoint['dimension'], value: number, messages: number, chats: number) => {
    const load = loadAverage();
    const figures = await measure('gateway', {
      messages,
      chats,
      concurrency: 64,
      instances: dimension === 'instances' ? value : 1,
    });
    const p: CurvePoint = { dimension, value, messages, load: `${load} → ${loadAverage()}`, figures };
    points.push(p);
    opts.log?.(formatPoint(p));
  };
  for (const I of [1, 100, 1000]) await point('instances', I, N, 500);
  for (const conv of [1000, 10_000, 100_000].filter((c) => c <= maxConv))
    await point('conversations', conv, Math.max(N, conv), conv);
  return points;
}

export function formatPoint(p: CurvePoint): string {
  const f = p.figures;
  return `| ${fmt(p.value, 0)} ${p.dimension} | ${fmt(p.messages, 0)} | ${fmt(f.mainUs, 0)} / ${fmt(f.totalUs, 0)} | ${fmt(f.rssMiB, 0)} | ${fmt(f.repliesPerSec, 0)} | ${fmt(f.ackP99)} | ${p.load} |`;
}

export const CURVE_HEADER =
  '| point | messages | CPU µs/msg (main / all threads) | RSS MiB after | replies/s | ack p99 ms (max load) | load average (before → after) |\n|---|---|---|---|---|---|---|';

if (import.meta.main) {
  const [n, c] = process.argv.slice(2).map(Number);
  console.log(`cost curve: Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs, ${new Date().toISOString()}`);
  console.log(CURVE_HEADER);
  await runCurveBench({ messages: n || undefined, maxConversations: c || undefined, log: console.log });
}
