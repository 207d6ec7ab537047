// The overview's SQL against a real store (a temporary database file with the migrations): rows,
// steps and events written at known times, and the figures each bucket must show.
import type { Database } from 'bun:sqlite';
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../db/open.ts';
import {
  addFigures,
  FigureCache,
  LOOKBACK_MS,
  nodeFigures,
  percentile,
  seriesOf,
  totalsOf,
  windowBounds,
} from '../../src/services/stats.ts';

const T0 = Date.parse('2025-03-01T10:00:00.000Z'); // a bucket boundary in every window
const iso = (ms: number) => new Date(ms).toISOString();
const MIN = 60_000;

let dir: string;
let db: Database;
let seq = 0;

function instance(id: string) {
  db.query(
    `INSERT INTO instances (id, seq, name, channel, webhook_secret, created_at, updated_at) VALUES (?, ?, ?, 'whatsapp-evolution', 's', ?, ?)`,
  ).run(id, ++seq, id, iso(T0), iso(T0));
}

function message(
  inst: string,
  conv: string,
  o: { at: number; done?: number | null; status?: string; kind?: 'inbound' | 'send'; steps?: Array<Step> },
): string {
  const id = `m${++seq}`;
  db.query(
    `INSERT OR IGNORE INTO conversations (id, instance_id, chat_key, chat_json, kind, created_at, last_activity_at) VALUES (?, ?, ?, '{}', 'direct', ?, ?)`,
  ).run(conv, inst, conv, iso(o.at), iso(o.at));
  db.query(
    `INSERT INTO inbox (id, instance_id, provider_message_id, conversation_id, kind, sender_id, text, content_type, payload_json, status, received_at, completed_at)
     VALUES (?, ?, ?, ?, ?, 'u', 'hi', 'text', '{}', ?, ?, ?)`,
  ).run(
    id,
    inst,
    id,
    conv,
    o.kind ?? 'inbound',
    o.status ?? (o.done === null ? 'pending' : 'completed'),
    iso(o.at),
    o.done === null ? null : iso(o.done ?? o.at + 1000),
  );
  for (const [i, s] of (o.steps ?? []).entries())
    db.query(
      'INSERT INTO trace_steps (trace_id, idx, step, status, at, duration_ms, details_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(id, i, s.step, s.status, iso(s.at), s.ms ?? null, s.details ? JSON.stringify(s.details) : null);
  return id;
}

interface Step {
  step: string;
  status: 'success' | 'error';
  at: number;
  ms?: number;
  details?: Record<string, unknown>;
}

function sentEvent(inst: string, traceId: string, at: number) {
  db.query(`INSERT INTO events (id, type, instance_id, trace_id, created_at) VALUES (?, 'message.sent', ?, ?, ?)`).run(
    `e${++seq}`,
    inst,
    traceId,
    iso(at),
  );
}

const agent = (at: number, ms: number, firstTokenMs: number | null = null): Step => ({
  step: 'agent_called',
  status: 'success',
  at,
  ms,
  details: { first_token_ms: firstTokenMs },
});

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'switchboard-stats-'));
  db = openDatabase(join(dir, 'stats.db'));
  instance('a');
  instance('b');
  // Instance a, minute 0: two messages answered (agent 100 ms and 300 ms, first tokens 40 and 60).
  const m1 = message('a', 'c1', { at: T0 + 1000, steps: [agent(T0 + 1500, 100, 40)] });
  sentEvent('a', m1, T0 + 2000);
  const m2 = message('a', 'c2', { at: T0 + 5000, steps: [agent(T0 + 5500, 300, 60)] });
  sentEvent('a', m2, T0 + 6000);
  // Minute 2: a message whose agent fails twice, then is dead-lettered in minute 3.
  message('a', 'c1', {
    at: T0 + 2 * MIN,
    done: T0 + 3 * MIN + 10,
    status: 'dead_lettered',
    steps: [
      { step: 'agent_called', status: 'error', at: T0 + 2 * MIN + 100, ms: 50 },
      { step: 'agent_called', status: 'error', at: T0 + 3 * MIN, ms: 50 },
      { step: 'dead_lettered', status: 'error', at: T0 + 3 * MIN + 5 },
    ],
  });
  // Minute 4: a delivery failure on the channel's sent step, then success.
  const m4 = message('a', 'c3', {
    at: T0 + 4 * MIN,
    steps: [
      agent(T0 + 4 * MIN + 10, 200),
      { step: 'evolution_api_called', status: 'error', at: T0 + 4 * MIN + 20 },
      { step: 'evolution_api_called', status: 'success', at: T0 + 4 * MIN + 30 },
    ],
  });
  sentEvent('a', m4, T0 + 4 * MIN + 30);
  // Minute 5: a shed message; an API send (not inbound, but a conversation and a backlog row).
  message('a', 'c1', { at: T0 + 5 * MIN, status: 'shed', done: T0 + 5 * MIN });
  message('a', 'c4', { at: T0 + 5 * MIN + 1, kind: 'send', done: T0 + 5 * MIN + 2 });
  // Instance b: received before the window, still unfinished (backlog from the start); one more in minute 1 never finished.
  message('b', 'c5', { at: T0 - 2 * 3_600_000, done: null });
  message('b', 'c6', { at: T0 + MIN, done: null });
  // Received before the lookback and finished inside the window: its steps are not read.
  message('b', 'c7', {
    at: T0 - LOOKBACK_MS - 3_600_000 - 1,
    done: T0 + 10,
    steps: [agent(T0 + 5, 999)],
  });
  // Outside the window: after its end.
  message('a', 'c1', { at: T0 + 61 * MIN, steps: [agent(T0 + 61 * MIN, 5000)] });
});

