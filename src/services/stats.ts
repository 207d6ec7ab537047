// The console overview's figures, computed from what the gateway stores (inbox rows, their trace
// steps, events), so the history survives a restart. Every query names the instances it covers
// and a received_at range, so it walks the (instance_id, received_at) index.
//
// Buckets are exact: stored timestamps are UTC ISO strings (YYYY-MM-DDTHH:MM:SS.sssZ), so a
// bucket of one minute is the string's first 16 characters, ten minutes its first 15, an hour its
// first 13 — no float date arithmetic that could put a row on the wrong side of a boundary.
//
// What each figure counts (by the time it happened, not the time its message arrived):
// - messagesIn: inbound messages received (shed and blocked ones included).
// - sent: `message.sent` events (agent replies and API sends that reached the platform).
// - agentFailures: failed agent calls (each failed attempt, retried or not).
// - sendFailures: failed deliveries (the channel's "sent" step in error).
// - deadLetters: messages dead-lettered (the trace step, so a deleted dead letter still counts).
// - shed: messages refused at ingest because their conversation's backlog was full.
// - backlog: unfinished messages at the end of the bucket.
// - activeConversations: conversations with a message received in the bucket.
// - agent latency and time to first token: percentiles of successful agent calls.
// Trace steps and completions are read for messages received up to LOOKBACK_MS before the window:
// a message still unfinished after that long counts in the backlog, its late steps do not.
import type { Database } from 'bun:sqlite';

export type StatsWindow = 'hour' | 'day' | 'week';

export const STATS_WINDOWS: Record<StatsWindow, { ms: number; bucketMs: number; prefix: number }> = {
  hour: { ms: 3_600_000, bucketMs: 60_000, prefix: 16 },
  day: { ms: 86_400_000, bucketMs: 600_000, prefix: 15 },
  week: { ms: 7 * 86_400_000, bucketMs: 3_600_000, prefix: 13 },
};

export const LOOKBACK_MS = 86_400_000;

export const COUNT_SERIES = [
  'messagesIn',
  'sent',
  'agentFailures',
  'sendFailures',
  'deadLetters',
  'shed',
  'backlog',
  'activeConversations',
] as const;
export type CountSeries = (typeof COUNT_SERIES)[number];

/** One instance's raw figures on one node: counts per bucket and the latency samples per bucket. */
export interface InstanceFigures {
  counts: Record<CountSeries, number[]>;
  agentMs: number[][];
  firstTokenMs: number[][];
  /** Distinct conversations with a message received in the whole window. */
  conversations: number;
}

/** A node's raw figures (what a peer sends the node gathering the overview). */
export interface NodeFigures {
  start: string;
  end: string;
  bucketMs: number;
  instances: Record<string, InstanceFigures>;
}

export interface OverviewTotals {
  messagesIn: number;
  sent: number;
  agentFailures: number;
  sendFailures: number;
  deadLetters: number;
  shed: number;
  /** Unfinished messages at the end of the window (now). */
  backlog: number;
  activeConversations: number;
  agentP50Ms: number | null;
  agentP95Ms: number | null;
  firstTokenP50Ms: number | null;
  firstTokenP95Ms: number | null;
}

export type OverviewSeries = Record<CountSeries, number[]> & {
  /** Bucket starts, Unix seconds. */
  t: number[];
  agentP50Ms: Array<number | null>;
  agentP95Ms: Array<number | null>;
  firstTokenP50Ms: Array<number | null>;
  firstTokenP95Ms: Array<number | null>;
};

/** The window [start, end): end is `now` rounded up to the next bucket boundary. */
export function windowBounds(window: StatsWindow, now: number): { start: number; end: number } {
  const { ms, bucketMs } = STATS_WINDOWS[window];
  const end = Math.floor(now / bucketMs) * bucketMs + bucketMs;
  return { start: end - ms, end };
}

/** Nearest-rank percentile of ascending `sorted` (null when empty). */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function emptyFigures(n: number): InstanceFigures {
  const counts = Object.fromEntries(COUNT_SERIES.map((k) => [k, new Array<number>(n).fill(0)])) as Record<
    CountSeries,
    number[]
  >;
  return {
    counts,
    agentMs: Array.from({ length: n }, () => []),
    firstTokenMs: Array.from({ length: n }, () => []),
    conversations: 0,
  };
}

/** A bucket this long past its end is settled: its rows are written and it is kept in the cache. */
export const SETTLE_MS = 10_000;

