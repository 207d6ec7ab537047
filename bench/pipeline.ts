// Pipeline throughput and ack latency through the whole gateway: webhook → inbox → actor →
// instant streaming AG-UI agent (10 deltas) → Evolution sendText. The gateway runs as its own
// process (`bun src/main.ts`); the load generator and the stand-ins share this process, all on
// the same machine. Run: bun bench/pipeline.ts [messages] [chats] [concurrency] [paced rate/s, default half the max]
import { readFileSync } from 'node:fs';
import { startBenchGateway, upsertBody } from './gateway.ts';
import { fmt, percentile, startBenchStandIns } from './standins.ts';

export interface PipelineResult {
  messages: number;
  chats: number;
  concurrency: number;
  ackedPerSec: number;
  repliesPerSec: number;
  ackP50: number;
  ackP99: number;
  e2eP50: number;
  e2eP99: number;
  halfRate: number;
  halfAckP50: number;
  halfAckP99: number;
  halfE2eP99: number;
  halfAchievedRate: number;
  /** Open-loop (paced) runs at fractions of the measured max (25, 50, 75 %), or at the rate asked for. */
  paced: PacedFigures[];
  rssMiB: number;
  /** Gateway CPU per message at max load (µs): its main JS thread (the bottleneck), and all its threads. */
  mainCpuUsPerMsg: number;
  totalCpuUsPerMsg: number;
  /** The bench process (load generator, stand-in agent and Evolution server) per message (µs). */
  benchCpuUsPerMsg: number;
  errors: number;
}

export interface PacedFigures {
  fraction: number;
  rate: number;
  achieved: number;
  ackP50: number;
  ackP99: number;
  e2eP99: number;
  load: string;
}

const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

export async function runPipelineBench(
  opts: { messages?: number; chats?: number; concurrency?: number; pacedRate?: number } = {},
): Promise<PipelineResult> {
  const N = opts.messages ?? 20_000;
  const M = opts.chats ?? 500;
  const C = opts.concurrency ?? 64;
  const si = startBenchStandIns({ deltas: 10 });
  const gw = await startBenchGateway({ CONVERSATION_BACKLOG_LIMIT: '100000', GLOBAL_BACKLOG_LIMIT: '1000000' });
  let errors = 0;
  try {
    const hook = await gw.createInstance('bench', {
      evolution_url: si.evolutionUrl,
      evolution_key: si.evolutionKey,
      agent_api_url: si.agentUrl,
      agent_type: 'agui',
      agent_timeout: 30,
    });
    await Bun.sleep(300); // instance actor connects

    const post = async (id: string, chat: string, text: string): Promise<number> => {
      const t = performance.now();
      const res = await fetch(hook, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: upsertBody(id, chat, text),
      });
      await res.arrayBuffer();
      if (res.status !== 200) errors++;
      return performance.now() - t;
    };
    const waitReplies = async (texts: string[], timeoutMs: number) => {
      const end = Date.now() + timeoutMs;
      while (texts.some((t) => !si.sentAt.has(t))) {
        if (Date.now() > end)
          throw new Error(
            `only ${texts.filter((t) => si.sentAt.has(t)).length}/${texts.length} replies after ${timeoutMs} ms`,
          );
        await Bun.sleep(10);
      }
    };

    // Warm-up: JIT, connection pools, SQLite pages.
    const warm = Array.from({ length: Number(process.env.BENCH_WARM ?? 500) }, (_, i) => `w${i}`);
    await Promise.all(warm.map((t, i) => post(t, `1888${i % 50}`, t)));
    await waitReplies(warm, 30_000);

    // Max load: closed loop, C posts in flight.
    const texts = Array.from({ length: N }, (_, i) => `b${i}`);
    const postedAt = new Map<string, number>();
    const acks: number[] = [];
    let next = 0;
    const t0 = Date.now();
    const cpu0 = gw.cpuMs();
    const bench0 = process.cpuUsage();
    await Promise.all(
      Array.from({ length: C }, async () => {
        while (next < N) {
          const i = next++;
          postedAt.set(texts[i]!, Date.now());
          acks.push(await post(`B-${i}`, `1777${i % M}`, texts[i]!));
        }
      }),
    );
    const tAcked = Date.now();
    await waitReplies(texts, 120_000);
    const tReplied = Math.max(...texts.map((t) => si.sentAt.get(t)!));
    const rss = gw.rssBytes();
    const cpu1 = gw.cpuMs();
    const bench1 = process.cpuUsage(bench0);
    const e2e = texts.map((t) => si.sentAt.get(t)! - postedAt.get(t)!).sort((a, b) => a - b);
    acks.sort((a, b) => a - b);
    const repliesPerSec = N / ((tReplied - t0) / 1000);

    // Open loop (paced) at fractions of the measured reply rate (or at the rate asked for): ack latency below the max.
    const pacedRun = async (fraction: number, rate: number, tag: string): Promise<PacedFigures> => {
      const load = loadAverage();
      const H = Math.min(N, Math.max(2000, rate * 5));
      const htexts = Array.from({ length: H }, (_, i) => `${tag}${i}`);
      const hAcks: number[] = [];
      const hPosted = new Map<string, number>();
      const h0 = performance.now();
      const inflight: Promise<void>[] = [];
      for (let i = 0; i < H; i++) {
        const due = h0 + (i * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 1) await Bun.sleep(wait);
        const t = htexts[i]!;
        hPosted.set(t, Date.now());
        inflight.push(post(`${tag.toUpperCase()}-${i}`, `1666${i % M}`, t).then((ms) => void hAcks.push(ms)));
      }
      await Promise.all(inflight);
      const achieved = H / ((performance.now() - h0) / 1000);
      await waitReplies(htexts, 60_000);
      hAcks.sort((a, b) => a - b);
      const hE2e = htexts.map((t) => si.sentAt.get(t)! - hPosted.get(t)!).sort((a, b) => a - b);
      return {
        fraction,
        rate,
        achieved,
        ackP50: percentile(hAcks, 50),
        ackP99: percentile(hAcks, 99),
        e2eP99: percentile(hE2e, 99),
        load,
      };
    };
    const paced: PacedFigures[] = [];
    if (opts.pacedRate) paced.push(await pacedRun(NaN, opts.pacedRate, 'h'));
    else
      for (const [i, f] of [0.25, 0.5, 0.75].entries())
        paced.push(await pacedRun(f, Math.floor(repliesPerSec * f), `h${i}x`));
    const half = paced.find((p) => p.fraction === 0.5) ?? paced[0]!;

    return {
      messages: N,
      chats: M,
      concurrency: C,
      ackedPerSec: N / ((tAcked - t0) / 1000),
      repliesPerSec,
      ackP50: percentile(acks, 50),
      ackP99: percentile(acks, 99),
      e2eP50: percentile(e2e, 50),
      e2eP99: percentile(e2e, 99),
      halfRate: half.rate,
      halfAckP50: half.ackP50,
      halfAckP99: half.ackP99,
      halfE2eP99: half.e2eP99,
      halfAchievedRate: half.achieved,
      paced,
      rssMiB: rss / 2 ** 20,
      errors,
      mainCpuUsPerMsg: ((cpu1.main - cpu0.main) * 1000) / N,
      totalCpuUsPerMsg: ((cpu1.total - cpu0.total) * 1000) / N,
      benchCpuUsPerMsg: (bench1.user + bench1.system) / N,
    };
  } finally {
    await gw.stop();
    si.stop();
  }
}

