// Web chat flood isolation: quiet visitors' latency (send → ack, and send → reply complete on their
// live stream) with and without one visitor flooding the same chat, through the gateway process.
// Each visitor has its own address (X-Forwarded-For from a trusted proxy, as behind a reverse
// proxy); the chat keeps its default budgets (20 messages per minute per visitor, 120 requests per
// minute per address). The built-in echo agent answers one-word messages with no delay.
// Quiet visitors pace their messages (one every PACE_MS), so each run lasts a few seconds.
// Runs baseline and flood alternately. Run: bun bench/webchat.ts [quietVisitors] [messagesEach] [rounds]
import { BENCH_KEY, startBenchGateway } from './gateway.ts';
import { fmt, percentile } from './standins.ts';

const PACE_MS = 100;

interface Visitor {
  ip: string;
  token: string;
  conversationId: string;
}

interface Run {
  flood: boolean;
  ackP50: number;
  ackP99: number;
  e2eP50: number;
  e2eP99: number;
  floodSent: number;
  floodAccepted: number;
  floodRefused: number;
  seconds: number;
}

async function main() {
  const Q = Number(process.argv[2] ?? 20);
  const M = Number(process.argv[3] ?? 20);
  const ROUNDS = Number(process.argv[4] ?? 3);
  const gw = await startBenchGateway({ TRUSTED_PROXIES: '127.0.0.1' });
  try {
    const res = await fetch(`${gw.url}/api/v2/instances`, {
      method: 'POST',
      headers: { 'x-api-key': BENCH_KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench-chat', channel: 'webchat', agent: { type: 'echo' } }),
    });
    if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
    await Bun.sleep(300);
    let ipSeq = 0;
    const base = `${gw.url}/webchat/bench-chat`;
    const visitor = async (): Promise<Visitor> => {
      const ip = `10.${(++ipSeq >> 16) & 255}.${(ipSeq >> 8) & 255}.${ipSeq & 255}`;
      const r = await fetch(`${base}/session`, { method: 'POST', headers: { 'x-forwarded-for': ip }, body: '{}' });
      const s = (await r.json()) as { token: string; conversationId: string };
      return { ip, token: s.token, conversationId: s.conversationId };
    };
    const send = (v: Visitor, text: string) =>
      fetch(`${base}/messages`, {
        method: 'POST',
        headers: { 'x-forwarded-for': v.ip, authorization: `Bearer ${v.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ clientMessageId: crypto.randomUUID(), text }),
      });
    /** Follows a visitor's stream; resolves each turn's RUN_FINISHED. */
    const follow = async (v: Visitor) => {
      const done = new Map<string, number>();
      const ctrl = new AbortController();
      const r = await fetch(`${base}/conversations/${v.conversationId}/stream`, {
        headers: { 'x-forwarded-for': v.ip, authorization: `Bearer ${v.token}` },
        signal: ctrl.signal,
      });
      const reader = r.body!.pipeThrough(new TextDecoderStream()).getReader();
      let ready!: () => void;
      const subscribed = new Promise<void>((res) => {
        ready = res;
      });
      void (async () => {
        let buf = '';
        try {
          for (;;) {
            const { value, done: end } = await reader.read();
            if (end) break;
            buf += value;
            let cut = buf.indexOf('\n\n');
            while (cut >= 0) {
              const line = buf.slice(0, cut);
              buf = buf.slice(cut + 2);
              cut = buf.indexOf('\n\n');
              if (!line.startsWith('data: ')) continue;
              const f = JSON.parse(line.slice(6));
              if (f.type === 'subscribed') ready();
              if (f.type === 'event' && f.payload.type === 'RUN_FINISHED')
                done.set(f.payload.turnId, performance.now());
            }
          }
        } catch {
          // aborted at the end
        }
      })();
      await subscribed;
      return { done, close: () => ctrl.abort() };
    };

    const runOnce = async (flood: boolean): Promise<Run> => {
      const quiet = await Promise.all(Array.from({ length: Q }, visitor));
      const streams = await Promise.all(quiet.map(follow));
      const flooder = await visitor();
      let floodSent = 0;
      let floodAccepted = 0;
      let floodRefused = 0;
      let stop = false;
      const floodLoop = async () => {
        while (!stop) {
          const r = await send(flooder, 'flood');
          await r.arrayBuffer();
          floodSent++;
          if (r.status === 200) floodAccepted++;
          else if (r.status === 429) floodRefused++;
        }
      };
      const flooders = flood ? Array.from({ length: 16 }, floodLoop) : [];
      await Bun.sleep(flood ? 200 : 0); // the flood is under way before the quiet visitors start
      const acks: number[] = [];
      const e2e: number[] = [];
      const started = performance.now();
      await Promise.all(
        quiet.map(async (v, i) => {
          await Bun.sleep((i * PACE_MS) / Q); // spread the visitors over the pace
          for (let m = 0; m < M; m++) {
            const t0 = performance.now();
            const r = await send(v, `hello${m}`);
            const body = (await r.json()) as { messageId: string };
            if (r.status !== 200) throw new Error(`quiet visitor refused: ${r.status} ${JSON.stringify(body)}`);
            acks.push(performance.now() - t0);
            const end = Date.now() + 30_000;
            while (!streams[i].done.has(body.messageId)) {
              if (Date.now() > end) throw new Error('reply missing');
              await Bun.sleep(1);
            }
            e2e.push(streams[i].done.get(body.messageId)! - t0);
            await Bun.sleep(Math.max(0, PACE_MS - (performance.now() - t0)));
          }
        }),
      );
      stop = true;
      const seconds = (performance.now() - started) / 1000;
      await Promise.all(flooders);
      for (const s of streams) s.close();
      acks.sort((a, b) => a - b);
      e2e.sort((a, b) => a - b);
      return {
        flood,
        ackP50: percentile(acks, 50),
        ackP99: percentile(acks, 99),
        e2eP50: percentile(e2e, 50),
        e2eP99: percentile(e2e, 99),
        floodSent,
        floodAccepted,
        floodRefused,
        seconds,
      };
    };

    console.log(
      `web chat flood isolation: ${Q} quiet visitors × ${M} messages; flood = 1 visitor, 16 requests in flight`,
    );
    console.log(
      '| run | quiet ack p50 / p99 (ms) | quiet reply p50 / p99 (ms) | flood requests (per s) | accepted | 429 |',
    );
    console.log('|---|---|---|---|---|---|');
    for (let round = 0; round < ROUNDS; round++) {
      for (const flood of [false, true]) {
        const r = await runOnce(flood);
        console.log(
          `| ${flood ? 'with flood' : 'baseline'} | ${fmt(r.ackP50)} / ${fmt(r.ackP99)} | ${fmt(r.e2eP50)} / ${fmt(r.e2eP99)} | ${flood ? `${r.floodSent} (${fmt(r.floodSent / r.seconds, 0)}/s)` : '—'} | ${flood ? r.floodAccepted : '—'} | ${flood ? r.floodRefused : '—'} |`,
        );
      }
    }
  } finally {
    await gw.stop();
  }
}

await main();
