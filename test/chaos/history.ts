// A test run's history and the checker of the product's guarantees over it.
//
// Every component of a chaos run appends what it saw to one JSONL log: the load generator (each
// webhook post and its answer), the stand-in agent (each call, by Idempotency-Key), the stand-in
// channel (each sendText), the harness (process starts and crashes, RSS samples) and, after the
// run, the gateway's own view read from its database (traces, agent runs, outbox). The checker
// only looks at the log, so a failing run can be re-checked from the file alone.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

export type HistoryEvent =
  /** The load generator posted a webhook (maybe again: a redelivery). */
  | { src: 'load'; type: 'post'; id: string; chat: string; text: string; at: number }
  /** Its answer: HTTP status and the webhook body status; `error` when the connection failed. */
  | { src: 'load'; type: 'ack'; id: string; http: number; status: string; traceId: string | null; at: number }
  /** The stand-in agent received a call. */
  | { src: 'agent'; type: 'call'; key: string | null; message: string; at: number }
  /** The stand-in channel accepted a send (a message that reached the user). */
  | { src: 'channel'; type: 'send'; number: string; text: string; at: number }
  /** The gateway process started (epoch n) or died. */
  | { src: 'harness'; type: 'start'; epoch: number; crashAt: string | null; at: number }
  | { src: 'harness'; type: 'exit'; epoch: number; signal: string | null; code: number | null; at: number }
  | { src: 'harness'; type: 'rss'; epoch: number; bytes: number; at: number }
  /** The gateway's view after the run (from its database). */
  | {
      src: 'gateway';
      type: 'trace';
      traceId: string;
      providerId: string;
      conversationId: string;
      seq: number;
      status: string;
      responseText: string | null;
      possibleDuplicate: number;
      agentRuns: number;
      attempts: number;
    }
  | { src: 'gateway'; type: 'summary'; inboxUnfinished: number; outboxSending: number; deadLetters: number };

export class History {
  readonly events: HistoryEvent[] = [];
  constructor(readonly path: string | null = null) {
    if (path) writeFileSync(path, '');
  }
  add(e: HistoryEvent): void {
    this.events.push(e);
    if (this.path) appendFileSync(this.path, `${JSON.stringify(e)}\n`);
  }
  static load(path: string): HistoryEvent[] {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as HistoryEvent);
  }
}

export interface CheckOptions {
  /** The reply the stand-in agent gives to a message text (maps sends back to messages). */
  replyFor: (text: string) => string;
  /** The crash point armed in this run, if any (decides which duplicates are expected). */
  crashPoint?: string | null;
  /** Upper bound for any RSS sample of the gateway process. */
  maxRssBytes?: number;
}

export interface CheckResult {
  violations: string[];
  stats: {
    acked: number;
    completed: number;
    sends: number;
    duplicateSends: number;
    possibleDuplicateCounted: number;
    agentCalls: number;
    repeatedAgentCalls: number;
    committedRuns: number;
    crashes: number;
    maxRssBytes: number;
  };
}

/**
 * Invariants:
 *  - no loss: every id acked 200 (received|duplicate) has a trace in a terminal state; with a
 *    healthy agent and channel that state is `completed`, with exactly one committed reply;
 *  - exactly one reply: each completed message's reply reached the channel at least once, and
 *    every extra copy is counted by the gateway (`possible_duplicate` on its trace); without a
 *    crash there are no extra copies at all; no send that maps to no posted message;
 *  - order: per chat, the first copies of the replies arrive in inbox (seq) order;
 *  - no duplicate effects: ≤ 1 committed agent run per id (`agent_called` success step), and
 *    ≤ 1 agent CALL per id per process lifetime. An agent call may be repeated after a crash
 *    when the crash hit while the call was in flight or before its result was committed (at
 *    agent_before_first_delta / agent_mid_stream, or any point that kills a process while other
 *    conversations stream): the first result was never committed, so it had no effect;
 *  - bounded resources: nothing left `pending`/`processing`, no outbox part left `sending`, RSS
 *    under the bound.
 */
