// The gateway as a ratio to its references (issue 24), measured side by side in one run so the
// machine's speed (and whatever else runs on it) cancels out:
//  P2 = gateway replies/s ÷ the hand-written durable pipeline's replies/s (bench/reference.ts p2)
//  P1 = gateway durable acks/s ÷ a bare Elysia route's acks/s (bench/reference.ts p1), measured
//       ack-only: the stand-in agent holds its answers during the phase, so each conversation takes
//       its first message and then only the webhooks' durable writes run (as in P1, which stores
//       nothing); the held work is let go and finished, untimed, afterwards. P2's ack-only rate is
//       shown too: what a hand-written durable ack costs.
// Each round runs the gateway and the references back to back, alternating which goes first, on
// fresh stand-ins and a fresh database; the same closed-loop load generator (C posts in flight)
// drives them all. Run: bun bench/ratios.ts [rounds] [messages] [chats] [concurrency]
import { startBenchGateway, upsertBody } from './gateway.ts';
import { type ReferenceKind, startReference } from './reference.ts';
import { fmt, percentile, startBenchStandIns } from './standins.ts';

export interface LoadFigures {
  ackedPerSec: number;
  /** NaN for P1 (it sends nothing). */
  repliesPerSec: number;
  ackP99: number;
  /** CPU per message (µs): the server's main thread, all its threads, and the bench process. */
  mainUs: number;
  totalUs: number;
  benchUs: number;
  rssMiB: number;
}

export interface RatioRound {
  load: string;
  gateway: LoadFigures;
  p2: LoadFigures;
  gatewayAck: LoadFigures;
  p2Ack: LoadFigures;
  p1: LoadFigures;
  p2Ratio: number;
  p1Ratio: number;
  /**
   * The same ratios from CPU per message (reference µs ÷ gateway µs, all threads of the server):
   * what the rates would be if each had the machine to itself. Steadier than the rates on a shared
   * machine, where the rate also depends on what else got the cores during the run.
   */
  p2CpuRatio: number;
  p1CpuRatio: number;
}

type Target = 'gateway' | ReferenceKind;

export interface LoadShape {
  messages: number;
  chats: number;
  concurrency: number;
  /** The agent holds its answers while the webhooks are posted (see the top of this file). */
  ackOnly?: boolean;
  /** Gateway only: messages spread round-robin over this many instances (default 1). */
  instances?: number;
}

/** One target on fresh stand-ins: warm-up, then N webhooks with C in flight over M chats. */
export async function measure(target: Target, shape: LoadShape): Promise<LoadFigures> {
  const { messages: N, chats: M, concurrency: C } = shape;
  const ackOnly = shape.ackOnly ?? target === 'p1';
  const si = startBenchStandIns({ deltas: 10 });
  let server: { cpuMs(): { main: number; total: number }; rssBytes(): number; stop(): Promise<void> };
  let hooks: string[];
  if (target === 'gateway') {
    const gw = await startBenchGateway({ CONVERSATION_BACKLOG_LIMIT: '100000', GLOBAL_BACKLOG_LIMIT: '1000000' });
    server = gw;
    hooks = [];
    const I = shape.instances ?? 1;
    if (I > 1) await gw.setSetting('rateLimit.instancesWritePerMinute', 1_000_000);
    for (let i = 0; i < I; i += 16)
      hooks.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(16, I - i) }, (_, j) =>
            gw.createInstance(I === 1 ? 'bench' : `bench${i + j}`, {
              evolution_url: si.evolutionUrl,
              evolution_key: si.evolutionKey,
              agent_api_url: si.agentUrl,
              agent_type: 'agui',
              agent_timeout: 30,
            }),
          ),
        )),
      );
    await Bun.sleep(300 + I); // the instance actors connect
  } else {
    const ref = await startReference(target, si);
    server = ref;
    hooks = [ref.webhook];
  }
  const replies = target !== 'p1';
  let errors = 0;
  const post = async (id: string, chat: string, text: string, i = 0): Promise<number> => {
    const t = performance.now();
    const res = await fetch(hooks[i % hooks.length]!, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: upsertBody(id, chat, text),
    });
    await res.arrayBuffer();
    if (res.status !== 200) errors++;
    return performance.now() - t;
  };
  const waitReplies = async (texts: string[]) => {
    const end = Date.now() + 180_000;
    while (texts.some((t) => !si.sentAt.has(t))) {
      if (Date.now() > end) throw new Error(`${target}: replies missing after 180 s`);
      await Bun.sleep(5);
    }
  };
  try {
    const warm = Array.from({ length: 500 }, (_, i) => `w${i}`);
    await Promise.all(warm.map((t, i) => post(`W-${i}`, `1888${i % 50}`, t, i)));
    if (replies) await waitReplies(warm);
    const texts = Array.from({ length: N }, (_, i) => `b${i}`);
    const acks: number[] = [];
    let next = 0;
    const t0 = performance.now();
    const cpu0 = server.cpuMs();
    const bench0 = process.cpuUsage();
    let release = () => {};
    if (ackOnly) si.agentHold = new Promise<void>((r) => (release = r));
    await Promise.all(
      Array.from({ length: C }, async () => {
        while (next < N) {
          const i = next++;
          acks.push(await post(`B-${i}`, `1777${i % M}`, texts[i]!, i));
        }
      }),
    );
    const tAcked = performance.now();
    const ackCpu = server.cpuMs();
    const ackBench = process.cpuUsage(bench0);
    si.agentHold = null;
    release();
    if (replies) await waitReplies(texts);
    const tDone = performance.now();
    const cpu1 = ackOnly ? ackCpu : server.cpuMs();
    const bench1 = ackOnly ? ackBench : process.cpuUsage(bench0);
    if (errors) throw new Error(`${target}: ${errors} webhooks not answered 200`);
    acks.sort((a, b) => a - b);
    return {
      ackedPerSec: N / ((tAcked - t0) / 1000),
      repliesPerSec: replies && !ackOnly ? N / ((tDone - t0) / 1000) : NaN,
      ackP99: percentile(acks, 99),
      mainUs: ((cpu1.main - cpu0.main) * 1000) / N,
      totalUs: ((cpu1.total - cpu0.total) * 1000) / N,
      benchUs: (bench1.user + bench1.system) / N,
      rssMiB: server.rssBytes() / 2 ** 20,
    };
  } finally {
    await server.stop();
    si.stop();
  }
}