interface Bucket {
  counts: Record<CountSeries, number>;
  agentMs: number[];
  firstTokenMs: number[];
}

/**
 * Settled buckets per instance, so a refresh queries only the buckets still open (the week's 168
 * hours would otherwise be re-read from every row each poll, blocking the event loop). A settled
 * bucket changes only in rare after-the-fact cases (a dead letter replayed reopens its message);
 * the cache then shows the figures as they were.
 */
export class FigureCache {
  private buckets = new Map<string, Map<number, Bucket>>();
  private key = (bucketMs: number, instanceId: string) => `${bucketMs}|${instanceId}`;
  get(bucketMs: number, instanceId: string, at: number): Bucket | undefined {
    return this.buckets.get(this.key(bucketMs, instanceId))?.get(at);
  }
  put(bucketMs: number, instanceId: string, at: number, b: Bucket): void {
    const k = this.key(bucketMs, instanceId);
    let m = this.buckets.get(k);
    if (!m) this.buckets.set(k, (m = new Map()));
    m.set(at, b);
  }
  /** Forgets the buckets before `before` (out of every window). */
  prune(bucketMs: number, instanceId: string, before: number): void {
    const m = this.buckets.get(this.key(bucketMs, instanceId));
    if (m) for (const at of m.keys()) if (at < before) m.delete(at);
  }
}

/**
 * This node's figures for `instanceIds` over the window ending at `end` (a bucket boundary, see
 * windowBounds). `sentSteps` are the trace step names the channels write for a delivery. With a
 * cache, settled buckets come from it and only the rest is queried.
 */
export function nodeFigures(
  db: Database,
  opts: {
    instanceIds: string[];
    window: StatsWindow;
    end: number;
    sentSteps: string[];
    now?: number;
    cache?: FigureCache;
  },
): NodeFigures {
  const { ms, bucketMs } = STATS_WINDOWS[opts.window];
  const n = ms / bucketMs;
  const startMs = opts.end - ms;
  const now = opts.now ?? Date.now();
  const out: NodeFigures = {
    start: new Date(startMs).toISOString(),
    end: new Date(opts.end).toISOString(),
    bucketMs,
    instances: {},
  };
  const ids = opts.instanceIds;
  if (ids.length === 0) return out;
  const cache = opts.cache;
  // The first bucket some instance has no settled copy of: everything from there on is queried.
  let from = opts.end;
  for (let at = startMs; at < opts.end; at += bucketMs) {
    if (!cache || ids.some((id) => !cache.get(bucketMs, id, at))) {
      from = at;
      break;
    }
  }
  const fresh = rangeFigures(db, ids, opts.window, from, opts.end, opts.sentSteps);
  const settled = now - SETTLE_MS;
  for (const id of ids) {
    const f = emptyFigures(n);
    for (let i = 0; i < n; i++) {
      const at = startMs + i * bucketMs;
      let b: Bucket;
      if (at < from) b = cache!.get(bucketMs, id, at)!;
      else {
        b = fresh.get(id)![(at - from) / bucketMs]!;
        if (cache && at + bucketMs <= settled) cache.put(bucketMs, id, at, b);
      }
      for (const k of COUNT_SERIES) f.counts[k][i] = b.counts[k];
      f.agentMs[i] = b.agentMs;
      f.firstTokenMs[i] = b.firstTokenMs;
    }
    cache?.prune(bucketMs, id, startMs);
    out.instances[id] = f;
  }

  // Distinct conversations in the window. A conversation's last activity is its latest message's
  // arrival, so for a window that reaches now the conversations table answers (by its activity index).
  const inList = `instance_id IN (${ids.map(() => '?').join(',')})`;
  const distinct =
    opts.end > now
      ? db
          .query<{ inst: string; convs: number }, string[]>(
            `SELECT instance_id AS inst, COUNT(*) AS convs FROM conversations WHERE last_activity_at >= ? AND ${inList} GROUP BY inst`,
          )
          .all(out.start, ...ids)
      : db
          .query<{ inst: string; convs: number }, string[]>(
            `SELECT instance_id AS inst, COUNT(DISTINCT conversation_id) AS convs FROM inbox
             WHERE ${inList} AND received_at >= ? AND received_at < ? GROUP BY inst`,
          )
          .all(...ids, out.start, out.end);
  for (const r of distinct) if (out.instances[r.inst]) out.instances[r.inst]!.conversations = r.convs;
  return out;
}

