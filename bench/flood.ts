// Flood isolation: quiet chats' end-to-end latency with and without one flooded chat next to
// them, through the gateway process (webhook → agent → sendText), plus the gateway's RSS growth.
// Run: bun bench/flood.ts [quietChats] [floodMessages]
import { startBenchGateway, upsertBody } from './gateway.ts';
import { fmt, percentile, startBenchStandIns } from './standins.ts';

export interface FloodResult {
  quietChats: number;
  floodMessages: number;
  quietP50: number;
  quietP99: number;
  floodedQuietP50: number;
  floodedQuietP99: number;
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
    const post = (id: string, chat: string, text: string) =>
      fetch(hook, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: upsertBody(id, chat, text),
      }).then((r) => r.arrayBuffer());
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
      for (let round = 0; round < 5; round++) {
        const t0 = Date.now();
        await Promise.all(
          Array.from({ length: Q }, (_, c) => {
            const text = `${tag}${round}x${c}`;
            posted.set(text, Date.now());
            return post(`${tag}-${round}-${c}`, `1555${c}`, text);
          }),
        );
        await Bun.sleep(Math.max(0, 1000 - (Date.now() - t0)));
      }
      await waitFor([...posted.keys()]);
      return [...posted].map(([t, at]) => si.sentAt.get(t)! - at).sort((a, b) => a - b);
    };
    await quiet('w'); // warm-up
    const base = await quiet('q');
    const rssBefore = gw.rssBytes();
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, gw.rssBytes())), 50);
    // The flood: F messages to one chat, posted as fast as 32 connections allow, during the quiet rounds.
    let next = 0;
    const flood = Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < F) {
          const i = next++;
          await post(`F-${i}`, '1999000', `f${i}`);
        }
      }),
    );
    const flooded = await quiet('k');
    await flood;
    clearInterval(sampler);
    return {
      quietChats: Q,
      floodMessages: F,
      quietP50: percentile(base, 50),
      quietP99: percentile(base, 99),
      floodedQuietP50: percentile(flooded, 50),
      floodedQuietP99: percentile(flooded, 99),
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
    `flood: ${r.quietChats} quiet chats (5 msgs each, 1 s apart); quiet e2e p50 ${fmt(r.quietP50)} ms p99 ${fmt(r.quietP99)} ms → with ${r.floodMessages} msgs flooding one chat p50 ${fmt(r.floodedQuietP50)} ms p99 ${fmt(r.floodedQuietP99)} ms; gateway RSS +${fmt(r.floodAddedMiB, 0)} MiB`,
  );
}
