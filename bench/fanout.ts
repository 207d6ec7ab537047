// WebSocket fan-out: 1,000 subscribers on one conversation; a producer emits N deltas.
// Compares the StreamHub behind /ws (coalesced and uncoalesced) with raw Bun pub/sub
// (`server.publish` to a topic, one frame per delta) in the same run.
//
//   bun bench/fanout.ts [--clients 1000] [--deltas 1000]
//
// Two producer shapes: "burst" (as fast as possible, yielding every 10 deltas: raw throughput)
// and "paced" (one delta per ~1 ms, faster than any LLM streams: the realistic case, where the
// figure that matters is CPU spent per delivered delta).
//
// Clients are real Bun WebSocket clients in this same process, so client parsing competes with
// the server for the CPU in every variant alike. Stops by itself (hard cap ~50 s).

import { Elysia } from 'elysia';
import { StreamHub } from '../src/stream/hub.ts';
import { wsRoutes } from '../src/stream/ws.ts';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const CLIENTS = arg('clients', 1000);
const DELTAS = arg('deltas', 1000);
// Paced runs cost ~1 ms of wall time per delta at least; fewer keep the whole bench under a minute.
const PACED_DELTAS = arg('paced-deltas', 300);
const YIELD_EVERY = 10; // the producer yields to the event loop every 10 deltas, like a streamed agent
const HARD_DEADLINE = Date.now() + 50_000;

const turn = { instanceId: 'inst-bench', conversationId: 'conv-bench', turnId: 'turn-bench', messageId: 'msg-bench' };
const deltaText = (i: number) => `tok${i} `;
const textOf = (n: number) => Array.from({ length: n }, (_, i) => deltaText(i)).join('');

interface ClientState {
  ws: WebSocket;
  frames: number;
  text: string;
  resyncs: number;
  done: boolean;
}

type Variant = { name: string; result: Result };
type Pace = 'burst' | 'paced';
interface Result {
  ms: number;
  cpuMs: number;
  framesPerClient: number;
  resyncs: number;
  correct: number;
  completed: number;
}

async function openClients(
  url: string,
  onFrame: (c: ClientState, data: any) => void,
  afterOpen?: (ws: WebSocket) => void,
) {
  const clients: ClientState[] = [];
  for (let start = 0; start < CLIENTS; start += 100) {
    const batch = Array.from({ length: Math.min(100, CLIENTS - start) }, () => {
      const c: ClientState = { ws: new WebSocket(url), frames: 0, text: '', resyncs: 0, done: false };
      c.ws.onmessage = (e) => onFrame(c, JSON.parse(String(e.data)));
      clients.push(c);
      return new Promise<void>((resolve, reject) => {
        c.ws.onopen = () => {
          afterOpen?.(c.ws);
          resolve();
        };
        c.ws.onerror = () => reject(new Error('client failed to connect'));
      });
    });
    await Promise.all(batch);
  }
  return clients;
}

async function waitAll(clients: ClientState[], pred: (c: ClientState) => boolean) {
  while (!clients.every(pred)) {
    if (Date.now() > HARD_DEADLINE) return false;
    await Bun.sleep(2);
  }
  return true;
}

/** Waits for every client to see the end of the turn, then the run's figures (timed from t0 / cpu0). */
async function measured(
  clients: ClientState[],
  expectedText: string,
  t0: number,
  cpu0: number,
  resyncs: () => number,
): Promise<Result> {
  await waitAll(clients, (c) => c.done);
  return {
    ms: performance.now() - t0,
    cpuMs: cpuNow() - cpu0,
    framesPerClient: clients.reduce((n, c) => n + c.frames, 0) / clients.length,
    resyncs: resyncs(),
    correct: clients.filter((c) => c.text === expectedText).length,
    completed: clients.filter((c) => c.done).length,
  };
}

async function closeAll(clients: ClientState[]) {
  for (const c of clients) c.ws.close();
  await Bun.sleep(50);
}

/** Lets the producer behave like a streamed agent: burst yields to I/O, paced waits ~1 ms. */
async function producerPause(i: number, pace: Pace) {
  if (pace === 'paced') await Bun.sleep(1);
  else if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise((r) => setImmediate(r));
}

