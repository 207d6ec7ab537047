// A slow WebSocket subscriber next to a fast one, on the real gateway process under load.
//
// The slow client is a raw TCP socket that stops reading while the load runs (a stalled phone, a
// suspended tab), then reads freely: once the kernel's socket buffers are full the gateway's
// `ws.send` reports backpressure, and the hub must skip that client (and send it one `resync` per
// missed turn when it drains) instead of queueing frames for it. What a user would notice is
// checked: every message still gets exactly one reply in order (history checker), the fast client
// still sees every reply delta by delta, the gateway's memory stays bounded, the pipeline is not
// slowed down, and the slow client ends up with every reply's final text anyway.
//
// Not reading at all is what makes the backpressure certain. The client used to read ~100 KB/s,
// and each of its reads let Linux grow its receive buffer (receive autotuning, up to tcp_rmem's
// maximum: 32 MiB where this was measured): offered ~15 MB at ~1 MB/s (this load on a busy
// machine), such a reader met its first backpressure only after 12.5 to 15 MB, so now and then
// never, and the test failed with 0 resyncs. A socket that is not read keeps its initial receive
// buffer: the first backpressure comes after ~4 MB every time (the bound is checked below). It
// stays unread until the load is over, so a gateway that queued frames for it would hold the
// ~12 MB the kernel could not take (the memory bound below).

import { afterEach, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { CHAOS_KEY, ChaosRun, pool, replyFor, until } from './harness.ts';
import { checkHistory } from './history.ts';

// 1,800 replies per phase: below the 2,000 finished turns the hub keeps for lagging clients (so
// the slow client can be resynced on every one), and with replies near WhatsApp's 4,000-character
// limit (one send each) ~15 MB per subscriber, over three times what the socket buffers of a
// client that reads nothing hold with Linux's default tcp_wmem (4 MiB) and tcp_rmem (128 KiB
// initial): the gateway must meet backpressure.
const CHATS = 40;
const PER_CHAT = 45;
const REPLY_CHARS = 3_900;

/** The agent's reply: unique per message (it starts with replyFor), padded with words to REPLY_CHARS. */
const longReply = (text: string) =>
  `${replyFor(text)} ${'lorem ipsum dolor sit amet '.repeat(REPLY_CHARS / 20)}`.slice(0, REPLY_CHARS).trimEnd();

let run: ChaosRun | null = null;
const closers: Array<() => void> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) close();
  await run?.dispose(process.env.CHAOS_KEEP === '1');
  run = null;
});

interface TurnView {
  seq: number;
  text: string;
  /** The reply's final text, once the turn finished (from RUN_FINISHED or a finished resync). */
  final: string | null;
}

/**
 * Rebuilds every turn one subscriber sees from its frames, as a client would: each turn frame
 * must carry the next seq, unless a `resync` snapshot replaced what the client had; the
 * TEXT_MESSAGE_CONTENT deltas must add up to the RUN_FINISHED text.
 */
class TurnTracker {
  readonly turns = new Map<string, TurnView>();
  readonly violations: string[] = [];
  resyncs = 0;
  turnFrames = 0;
  /** Bytes of the frames received (their JSON text). */
  bytes = 0;

  onFrame(f: any): void {
    if (f.type === 'resync') {
      const s = f.snapshot;
      const t = this.turn(s.turnId);
      if (s.seq < t.seq) this.violations.push(`turn ${s.turnId}: resync at seq ${s.seq} after seq ${t.seq}`);
      Object.assign(t, { seq: s.seq, text: s.text, final: s.status === 'finished' ? s.text : t.final });
      this.resyncs++;
      return;
    }
    if (f.type !== 'event' || f.channel !== 'conversations') return;
    const p = f.payload;
    const t = this.turn(p.turnId);
    this.turnFrames++;
    if (p.seq !== t.seq + 1) this.violations.push(`turn ${p.turnId}: seq ${p.seq} after ${t.seq} without a resync`);
    t.seq = p.seq;
    if (p.type === 'TEXT_MESSAGE_START' && t.text !== '') t.text += '\n\n';
    else if (p.type === 'TEXT_MESSAGE_CONTENT') t.text += p.delta;
    else if (p.type === 'CUSTOM' && p.name === 'TURN_RESTARTED') t.text = '';
    else if (p.type === 'RUN_FINISHED') {
      if (t.text !== p.result.text)
        this.violations.push(
          `turn ${p.turnId}: deltas add up to ${t.text.length} chars, RUN_FINISHED has ${p.result.text.length}`,
        );
      t.final = p.result.text;
    }
  }