if (import.meta.main) {
  const [n, m, c, paced] = process.argv.slice(2).map(Number);
  const r = await runPipelineBench({
    messages: n || undefined,
    chats: m || undefined,
    concurrency: c || undefined,
    pacedRate: paced || undefined,
  });
  console.log(
    `pipeline: ${r.messages} webhooks over ${r.chats} chats, ${r.concurrency} in flight, instant AG-UI agent (10 deltas), Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log(
    `  acked ${fmt(r.ackedPerSec, 0)} msg/s, replies ${fmt(r.repliesPerSec, 0)}/s; ack p50 ${fmt(r.ackP50)} ms p99 ${fmt(r.ackP99)} ms; end-to-end p50 ${fmt(r.e2eP50)} ms p99 ${fmt(r.e2eP99)} ms; gateway RSS ${fmt(r.rssMiB, 0)} MiB; errors ${r.errors}`,
  );
  // Everything shares the machine's cores, so CPU per message bounds the rate whatever the threading.
  const ceiling = (navigator.hardwareConcurrency * 1e6) / (r.totalCpuUsPerMsg + r.benchCpuUsPerMsg);
  console.log(
    `  CPU per message: gateway main thread ${fmt(r.mainCpuUsPerMsg, 0)} µs, gateway all threads ${fmt(r.totalCpuUsPerMsg, 0)} µs, bench process ${fmt(r.benchCpuUsPerMsg, 0)} µs → at most ${fmt(ceiling, 0)} msg/s on ${navigator.hardwareConcurrency} cores`,
  );
  for (const p of r.paced)
    console.log(
      `  paced load${Number.isNaN(p.fraction) ? '' : ` at ${p.fraction * 100} % of max`} (${fmt(p.rate, 0)}/s target, ${fmt(p.achieved, 0)}/s offered, load average ${p.load}): ack p50 ${fmt(p.ackP50)} ms p99 ${fmt(p.ackP99)} ms; end-to-end p99 ${fmt(p.e2eP99)} ms`,
    );
}
