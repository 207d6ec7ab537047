// Memory with many conversations: the real pipeline in this process (file database, instant
// agent and channel stand-ins injected), RSS after
//  1. 100k conversations that each got a message, were answered, and whose actors were then
//     passivated (stopped; only their database rows remain), and
//  2. 10k more conversations answered and kept active (actors in memory, idle timeout not reached),
//  3. a flood: one conversation receives 20k messages (beyond its backlog bound they are shed).
// Each RSS is taken right after a full GC, and again after 3 s idle: the allocators return freed
// pages to the OS lazily, so the first figure still includes the garbage of the burst just run.
// Run: bun bench/memory.ts [passivated] [active]   (prints one JSON line with --json)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentClient } from '../src/agents/types.ts';
import type { ChannelAdapter } from '../src/channels/types.ts';
import { loadConfig } from '../src/config.ts';
import type { InboundMessage } from '../src/core/message.ts';
import { createGateway } from '../src/gateway.ts';
import { silentLogger } from '../src/log.ts';

const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
const mib = (b: number) => Math.round(b / 2 ** 20);
function settle(): number {
  Bun.gc(true);
  return rss();
}
/** RSS once the allocators have returned freed pages to the OS (they do it lazily, within ~1–3 s). */
async function settleIdle(): Promise<number> {
  Bun.gc(true);
  await Bun.sleep(3000);
  Bun.gc(true);
  return rss();
}

export interface MemoryResult {
  passivated: number;
  active: number;
  baseMiB: number;
  afterPassivatedMiB: number;
  afterActiveMiB: number;
  /** The same state after 3 s idle: what stays, without garbage the allocators still hold. */
  afterPassivatedIdleMiB: number;
  afterActiveIdleMiB: number;
  floodAddedMiB: number;
  activeActors: number;
  /** Turns the stream hub still holds (none expected: no client lags). */
  hubTurnsHeld: number;
  seconds: number;
}

export async function runMemoryBench(P = 100_000, A = 10_000): Promise<MemoryResult> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'sb-mem-'));
  let sent = 0;
  const adapter: ChannelAdapter = {
    kind: 'whatsapp-evolution',
    capabilities: {
      maxText: 4096,
      edit: false,
      typing: false,
      threads: false,
      reactions: false,
      media: [],
      pairing: 'none',
    },
    async start(ctx) {
      ctx.setStatus('connected');
    },
    async stop() {},
    async send() {
      return { platformMessageId: `p${++sent}` } as never;
    },
  };
  // Instant streaming agent: 10 deltas.
  const agent: AgentClient = {
    async *run(req) {
      for (let i = 0; i < 10; i++) yield { type: 'delta', text: `w${i} ` };
      yield { type: 'final', text: `re ${req.message}` };
    },
  };
  const config = loadConfig({
    DATABASE_PATH: join(dir, 'gw.db'),
    SWITCHBOARD_API_KEY: 'mem-bench-key-0123456789abcdef',
    LOG_LEVEL: 'silent',
    ACTOR_IDLE_MS: '3600000',
    MAX_ACTIVE_ACTORS: String(A * 2),
    GLOBAL_BACKLOG_LIMIT: '1000000',
  });
  const gw = createGateway(config, {
    log: silentLogger,
    pipeline: { factories: { 'whatsapp-evolution': () => adapter }, agentFor: () => agent },
  });
  try {
    const inst = await gw.instances.create({
      name: 'mem',
      channel: 'whatsapp-evolution',
      config: { evolution_url: 'http://127.0.0.1:9', evolution_key: 'k' },
      agent: { url: 'http://127.0.0.1:9/agent', type: 'agui' },
    } as never);
    await gw.start();
    const p = gw.pipeline;
    const msg = (chat: string, id: string): InboundMessage => ({
      instanceId: inst.id,
      providerMessageId: id,
      chat: { kind: 'direct', chatId: `${chat}@s.whatsapp.net` } as never,
      sender: { id: `${chat}@s.whatsapp.net`, phone: `+${chat}`, name: 'Mem' },
      text: `hello ${id}`,
      contentType: 'text',
      timestamp: Date.now(),
    });
    const base = settle();
    const completed = () =>
      gw.db
        .query<{ n: number }, []>("SELECT COUNT(*) AS n FROM inbox WHERE status NOT IN ('pending','processing')")
        .get()!.n;
    const until = async (n: number) => {
      while (completed() < n) await Bun.sleep(50);
    };

    // 1. P conversations, answered, then passivated, in batches (bounded in-flight work).
    const BATCH = 2000;
    for (let off = 0; off < P; off += BATCH) {
      const keys: string[] = [];
      await Promise.all(
        Array.from({ length: Math.min(BATCH, P - off) }, (_, i) =>
          p
            .ingest(msg(`2${String(off + i).padStart(9, '0')}`, `P${off + i}`))
            .then((r) => void keys.push(r.conversationId)),
        ),
      );
      await until(off + keys.length);
      for (const k of keys) await p.conversations.passivate(k);
    }
    const afterPassivated = settle();
    const afterPassivatedIdle = await settleIdle();

    // 2. A conversations answered and left active.
    for (let off = 0; off < A; off += BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(BATCH, A - off) }, (_, i) =>
          p.ingest(msg(`3${String(off + i).padStart(9, '0')}`, `A${off + i}`)),
        ),
      );
      await until(P + off + Math.min(BATCH, A - off));
    }
    const afterActive = settle();
    const afterActiveIdle = await settleIdle();
    const activeActors = p.conversations.stats().active;
    const hubTurnsHeld = p.hub.stats().turnsHeld;

    // 3. Flood one conversation; peak RSS while it is processed.
    let peak = rss();
    const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20);
    await Promise.all(Array.from({ length: 20_000 }, (_, i) => p.ingest(msg('4000000000', `F${i}`))));
    await until(P + A + 20_000);
    clearInterval(sampler);
    peak = Math.max(peak, rss());
    return {
      passivated: P,
      active: A,
      baseMiB: mib(base),
      afterPassivatedMiB: mib(afterPassivated),
      afterActiveMiB: mib(afterActive),
      afterPassivatedIdleMiB: mib(afterPassivatedIdle),
      afterActiveIdleMiB: mib(afterActiveIdle),
      floodAddedMiB: mib(peak - afterActiveIdle),
      activeActors,
      hubTurnsHeld,
      seconds: Math.round((Date.now() - started) / 1000),
    };
  } finally {
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const [a, b] = process.argv
    .slice(2)
    .filter((x) => !x.startsWith('--'))
    .map(Number);
  const r = await runMemoryBench(a || undefined, b || undefined);
  if (process.argv.includes('--json')) console.log(JSON.stringify(r));
  else
    console.log(
      `memory: ${r.passivated} passivated + ${r.active} active conversations (${r.activeActors} actors in memory): RSS base ${r.baseMiB} MiB → ${r.afterPassivatedMiB} MiB after passivated (${r.afterPassivatedIdleMiB} after 3 s idle) → ${r.afterActiveMiB} MiB with active (${r.afterActiveIdleMiB} after 3 s idle); hub holds ${r.hubTurnsHeld} turns; flood of 20k to one chat adds ${r.floodAddedMiB} MiB (${r.seconds} s)`,
    );
}