  /** Final texts of all finished turns. */
  finals(): Set<string> {
    return new Set([...this.turns.values()].flatMap((t) => (t.final === null ? [] : [t.final])));
  }

  private turn(id: string): TurnView {
    let t = this.turns.get(id);
    if (!t) this.turns.set(id, (t = { seq: 0, text: '', final: null }));
    return t;
  }
}

const subscribeFrame = (instanceId: string) =>
  JSON.stringify({ type: 'subscribe', channels: ['conversations'], filters: { instanceId } });

/** A well-behaved client: Bun's WebSocket, read as fast as the test process can. */
async function fastClient(r: ChaosRun): Promise<TurnTracker> {
  const tracker = new TurnTracker();
  const ws = new WebSocket(`${r.url.replace('http', 'ws')}/ws?apiKey=${CHAOS_KEY}`);
  closers.push(() => ws.close());
  let subscribed = false;
  ws.onmessage = (e) => {
    tracker.bytes += Buffer.byteLength(String(e.data));
    const f = JSON.parse(String(e.data));
    if (f.type === 'subscribed') subscribed = true;
    tracker.onFrame(f);
  };
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error('fast client: ws error'));
  });
  ws.send(subscribeFrame(r.instanceId));
  await until(() => subscribed, 5000);
  return tracker;
}

/**
 * A client on a raw TCP socket (Bun.connect) that can stop reading: paused, the socket is not read
 * at all, so unread bytes stay in the kernel and push back on the gateway. Speaks just enough
 * RFC 6455: the upgrade, one masked text frame out, unmasked frames in.
 */
class SlowClient {
  readonly tracker = new TurnTracker();
  bytes = 0;
  subscribed = false;
  private buf: Buffer = Buffer.alloc(0);
  private upgraded = false;

  private constructor(
    private readonly sock: Bun.Socket<undefined>,
    private readonly instanceId: string,
  ) {}

  static async connect(r: ChaosRun): Promise<SlowClient> {
    let client: SlowClient | null = null;
    const pending: Buffer[] = [];
    const sock = await Bun.connect({
      hostname: '127.0.0.1',
      port: r.port,
      socket: {
        data: (_s, chunk) => {
          if (client) client.onData(chunk);
          else pending.push(chunk);
        },
        error: (_s, err) => console.error('slow client:', err),
      },
    });
    client = new SlowClient(sock, r.instanceId);
    closers.push(() => sock.terminate());
    for (const chunk of pending) client.onData(chunk);
    client.write(
      `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${r.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64')}\r\n` +
        `Sec-WebSocket-Version: 13\r\nx-api-key: ${CHAOS_KEY}\r\n\r\n`,
    );
    return client;
  }

  /** Stops reading the socket: what the gateway sends from now on stays in the kernel's buffers. */
  pause(): void {
    this.sock.pause();
  }