/** The buckets of [fromMs, endMs), per instance, from the rows. */
function rangeFigures(
  db: Database,
  ids: string[],
  window: StatsWindow,
  fromMs: number,
  endMs: number,
  sentSteps: string[],
): Map<string, Bucket[]> {
  const { bucketMs, prefix } = STATS_WINDOWS[window];
  const n = (endMs - fromMs) / bucketMs;
  const out = new Map<string, Bucket[]>();
  for (const id of ids)
    out.set(
      id,
      Array.from({ length: n }, () => ({
        counts: Object.fromEntries(COUNT_SERIES.map((k) => [k, 0])) as Record<CountSeries, number>,
        agentMs: [],
        firstTokenMs: [],
      })),
    );
  if (n <= 0) return out;
  const start = new Date(fromMs).toISOString();
  const end = new Date(endMs).toISOString();
  const lookback = new Date(fromMs - LOOKBACK_MS).toISOString();
  // Bucket key (the ISO prefix) → index.
  const index = new Map<string, number>();
  for (let i = 0; i < n; i++) index.set(new Date(fromMs + i * bucketMs).toISOString().slice(0, prefix), i);
  const inList = `instance_id IN (${ids.map(() => '?').join(',')})`;
  const at = (inst: string, b: string): Bucket | undefined => {
    const i = index.get(b);
    return i === undefined ? undefined : out.get(inst)?.[i];
  };

  // Arrivals: inbound messages, sheds, conversations, and every row (for the backlog).
  const arrivals = new Map<string, number[]>();
  for (const r of db
    .query<{ inst: string; b: string; rows: number; inbound: number; shed: number; convs: number }, string[]>(
      `SELECT instance_id AS inst, substr(received_at, 1, ${prefix}) AS b, COUNT(*) AS rows,
              SUM(kind = 'inbound') AS inbound, SUM(status = 'shed') AS shed, COUNT(DISTINCT conversation_id) AS convs
       FROM inbox WHERE ${inList} AND received_at >= ? AND received_at < ? GROUP BY inst, b`,
    )
    .all(...ids, start, end)) {
    const bucket = at(r.inst, r.b);
    if (!bucket) continue;
    bucket.counts.messagesIn += r.inbound;
    bucket.counts.shed += r.shed;
    bucket.counts.activeConversations += r.convs;
    let a = arrivals.get(r.inst);
    if (!a) arrivals.set(r.inst, (a = new Array<number>(n).fill(0)));
    a[index.get(r.b)!]! += r.rows;
  }

  // Sent: message.sent events.
  for (const r of db
    .query<{ inst: string; b: string; n: number }, string[]>(
      `SELECT instance_id AS inst, substr(created_at, 1, ${prefix}) AS b, COUNT(*) AS n FROM events
       WHERE type = 'message.sent' AND created_at >= ? AND created_at < ? AND ${inList} GROUP BY inst, b`,
    )
    .all(start, end, ...ids)) {
    const bucket = at(r.inst, r.b);
    if (bucket) bucket.counts.sent += r.n;
  }

  // Trace steps: agent calls (latency, first token, failures), failed deliveries, dead letters.
  const sent = sentSteps.length ? sentSteps : ['channel_sent'];
  for (const r of db
    .query<{ inst: string; b: string; step: string; status: string; ms: number | null; ttft: number | null }, string[]>(
      `SELECT i.instance_id AS inst, substr(s.at, 1, ${prefix}) AS b, s.step, s.status, s.duration_ms AS ms,
              CASE WHEN s.step = 'agent_called' AND s.status = 'success' THEN json_extract(s.details_json, '$.first_token_ms') END AS ttft
       FROM inbox i JOIN trace_steps s ON s.trace_id = i.id
       WHERE i.${inList} AND i.received_at >= ? AND i.received_at < ? AND s.at >= ? AND s.at < ?
         AND (s.step IN ('agent_called', 'dead_lettered') OR (s.status = 'error' AND s.step IN (${sent.map(() => '?').join(',')})))`,
    )
    .all(...ids, lookback, end, start, end, ...sent)) {
    const bucket = at(r.inst, r.b);
    if (!bucket) continue;
    if (r.step === 'agent_called') {
      if (r.status === 'success') {
        if (r.ms !== null) bucket.agentMs.push(r.ms);
        if (typeof r.ttft === 'number') bucket.firstTokenMs.push(r.ttft);
      } else bucket.counts.agentFailures++;
    } else if (r.step === 'dead_lettered') bucket.counts.deadLetters++;
    else bucket.counts.sendFailures++;
  }
  for (const list of out.values())
    for (const b of list) {
      b.agentMs.sort((x, y) => x - y);
      b.firstTokenMs.sort((x, y) => x - y);
    }

  // Backlog at the end of each bucket: what was unfinished at the start, plus arrivals, minus completions.
  const startBacklog = new Map<string, number>();
  for (const r of db
    .query<{ inst: string; n: number }, string[]>(
      `SELECT inst, SUM(n) AS n FROM (
         SELECT instance_id AS inst, COUNT(*) AS n FROM inbox
         WHERE ${inList} AND received_at >= ? AND received_at < ? AND (completed_at IS NULL OR completed_at >= ?) GROUP BY inst
         UNION ALL
         SELECT instance_id AS inst, COUNT(*) AS n FROM inbox
         WHERE status IN ('pending', 'processing') AND ${inList} AND received_at < ? GROUP BY inst
       ) GROUP BY inst`,
    )
    .all(...ids, lookback, start, start, ...ids, lookback))
    startBacklog.set(r.inst, r.n);
  const completions = new Map<string, number[]>();
  for (const r of db
    .query<{ inst: string; b: string; n: number }, string[]>(
      `SELECT instance_id AS inst, substr(completed_at, 1, ${prefix}) AS b, COUNT(*) AS n FROM inbox
       WHERE ${inList} AND received_at >= ? AND received_at < ? AND completed_at >= ? AND completed_at < ? GROUP BY inst, b`,
    )
    .all(...ids, lookback, end, start, end)) {
    const i = index.get(r.b);
    if (i === undefined) continue;
    let c = completions.get(r.inst);
    if (!c) completions.set(r.inst, (c = new Array<number>(n).fill(0)));
    c[i]! += r.n;
  }
  for (const [inst, list] of out) {
    let level = startBacklog.get(inst) ?? 0;
    const a = arrivals.get(inst);
    const c = completions.get(inst);
    for (let i = 0; i < n; i++) {
      level += (a?.[i] ?? 0) - (c?.[i] ?? 0);
      list[i]!.counts.backlog = Math.max(0, level);
    }
  }
  return out;
}