export function checkHistory(events: HistoryEvent[], opts: CheckOptions): CheckResult {
  const v: string[] = [];
  const posts = new Map<string, { chat: string; text: string }>();
  const acked = new Map<string, string>();
  const traces = new Map<string, Extract<HistoryEvent, { type: 'trace' }>>();
  const sends: Array<Extract<HistoryEvent, { type: 'send' }>> = [];
  const calls: Array<Extract<HistoryEvent, { type: 'call' }>> = [];
  const starts: number[] = [];
  let crashes = 0;
  let maxRss = 0;
  let summary: Extract<HistoryEvent, { type: 'summary' }> | null = null;
  for (const e of events) {
    if (e.src === 'load' && e.type === 'post') posts.set(e.id, { chat: e.chat, text: e.text });
    else if (
      e.src === 'load' &&
      e.type === 'ack' &&
      e.http === 200 &&
      (e.status === 'received' || e.status === 'duplicate')
    )
      acked.set(e.id, e.status);
    else if (e.type === 'trace') traces.set(e.providerId, e);
    else if (e.type === 'send') sends.push(e);
    else if (e.type === 'call') calls.push(e);
    else if (e.type === 'start') starts.push(e.at);
    else if (e.type === 'exit' && e.signal === 'SIGKILL') crashes++;
    else if (e.type === 'rss') maxRss = Math.max(maxRss, e.bytes);
    else if (e.type === 'summary') summary = e;
  }

  // Map each reply text back to the message that caused it.
  const byReply = new Map<string, string>();
  for (const [id, p] of posts) byReply.set(opts.replyFor(p.text), id);
  const sendsById = new Map<string, number[]>();
  sends.forEach((s, i) => {
    const id = byReply.get(s.text);
    if (!id) {
      v.push(`phantom send: ${JSON.stringify(s.text.slice(0, 60))} to ${s.number} matches no posted message`);
      return;
    }
    if (posts.get(id)!.chat !== s.number) v.push(`reply to ${id} went to ${s.number}, not ${posts.get(id)!.chat}`);
    (sendsById.get(id) ?? sendsById.set(id, []).get(id)!).push(i);
  });

  let completed = 0;
  let duplicateSends = 0;
  let counted = 0;
  let committedRuns = 0;
  for (const id of acked.keys()) {
    const t = traces.get(id);
    if (!t) {
      v.push(`loss: ${id} was acked but the gateway has no trace of it`);
      continue;
    }
    if (t.status === 'pending' || t.status === 'processing') {
      v.push(`loss: ${id} acked but still ${t.status}`);
      continue;
    }
    if (t.status !== 'completed') {
      v.push(`${id} ended ${t.status}, expected completed (healthy agent and channel)`);
      continue;
    }
    completed++;
    committedRuns += t.agentRuns;
    counted += t.possibleDuplicate;
    if (t.agentRuns !== 1) v.push(`duplicate effect: ${id} has ${t.agentRuns} committed agent runs`);
    if (t.responseText !== opts.replyFor(posts.get(id)!.text))
      v.push(`${id}: committed reply ${JSON.stringify(t.responseText)} is not the agent's`);
    const n = sendsById.get(id)?.length ?? 0;
    if (n === 0) v.push(`loss: ${id} completed but its reply never reached the channel`);
    if (n > 1) {
      duplicateSends += n - 1;
      if (n - 1 > t.possibleDuplicate)
        v.push(`uncounted duplicate: ${id} sent ${n}× but possible_duplicate = ${t.possibleDuplicate}`);
      if (crashes === 0) v.push(`duplicate send without a crash: ${id} sent ${n}×`);
    }
  }
  for (const id of sendsById.keys())
    if (!acked.has(id) && !traces.has(id)) v.push(`reply sent for ${id}, which the gateway never stored`);

  // Order: per chat, first copies in seq order.
  const lastSeq = new Map<string, { seq: number; id: string }>();
  const seen = new Set<string>();
  for (const s of sends) {
    const id = byReply.get(s.text);
    if (!id || seen.has(id)) continue;
    seen.add(id);
    const seq = traces.get(id)?.seq;
    if (seq === undefined) continue;
    const prev = lastSeq.get(s.number);
    if (prev && prev.seq > seq)
      v.push(
        `order: in chat ${s.number} reply to ${id} (seq ${seq}) arrived after reply to ${prev.id} (seq ${prev.seq})`,
      );
    lastSeq.set(s.number, { seq, id });
  }

  // Agent calls: ≤ 1 per key per process lifetime.
  const keyOf = new Map<string, string>(); // message text → provider id
  for (const [id, p] of posts) keyOf.set(p.text, id);
  const perEpoch = new Map<string, number>();
  const perId = new Map<string, number>();
  for (const c of calls) {
    const id = keyOf.get(c.message);
    if (!id) {
      v.push(`agent called with a message nobody posted: ${JSON.stringify(c.message.slice(0, 60))}`);
      continue;
    }
    let epoch = 0;
    for (let i = 0; i < starts.length; i++) if (c.at >= starts[i]) epoch = i;
    const k = `${id}#${epoch}`;
    perEpoch.set(k, (perEpoch.get(k) ?? 0) + 1);
    perId.set(id, (perId.get(id) ?? 0) + 1);
  }
  for (const [k, n] of perEpoch)
    if (n > 1) v.push(`agent called ${n}× for ${k.split('#')[0]} within one process lifetime`);
  let repeated = 0;
  for (const n of perId.values()) if (n > 1) repeated += n - 1;
  if (crashes === 0 && repeated > 0) v.push(`${repeated} repeated agent calls without a crash`);

  if (summary) {
    if (summary.inboxUnfinished !== 0) v.push(`resources: ${summary.inboxUnfinished} inbox rows left unfinished`);
    if (summary.outboxSending !== 0) v.push(`resources: ${summary.outboxSending} outbox parts left 'sending'`);
  } else v.push('no gateway summary in the history');
  if (opts.maxRssBytes !== undefined && maxRss > opts.maxRssBytes)
    v.push(
      `resources: RSS reached ${(maxRss / 2 ** 20).toFixed(0)} MiB > ${(opts.maxRssBytes / 2 ** 20).toFixed(0)} MiB`,
    );

  return {
    violations: v,
    stats: {
      acked: acked.size,
      completed,
      sends: sends.length,
      duplicateSends,
      possibleDuplicateCounted: counted,
      agentCalls: calls.length,
      repeatedAgentCalls: repeated,
      committedRuns,
      crashes,
      maxRssBytes: maxRss,
    },
  };
}