  /** Reads again, as fast as possible. */
  resume(): void {
    this.sock.resume();
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (!this.upgraded) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString();
      if (!head.startsWith('HTTP/1.1 101')) throw new Error(`slow client: upgrade refused: ${head}`);
      this.upgraded = true;
      this.buf = this.buf.subarray(end + 4);
      this.sendText(subscribeFrame(this.instanceId));
    }
    this.readFrames();
  }

  private readFrames(): void {
    for (;;) {
      if (this.buf.length < 2) return;
      const opcode = this.buf[0]! & 0x0f;
      let len = this.buf[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        at = 10;
      }
      if (this.buf.length < at + len) return;
      const payload = this.buf.subarray(at, at + len);
      this.buf = this.buf.subarray(at + len);
      if (opcode !== 1) continue; // pings and the like: the run is shorter than the idle timeout
      const f = JSON.parse(payload.toString('utf8'));
      if (f.type === 'subscribed') this.subscribed = true;
      this.tracker.onFrame(f);
    }
  }

  private sendText(text: string): void {
    const data = Buffer.from(text);
    if (data.length >= 126) throw new Error('slow client: only short frames');
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const out = Buffer.alloc(6 + data.length);
    out[0] = 0x81;
    out[1] = 0x80 | data.length;
    out.set(mask, 2);
    for (let i = 0; i < data.length; i++) out[6 + i] = data[i]! ^ mask[i % 4]!;
    this.write(out);
  }

  private write(data: string | Buffer): void {
    const n = this.sock.write(data);
    if (n !== Buffer.byteLength(data)) throw new Error(`slow client: wrote ${n} of ${Buffer.byteLength(data)} bytes`);
  }
}

/**
 * What loopback's socket buffers can hold for a client that reads nothing: the gateway socket's
 * send buffer (autotuned up to tcp_wmem's maximum) plus the client's receive buffer, which without
 * reads stays at tcp_rmem's initial size. Null where /proc does not tell (not Linux).
 */
function unreadCapacity(): number | null {
  try {
    const field = (name: string, i: number) =>
      Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[i]);
    return field('tcp_wmem', 2) + field('tcp_rmem', 1);
  } catch {
    return null;
  }
}

function messages(tag: string, perChat: number) {
  const all: Array<{ id: string; chat: string; text: string }> = [];
  for (let i = 0; i < perChat; i++) {
    for (let c = 0; c < CHATS; c++)
      all.push({
        id: `${tag}-${c}-${i}`,
        chat: `1666000${String(c).padStart(4, '0')}`,
        text: `${tag} chat ${c} message ${i}`,
      });
  }
  return all;
}

/** The gateway's RSS samples (from the harness) within [from, to]. */
function rssBetween(r: ChaosRun, from: number, to: number): number[] {
  return r.history.events.flatMap((e) => (e.type === 'rss' && e.at >= from && e.at <= to ? [e.bytes] : []));
}

const MiB = 2 ** 20;