const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function runHub(coalesceMs: number, pace: Pace, n: number): Promise<Result> {
  const expectedText = textOf(n);
  const hub = new StreamHub({ coalesceMs, keepaliveMs: 0 });
  const app = new Elysia()
    .use(wsRoutes({ hub, authenticate: (key) => (key === 'sk-bench' ? { instanceIds: null } : null) }))
    .listen({ port: 0, hostname: '127.0.0.1' });
  const url = `ws://127.0.0.1:${app.server!.port}/ws?apiKey=sk-bench`;

  let subscribed = 0;
  const clients = await openClients(
    url,
    (c, msg) => {
      if (msg.type === 'subscribed') return void subscribed++;
      c.frames++;
      if (msg.type === 'resync') {
        c.resyncs++;
        c.text = msg.snapshot.text;
        if (msg.snapshot.status !== 'running') c.done = true;
        return;
      }
      const p = msg.payload;
      if (p?.type === 'TEXT_MESSAGE_CONTENT') c.text += p.delta;
      else if (p?.type === 'RUN_FINISHED') c.done = true;
    },
    (ws) =>
      ws.send(
        JSON.stringify({
          type: 'subscribe',
          channels: ['conversations'],
          filters: { conversationId: turn.conversationId },
        }),
      ),
  );
  while (subscribed < CLIENTS && Date.now() < HARD_DEADLINE) await Bun.sleep(2);

  const t0 = performance.now();
  const cpu0 = cpuNow();
  hub.runStarted(turn);
  for (let i = 0; i < n; i++) {
    hub.delta(turn.turnId, deltaText(i));
    await producerPause(i, pace);
  }
  hub.runFinished(turn.turnId, expectedText);
  const result = await measured(clients, expectedText, t0, cpu0, () => hub.stats().resyncsTotal);
  await closeAll(clients);
  hub.close();
  app.server!.stop(true);
  return result;
}

async function runRawPublish(pace: Pace, n: number): Promise<Result> {
  const expectedText = textOf(n);
  const topic = 'conv-bench';
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req, srv) {
      return srv.upgrade(req) ? undefined : new Response('upgrade required', { status: 426 });
    },
    websocket: {
      open(ws) {
        ws.subscribe(topic);
      },
      message() {},
    },
  });
  const clients = await openClients(`ws://127.0.0.1:${server.port}/`, (c, msg) => {
    c.frames++;
    const p = msg.payload;
    if (p?.type === 'TEXT_MESSAGE_CONTENT') c.text += p.delta;
    else if (p?.type === 'RUN_FINISHED') c.done = true;
  });

  const frame = (payload: object) => JSON.stringify({ type: 'event', channel: 'conversations', payload });
  const t0 = performance.now();
  const cpu0 = cpuNow();
  let seq = 0;
  for (let i = 0; i < n; i++) {
    server.publish(topic, frame({ type: 'TEXT_MESSAGE_CONTENT', ...turn, seq: ++seq, delta: deltaText(i) }));
    await producerPause(i, pace);
  }
  server.publish(topic, frame({ type: 'RUN_FINISHED', ...turn, seq: ++seq, result: { text: expectedText } }));
  const result = await measured(clients, expectedText, t0, cpu0, () => 0);
  await closeAll(clients);
  server.stop(true);
  return result;
}

const variants: (Variant & { pace: Pace; n: number })[] = [];
for (const [pace, n] of [
  ['burst', DELTAS],
  ['paced', PACED_DELTAS],
] as const) {
  variants.push({ pace, n, name: 'raw server.publish (1 frame/delta)', result: await runRawPublish(pace, n) });
  variants.push({ pace, n, name: 'StreamHub, no coalescing', result: await runHub(0, pace, n) });
  variants.push({ pace, n, name: 'StreamHub, coalesce 30 ms', result: await runHub(30, pace, n) });
}

const rows = variants.map(({ pace, n, name, result: r }) => ({
  producer: `${pace} ×${n}`,
  variant: name,
  'wall ms': r.ms.toFixed(0),
  'cpu ms': r.cpuMs.toFixed(0),
  'deltas delivered/s': Math.round((n * r.completed) / (r.ms / 1000)).toLocaleString('en-US'),
  'cpu µs/delivered delta': ((r.cpuMs * 1000) / (n * Math.max(1, r.completed))).toFixed(2),
  'frames/client': r.framesPerClient.toFixed(1),
  resyncs: r.resyncs,
  'exact text': `${r.correct}/${CLIENTS}`,
}));
console.log(
  `fan-out: ${CLIENTS} subscribers on one conversation, deltas per run as shown, Bun ${Bun.version}, ${navigator.hardwareConcurrency} CPUs`,
);
console.table(rows);
if (Date.now() > HARD_DEADLINE) console.log('(hit the 50 s cap; figures above are partial)');
process.exit(0);