afterAll(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('overview figures', () => {
  const figures = () =>
    nodeFigures(db, {
      instanceIds: ['a', 'b'],
      window: 'hour',
      end: T0 + 3_600_000,
      sentSteps: ['channel_sent', 'evolution_api_called'],
    });

  test('the window ends at the next bucket boundary after now', () => {
    expect(windowBounds('hour', T0 + 59 * MIN + 30_000)).toEqual({ start: T0, end: T0 + 3_600_000 });
    expect(windowBounds('day', T0 + 1)).toEqual({ start: T0 + 10 * MIN - 86_400_000, end: T0 + 10 * MIN });
    expect(windowBounds('week', T0)).toEqual({ start: T0 + 3_600_000 - 7 * 86_400_000, end: T0 + 3_600_000 });
  });

  test('counts land in the bucket where they happened', () => {
    const f = figures();
    const a = f.instances.a!;
    expect(a.counts.messagesIn.slice(0, 6)).toEqual([2, 0, 1, 0, 1, 1]);
    expect(a.counts.sent.slice(0, 6)).toEqual([2, 0, 0, 0, 1, 0]);
    expect(a.counts.agentFailures.slice(0, 6)).toEqual([0, 0, 1, 1, 0, 0]);
    expect(a.counts.deadLetters.slice(0, 6)).toEqual([0, 0, 0, 1, 0, 0]);
    expect(a.counts.sendFailures.slice(0, 6)).toEqual([0, 0, 0, 0, 1, 0]);
    expect(a.counts.shed.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 1]);
    // c1 and c2 in minute 0; c1 (shed) and c4 (the API send) in minute 5.
    expect(a.counts.activeConversations.slice(0, 6)).toEqual([2, 0, 1, 0, 1, 2]);
    expect(a.conversations).toBe(4);
    expect(a.counts.messagesIn.slice(6).every((n) => n === 0)).toBe(true);
    expect(f.instances.b!.agentMs.flat()).toEqual([]); // c7's step: its message is older than the lookback
  });

  test('latency samples per bucket, percentiles by nearest rank', () => {
    const a = figures().instances.a!;
    expect(a.agentMs[0]).toEqual([100, 300]);
    expect(a.firstTokenMs[0]).toEqual([40, 60]);
    expect(a.agentMs[4]).toEqual([200]);
    expect(a.firstTokenMs[4]).toEqual([]); // not streamed
    const s = seriesOf(a, T0, MIN);
    expect(s.t[1]).toBe((T0 + MIN) / 1000);
    expect(s.agentP50Ms.slice(0, 5)).toEqual([100, null, null, null, 200]);
    expect(s.agentP95Ms[0]).toBe(300);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50)).toBe(5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBe(10);
    expect(percentile([], 50)).toBeNull();
  });

  test('backlog: unfinished at each bucket end, counting what was open when the window began', () => {
    const f = figures();
    // a: the dead-lettered message is open from minute 2 until minute 3.
    expect(f.instances.a!.counts.backlog.slice(0, 5)).toEqual([0, 0, 1, 0, 0]);
    // b: one open from before the window (c5), c7 open until T0+10 ms, c6 from minute 1 on.
    expect(f.instances.b!.counts.backlog.slice(0, 3)).toEqual([1, 2, 2]);
    expect(f.instances.b!.counts.backlog.at(-1)).toBe(2);
  });

  test('totals and the sum over instances', () => {
    const f = figures();
    const all = addFigures([f.instances.a!, f.instances.b!], 60);
    const totals = totalsOf(all);
    expect(totals).toEqual({
      messagesIn: 6, // a: 5 inbound (the API send is not); b: c6 only (c5 and c7 arrived before the window)
      sent: 3,
      agentFailures: 2,
      sendFailures: 1,
      deadLetters: 1,
      shed: 1,
      backlog: 2,
      activeConversations: 5,
      agentP50Ms: 200,
      agentP95Ms: 300,
      firstTokenP50Ms: 40,
      firstTokenP95Ms: 60,
    });
    // The sum is what a cluster's gathering node computes from each node's figures.
    expect(addFigures([f.instances.a!], 60).counts).toEqual(f.instances.a!.counts);
  });

  test('an instance list that is empty, or names instances without rows', () => {
    expect(nodeFigures(db, { instanceIds: [], window: 'day', end: T0, sentSteps: [] }).instances).toEqual({});
    const f = nodeFigures(db, { instanceIds: ['nope'], window: 'week', end: T0 + 3_600_000, sentSteps: [] });
    expect(f.instances.nope!.counts.messagesIn).toHaveLength(168);
    expect(totalsOf(f.instances.nope!).messagesIn).toBe(0);
  });

  test('settled buckets come from the cache and only the open ones are read again; the result equals a full read', () => {
    instance('c');
    const cache = new FigureCache();
    const opts = { instanceIds: ['c'], window: 'hour' as const, end: T0 + 3_600_000, sentSteps: ['channel_sent'] };
    message('c', 'k1', { at: T0 + MIN, steps: [agent(T0 + MIN + 100, 120, 30)] });
    const first = nodeFigures(db, { ...opts, now: T0 + 10 * MIN, cache });
    expect(first.instances.c!.counts.messagesIn.slice(0, 2)).toEqual([0, 1]);
    expect(first.instances.c!.conversations).toBe(1); // from the conversations table: the window reaches now
    // New traffic in the open bucket, and (behind the cache's back) a row in a settled one.
    message('c', 'k2', { at: T0 + 10 * MIN + 500, done: null });
    message('c', 'k3', { at: T0 + 2 * MIN, done: null });
    const now = T0 + 10 * MIN + 1000;
    const cached = nodeFigures(db, { ...opts, now, cache });
    const full = nodeFigures(db, { ...opts, now });
    expect(cached.instances.c!.counts.messagesIn[10]).toBe(1);
    expect(cached.instances.c!.counts.messagesIn[2]).toBe(0); // settled before the row appeared
    expect(full.instances.c!.counts.messagesIn[2]).toBe(1);
    // The open buckets are read again, backlog included (from the rows, not the cache).
    expect(cached.instances.c!.counts.backlog.slice(9, 11)).toEqual(full.instances.c!.counts.backlog.slice(9, 11));
    expect(cached.instances.c!.agentMs[1]).toEqual([120]);
    expect(cached.instances.c!.conversations).toBe(3);
  });

  test('the queries walk the (instance_id, received_at) index', () => {
    const plan = db
      .query<{ detail: string }, string[]>(
        `EXPLAIN QUERY PLAN SELECT COUNT(*) FROM inbox WHERE instance_id IN (?, ?) AND received_at >= ? AND received_at < ?`,
      )
      .all('a', 'b', iso(T0), iso(T0 + 1));
    expect(plan.map((p) => p.detail).join('\n')).toContain('inbox_instance_received');
  });
});