test('a slow WebSocket subscriber is skipped and resynced: replies, the fast subscriber, memory and throughput are unaffected', async () => {
  run = new ChaosRun('slow-subscriber');
  const r = run;
  await r.standIns({ reply: longReply, deltaChars: REPLY_CHARS / 10 }); // ~10 deltas per reply
  await r.start();
  await r.createInstance();
  const fast = await fastClient(r);
  let sent = 0;

  /** Delivers one batch, waits until every message is answered; returns how long that took. */
  const phase = async (tag: string, perChat: number) => {
    const msgs = messages(tag, perChat);
    const start = Date.now();
    await pool(msgs, 32, (m) => r.deliver(m.id, m.chat, m.text));
    sent += msgs.length;
    await r.settled(sent);
    return { msgs, start, ms: Date.now() - start };
  };
  /** Every reply of the batch reached the client as a finished turn with exactly that text. */
  const sawAll = (t: TurnTracker, msgs: Array<{ text: string }>) => {
    const finals = t.finals();
    return msgs.every((m) => finals.has(longReply(m.text)));
  };

  await phase('warm', 5);
  const rssBeforeBase = rssBetween(r, 0, Date.now()).at(-1)!;
  const base = await phase('base', PER_CHAT);
  await until(() => sawAll(fast, base.msgs), 10_000);
  const baseRss = rssBetween(r, base.start, Date.now());

  const slow = await SlowClient.connect(r);
  await until(() => slow.subscribed, 5000);
  slow.pause();
  const fastFramesBefore = fast.turnFrames;
  const fastBytesBefore = fast.bytes;
  const rssBefore = rssBetween(r, 0, Date.now()).at(-1)!;
  const withSlow = await phase('slow', PER_CHAT);
  await until(() => sawAll(fast, withSlow.msgs), 10_000);
  const slowRss = rssBetween(r, withSlow.start, Date.now());
  const slowBytesDuringLoad = slow.bytes;
  const phaseBytes = fast.bytes - fastBytesBefore; // what each subscriber was offered

  // Now the slow client reads freely: each turn it missed arrives as one resync.
  slow.resume();
  await until(() => sawAll(slow.tracker, withSlow.msgs), 15_000);
  const metrics = await (await fetch(`${r.url}/metrics`, { headers: { 'x-api-key': CHAOS_KEY } })).text();
  const resyncsTotal = Number(/^switchboard_ws_resyncs_total (\d+)/m.exec(metrics)?.[1]);

  const mib = (xs: number[]) => (Math.max(...xs) / MiB).toFixed(0);
  console.log(
    `slow subscriber: ${base.msgs.length} replies in ${base.ms} ms without it, ${withSlow.ms} ms with it; ` +
      `gateway RSS ${(rssBeforeBase / MiB) | 0} → max ${mib(baseRss)} MiB without it, ${(rssBefore / MiB) | 0} → max ${mib(slowRss)} MiB with it; ` +
      `${(phaseBytes / MiB).toFixed(1)} MiB for each subscriber with it, of which the slow client had read ` +
      `${(slowBytesDuringLoad / MiB).toFixed(1)} MiB by the end of the load; ${slow.tracker.turnFrames} turn frames ` +
      `(fast: ${fast.turnFrames - fastFramesBefore}) and ${slow.tracker.resyncs} resyncs; fast client resyncs: ${fast.resyncs}`,
  );

  // Every acked message answered exactly once, in order.
  for (const close of closers.splice(0)) close(); // an open /ws connection holds up a graceful stop
  await r.current!.stop();
  r.collect();
  const history = checkHistory(r.history.events, { replyFor: longReply });
  expect(history.violations).toEqual([]);
  expect(history.stats.completed).toBe(sent);
  expect(history.stats.sends).toBe(sent);

  // The fast subscriber saw every reply, frame after frame (or resynced when its own reads lagged).
  expect(fast.violations).toEqual([]);
  // The load was more than the socket buffers of a client that reads nothing can hold (else the
  // gateway could not have met backpressure, and what follows would test nothing).
  const capacity = unreadCapacity();
  if (capacity !== null) expect(phaseBytes).toBeGreaterThan(2 * capacity);
  // The slow one was skipped, not queued for: it got fewer frames, and resyncs instead of the
  // ones it missed, and still ends with every reply's final text.
  expect(slow.tracker.violations).toEqual([]);
  expect(slow.tracker.resyncs).toBeGreaterThan(0);
  expect(slow.tracker.turnFrames).toBeLessThan(fast.turnFrames - fastFramesBefore);
  expect(resyncsTotal).toBeGreaterThanOrEqual(slow.tracker.resyncs + fast.resyncs);
  // Bounded memory: the frames it could not take were not buffered in the gateway. Measured against
  // the same load without the slow client (the load alone grows RSS by ~40 MiB now, with GC timing
  // noise): buffering the ~15 MB it missed (UTF-16 strings: ~30 MiB) would add more than 20 MiB.
  const baseGrowth = Math.max(...baseRss) - rssBeforeBase;
  expect(Math.max(...slowRss) - rssBefore).toBeLessThan(Math.max(50 * MiB, baseGrowth + 20 * MiB));
  // Throughput: generous for a shared CI machine, but a pipeline waiting on the slow socket would
  // not finish at all (it reads ~100 KB/s of ~10 MB).
  expect(withSlow.ms).toBeLessThan(2 * base.ms + 500);
}, 60_000);
