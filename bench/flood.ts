// Flood isolation: quiet chats' end-to-end latency with and without one flooded chat next to
// them, through the gateway process (webhook → agent → sendText), plus the gateway's RSS growth.
// Run: bun bench/flood.ts [quietChats] [floodMessages]
import { readFileSync } from 'node:fs';
import { startBenchGateway, upsertBody } from './gateway.ts';
import { fmt, percentile, startBenchStandIns } from './standins.ts';

export interface FloodResult {
  quietChats: number;
  floodMessages: number;
  quietP50: number;
  quietP99: number;
  floodedQuietP50: number;
  floodedQuietP99: number;
  /** The quiet webhooks' ack latency (ms), without and with the flood. */
  quietAckP99: number;
  floodedQuietAckP99: number;
  /** How long the flood's webhooks took to be acknowledged, all of them (ms). */
  floodIngestMs: number;
  floodAddedMiB: number;
}

export async function runFloodBench(Q = 200, F = 3000): Promise<FloodResult> {
  const si = startBenchStandIns({ deltas: 10 });
  const gw = await startBenchGateway({ CONVERSATION_BACKLOG_LIMIT: '100000' });
  try {
    const hook = await gw.createInstance('bench', {
      evolution_url: si.evolutionUrl,
      evolution_key: si.evolutionKey,
      agent_api_url: si.agentUrl,
      agent_type: 'agui',
      agent_timeout: 30,
    });
    await Bun.sleep(300);
    const post = async (id: string, chat: string, text: string): Promise<number> => {
      const t = performance.now();
      const r = await fetch(hook, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: upsertBody(id, chat, text),
      });
      await r.arrayBuffer();
      return performance.now() - t;
    };
    const waitFor = async (texts: string[]) => {
      const end = Date.now() + 120_000;
      while (texts.some((t) => !si.sentAt.has(t))) {
        if (Date.now() > end) throw new Error('flood bench: replies missing');
        await Bun.sleep(10);
      }
    };
    // Quiet traffic: 5 rounds, each chat one message per round, rounds 1 s apart (p99 over 5 × Q samples).
    const quiet = async (tag: string) => {
      const posted = new Map<string, number>();
      const acks: number[] = [];
      for (let round = 0; round < 5; round++) {
        const t0 = Date.now();
        await Promise.all(
          Array.from({ length: Q }, (_, c) => {
            const text = `${tag}${round}x${c}`;
            posted.set(text, Date.now());
            return post(`${tag}-${round}-${c}`, `1555${c}`, text).then((ms) => void acks.push(ms));
          }),
        );
        await Bun.sleep(Math.max(0, 1000 - (Date.now() - t0)));
      }
      await waitFor([...posted.keys()]);
      return {
        e2e: [...posted].map(([t, at]) => si.sentAt.get(t)! - at).sort((a, b) => a - b),
        acks: acks.sort((a, b) => a - b),
      };
    };
    await quiet('w'); // warm-up
    const base = await quiet('q');
    const rssBefore = gw.rssBytes();
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, gw.rssBytes())), 50);
    // The flood: F messages to one chat, posted as fast as 32 connections allow, during the quiet rounds.
    let next = 0;
    const f0 = performance.now();
    let floodIngestMs = 0;
    const flood = Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < F) {
          const i = next++;
          await post(`F-${i}`, '1999000', `f${i}`);
        }
      }),
    ).then(() => void (floodIngestMs = performance.now() - f0));
    const flooded = await quiet('k');
    await flood;
    clearInterval(sampler);
    return {
      quietChats: Q,
      floodMessages: F,
      quietP50: percentile(base.e2e, 50),
      quietP99: percentile(base.e2e, 99),
      floodedQuietP50: percentile(flooded.e2e, 50),
      floodedQuietP99: percentile(flooded.e2e, 99),
      quietAckP99: percentile(base.acks, 99),
      floodedQuietAckP99: percentile(flooded.acks, 99),
      floodIngestMs,
      floodAddedMiB: (peak - rssBefore) / 2 ** 20,
    };
  } finally {
    await gw.stop();
    si.stop();
  }
}

if (import.meta.main) {
  const [q, f] = process.argv.slice(2).map(Number);
  const r = await runFloodBench(q || undefined, f || undefined);
  console.log(
    `flood: ${r.quietChats} quiet chats (5 msgs each, 1 s apart); quiet e2e p50 ${fmt(r.quietP50)} ms p99 ${fmt(r.quietP99)} ms → with ${r.floodMessages} msgs flooding one chat p50 ${fmt(r.floodedQuietP50)} ms p99 ${fmt(r.floodedQuietP99)} ms (${fmt((r.floodedQuietP99 / r.quietP99 - 1) * 100, 0)} %); quiet ack p99 ${fmt(r.quietAckP99)} → ${fmt(r.floodedQuietAckP99)} ms; flood acked in ${fmt(r.floodIngestMs, 0)} ms; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}; gateway RSS +${fmt(r.floodAddedMiB, 0)} MiB`,
  );
}