async function loadAverage(): Promise<string> {
  try {
    return (await Bun.file('/proc/loadavg').text()).split(' ').slice(0, 3).join(' ');
  } catch {
    return 'n/a';
  }
}

export async function runRatioBench(
  opts: { rounds?: number; messages?: number; chats?: number; concurrency?: number; log?: (s: string) => void } = {},
): Promise<RatioRound[]> {
  const R = opts.rounds ?? 3;
  const N = opts.messages ?? 10_000;
  const M = opts.chats ?? 500;
  const C = opts.concurrency ?? 64;
  const shape = { messages: N, chats: M, concurrency: C };
  const out: RatioRound[] = [];
  for (let r = 0; r < R; r++) {
    const load = await loadAverage();
    // Alternate the order so drift in the machine's speed does not favour one side.
    type Run = 'gateway' | 'p2' | 'gatewayAck' | 'p2Ack' | 'p1';
    const runs: Record<Run, () => Promise<LoadFigures>> = {
      gateway: () => measure('gateway', shape),
      p2: () => measure('p2', shape),
      gatewayAck: () => measure('gateway', { ...shape, ackOnly: true }),
      p2Ack: () => measure('p2', { ...shape, ackOnly: true }),
      p1: () => measure('p1', shape),
    };
    const order: Run[] = ['gateway', 'p2', 'gatewayAck', 'p1', 'p2Ack'];
    if (r % 2 === 1) order.reverse();
    const got = {} as Record<Run, LoadFigures>;
    for (const run of order) got[run] = await runs[run]();
    const round: RatioRound = {
      load: `${load} → ${await loadAverage()}`,
      ...got,
      p2Ratio: got.gateway.repliesPerSec / got.p2.repliesPerSec,
      p1Ratio: got.gatewayAck.ackedPerSec / got.p1.ackedPerSec,
      p2CpuRatio: got.p2.totalUs / got.gateway.totalUs,
      p1CpuRatio: got.p1.totalUs / got.gatewayAck.totalUs,
    };
    out.push(round);
    opts.log?.(formatRound(r + 1, round));
  }
  return out;
}

const figs = (f: LoadFigures) =>
  `${Number.isNaN(f.repliesPerSec) ? '' : `${fmt(f.repliesPerSec, 0)} replies/s, `}${fmt(f.ackedPerSec, 0)} acks/s, ack p99 ${fmt(f.ackP99)} ms, CPU ${fmt(f.mainUs, 0)} main / ${fmt(f.totalUs, 0)} all threads µs/msg (bench ${fmt(f.benchUs, 0)}), RSS ${fmt(f.rssMiB, 0)} MiB`;

export function formatRound(n: number, r: RatioRound): string {
  return [
    `round ${n} (load average ${r.load}): P2 ${fmt(r.p2Ratio, 2)}, P1 ${fmt(r.p1Ratio, 2)} (by CPU per message: P2 ${fmt(r.p2CpuRatio, 2)}, P1 ${fmt(r.p1CpuRatio, 2)})`,
    `  pipeline  gateway: ${figs(r.gateway)}`,
    `            P2 ref:  ${figs(r.p2)}`,
    `  ack-only  gateway: ${figs(r.gatewayAck)}`,
    `            P1 ref:  ${figs(r.p1)}`,
    `            P2 ref:  ${figs(r.p2Ack)}`,
  ].join('\n');
}

/** min–max and median of a list. */
export function spread(xs: number[], digits = 2): string {
  const s = [...xs].sort((a, b) => a - b);
  return `${fmt(s[Math.floor(s.length / 2)]!, digits)} (${fmt(s[0]!, digits)}–${fmt(s.at(-1)!, digits)})`;
}

if (import.meta.main) {
  const [r, n, m, c] = process.argv.slice(2).map(Number);
  console.log(`ratios: Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs, ${new Date().toISOString()}`);
  const rounds = await runRatioBench({
    rounds: r || undefined,
    messages: n || undefined,
    chats: m || undefined,
    concurrency: c || undefined,
    log: console.log,
  });
  console.log(
    `P2 (replies/s vs hand-written durable pipeline): ${spread(rounds.map((x) => x.p2Ratio))}, by CPU per message ${spread(rounds.map((x) => x.p2CpuRatio))} — target ≥ 0.7\n` +
      `P1 (durable acks/s vs bare Elysia route):       ${spread(rounds.map((x) => x.p1Ratio))}, by CPU per message ${spread(rounds.map((x) => x.p1CpuRatio))} — target ≥ 0.5`,
  );
}