/** Several figures (nodes, or instances) added up: counts summed, latency samples pooled. */
export function addFigures(parts: InstanceFigures[], n: number): InstanceFigures {
  const sum = emptyFigures(n);
  for (const p of parts) {
    for (const k of COUNT_SERIES) for (let i = 0; i < n; i++) sum.counts[k][i] += p.counts[k][i] ?? 0;
    for (let i = 0; i < n; i++) {
      sum.agentMs[i]!.push(...(p.agentMs[i] ?? []));
      sum.firstTokenMs[i]!.push(...(p.firstTokenMs[i] ?? []));
    }
    sum.conversations += p.conversations;
  }
  if (parts.length > 1) {
    for (const s of sum.agentMs) s.sort((a, b) => a - b);
    for (const s of sum.firstTokenMs) s.sort((a, b) => a - b);
  }
  return sum;
}

const total = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const pooled = (samples: number[][]) => samples.flat().sort((a, b) => a - b);

export function totalsOf(f: InstanceFigures): OverviewTotals {
  const agent = pooled(f.agentMs);
  const ttft = pooled(f.firstTokenMs);
  return {
    messagesIn: total(f.counts.messagesIn),
    sent: total(f.counts.sent),
    agentFailures: total(f.counts.agentFailures),
    sendFailures: total(f.counts.sendFailures),
    deadLetters: total(f.counts.deadLetters),
    shed: total(f.counts.shed),
    backlog: f.counts.backlog.at(-1) ?? 0,
    activeConversations: f.conversations,
    agentP50Ms: percentile(agent, 50),
    agentP95Ms: percentile(agent, 95),
    firstTokenP50Ms: percentile(ttft, 50),
    firstTokenP95Ms: percentile(ttft, 95),
  };
}

export function seriesOf(f: InstanceFigures, startMs: number, bucketMs: number): OverviewSeries {
  const n = f.counts.messagesIn.length;
  return {
    t: Array.from({ length: n }, (_, i) => (startMs + i * bucketMs) / 1000),
    ...f.counts,
    agentP50Ms: f.agentMs.map((s) => percentile(s, 50)),
    agentP95Ms: f.agentMs.map((s) => percentile(s, 95)),
    firstTokenP50Ms: f.firstTokenMs.map((s) => percentile(s, 50)),
    firstTokenP95Ms: f.firstTokenMs.map((s) => percentile(s, 95)),
  };
}
