// The conversation actor built on its own: a temporary store (SQLite with the migrations), a
// stand-in agent and channel adapter, and the virtual clock. No gateway, no HTTP.
import type { Database } from 'bun:sqlite';
import { describe, expect, test } from 'bun:test';
import { ConversationActor, type ConversationDeps, type TurnSink } from '../../actors/conversation.ts';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import { InboxStore } from '../../db/inbox-store.ts';
import { type AgentClient, AgentError, type AgentEvent, type AgentRequest } from '../../src/agents/types.ts';
import type { ChannelAdapter } from '../../src/channels/types.ts';
import type { Instance } from '../../src/core/instance.ts';
import type { ChatRef, InboundMessage, OutboundMessage } from '../../src/core/message.ts';
import { FifoSemaphore } from '../../src/engine/fifo-semaphore.ts';
import { silentLogger } from '../../src/log.ts';
import { conversationIdFor, type InboxRow } from '../../src/services/inbox.ts';
import { testInstance, useTempDatabases } from './harness.ts';

const INSTANCE: Instance = testInstance();
const CHAT: ChatRef = { chatId: 'chat-1', kind: 'direct' };
const CONVERSATION = conversationIdFor(INSTANCE.id, CHAT);
const RETRY = { maxAttempts: 3, retryBaseMs: 1_000, retryMaxMs: 60_000 };

const { open, temp: tempDatabase } = useTempDatabases('sb-conversation-');

function message(id: string): InboundMessage {
  return {
    instanceId: INSTANCE.id,
    providerMessageId: id,
    chat: CHAT,
    sender: { id: 'user-1', name: 'Ana' },
    text: `question ${id}`,
    contentType: 'text',
    timestamp: 0,
  };
}

/** What happened, in order, with the virtual time it happened at. */
type Event = { at: number; what: string };

/** A stand-in agent: `answer` decides per call (text, or an error to throw), after `delayMs` of virtual time. */
function standInAgent(
  clock: VirtualClock,
  events: Event[],
  answer: (req: AgentRequest, call: number) => { text?: string; error?: AgentError; delayMs?: number },
) {
  const calls: AgentRequest[] = [];
  const client: AgentClient = {
    async *run(req): AsyncIterable<AgentEvent> {
      calls.push(req);
      events.push({ at: clock.monotonic(), what: `agent:start:${req.message}` });
      const a = answer(req, calls.length);
      if (a.delayMs) await clock.sleep(a.delayMs);
      events.push({ at: clock.monotonic(), what: `agent:end:${req.message}` });
      if (a.error) throw a.error;
      yield { type: 'final', text: a.text ?? `reply to ${req.message}` };
    },
  };
  return { client, calls };
}

/** A stand-in channel adapter that records each send; `hang` keeps a send from ever returning. */
function standInAdapter(clock: VirtualClock, events: Event[], opts: { hang?: (call: number) => boolean } = {}) {
  const sends: Array<{ to: ChatRef; out: OutboundMessage; idempotencyKey: string }> = [];
  const adapter: ChannelAdapter = {
    kind: 'discord',
    capabilities: {
      maxText: 2000,
      edit: false,
      typing: false,
      threads: false,
      reactions: false,
      media: [],
      pairing: 'token',
    },
    async start() {},
    async stop() {},
    async send(to, out, o) {
      sends.push({ to, out, idempotencyKey: o.idempotencyKey });
      events.push({ at: clock.monotonic(), what: `send:${out.text}` });
      if (opts.hang?.(sends.length)) await new Promise(() => {}); // the process "dies" inside the call
      return { platformMessageId: `p-${sends.length}` };
    },
  };
  return { adapter, sends };
}

const noSink: TurnSink = {
  runStarted() {},
  delta() {},
  messageBreak() {},
  runFinished() {},
  runError() {},
  turnRestarted() {},
};

function build(opts: {
  db: Database;
  clock: VirtualClock;
  agent: AgentClient;
  adapter: ChannelAdapter;
  observed?: string[];
  terminal?: Array<{ id: string; status: string }>;
}) {
  const inbox = new InboxStore(opts.db, { conversationBacklog: 100, globalBacklog: 1000 });
  const observed = opts.observed ?? [];
  const deps: ConversationDeps = {
    inbox,
    clock: opts.clock,
    log: silentLogger,
    instance: (id) => (id === INSTANCE.id ? INSTANCE : null),
    adapter: () => opts.adapter,
    agentFor: () => opts.agent,
    access: () => ({ allowed: true, reason: 'no access rules' }),
    sink: noSink,
    agentPermits: new FifoSemaphore(4),
    observer: {
      retried: (_i, stage) => observed.push(`retried:${stage}`),
      deadLettered: () => observed.push('dead_lettered'),
      possibleDuplicate: () => observed.push('possible_duplicate'),
      terminal: (row, status) => opts.terminal?.push({ id: row.provider_message_id, status }),
    },
    policy: {
      maxAttempts: () => RETRY.maxAttempts,
      retryBaseMs: RETRY.retryBaseMs,
      retryMaxMs: RETRY.retryMaxMs,
      prefetch: 16,
      typingDelayMs: 0,
    },
  };
  return { inbox, actor: new ConversationActor(CONVERSATION, deps) };
}

/** Runs `work` to its end, moving virtual time to each timer it waits on. */
async function drive(clock: VirtualClock, work: Promise<unknown>, maxTimers = 1_000): Promise<void> {
  let done = false;
  let failure: unknown = null;
  work.then(
    () => {
      done = true;
    },
    (err) => {
      failure = err;
      done = true;
    },
  );
  for (let i = 0; !done; i++) {
    if (i > maxTimers) throw new Error('drive: the actor did not finish');
    await clock.flush();
    if (done) break;
    const due = clock.nextDue();
    // No timer: a group commit (setImmediate) is still on its way.
    if (due !== undefined) await clock.advance(due - clock.monotonic());
  }
  if (failure) throw failure;
}

/** Lets real-time work (group commits) settle until `cond` holds. */
async function until(clock: VirtualClock, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await clock.flush();
  if (!cond()) throw new Error('condition not reached');
}

const stepsOf = (db: Database, traceId: string) =>
  db
    .query<{ step: string; details_json: string | null }, [string]>(
      'SELECT step, details_json FROM trace_steps WHERE trace_id = ? ORDER BY idx',
    )
    .all(traceId);
const rowOf = (db: Database, seq: number) =>
  db.query<InboxRow, [number]>('SELECT * FROM inbox WHERE seq = ?').get(seq)!;

describe('conversation actor', () => {
  test('a message goes pending → completed with one agent call and one send', async () => {
    const clock = new VirtualClock();
    const db = open(tempDatabase());
    const events: Event[] = [];
    const terminal: Array<{ id: string; status: string }> = [];
    const agent = standInAgent(clock, events, () => ({ text: 'hello Ana' }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({ db, clock, agent: agent.client, adapter: channel.adapter, terminal });

    const r = await inbox.ingest(message('m1'));
    expect(rowOf(db, r.seq).status).toBe('pending');
    expect(inbox.depth).toBe(1);
    await drive(clock, actor.receive());

    expect(agent.calls).toHaveLength(1);
    expect(agent.calls[0]).toMatchObject({ message: 'question m1', sessionId: CONVERSATION, messageId: r.traceId });
    expect(channel.sends.map((s) => s.out.text)).toEqual(['hello Ana']);
    expect(channel.sends[0].to).toEqual(CHAT);
    const row = rowOf(db, r.seq);
    expect(row).toMatchObject({
      status: 'completed',
      attempts: 0,
      response_text: 'hello Ana',
      channel_success: 1,
      possible_duplicate: 0,
    });
    expect(stepsOf(db, r.traceId).map((s) => s.step)).toEqual([
      'webhook_received',
      'instance_validated',
      'access_control_checked',
      'agent_called',
      'channel_sent',
    ]);
    expect(db.query('SELECT part, status, platform_message_id FROM outbox WHERE inbox_seq = ?').all(r.seq)).toEqual([
      { part: 0, status: 'sent', platform_message_id: 'p-1' },
    ]);
    expect(terminal).toEqual([{ id: 'm1', status: 'completed' }]);
    expect(inbox.depth).toBe(0);
  });

  test('an agent failure retries on the backoff schedule and dead-letters after the last attempt', async () => {
    const clock = new VirtualClock();
    const db = open(tempDatabase());
    const events: Event[] = [];
    const observed: string[] = [];
    const terminal: Array<{ id: string; status: string }> = [];
    const agent = standInAgent(clock, events, () => ({ error: new AgentError('agent answered 503', true, 503) }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({ db, clock, agent: agent.client, adapter: channel.adapter, observed, terminal });

    const r = await inbox.ingest(message('m1'));
    await drive(clock, actor.receive());

    expect(agent.calls).toHaveLength(RETRY.maxAttempts);
    // Every call carries the same idempotency key (derived, never random).
    expect(new Set(agent.calls.map((c) => c.idempotencyKey)).size).toBe(1);
    const steps = stepsOf(db, r.traceId);
    const retries = steps
      .filter((s) => s.step === 'retry_scheduled')
      .map((s) => JSON.parse(s.details_json!) as { attempt: number; stage: string; delay_ms: number });
    expect(retries.map((x) => [x.attempt, x.stage])).toEqual([
      [1, 'agent'],
      [2, 'agent'],
    ]);
    // Backoff: retry k waits base·2^(k-1), shortened by at most 20 % jitter, and the next call
    // starts exactly that much (virtual) time later.
    const starts = events.filter((e) => e.what.startsWith('agent:start')).map((e) => e.at);
    retries.forEach((x, k) => {
      const nominal = RETRY.retryBaseMs * 2 ** k;
      expect(x.delay_ms).toBeGreaterThanOrEqual(Math.floor(nominal * 0.8));
      expect(x.delay_ms).toBeLessThanOrEqual(nominal);
      expect(Math.abs(starts[k + 1] - starts[k] - x.delay_ms)).toBeLessThanOrEqual(1);
    });
    expect(observed).toEqual(['retried:agent', 'retried:agent', 'dead_lettered']);
    expect(channel.sends).toEqual([]);
    expect(rowOf(db, r.seq)).toMatchObject({
      status: 'dead_lettered',
      attempts: RETRY.maxAttempts,
      error: 'agent answered 503',
      channel_success: 0,
      response_text: null,
    });
    expect(steps.map((s) => s.step).slice(-2)).toEqual(['agent_called', 'dead_lettered']);
    expect(db.query('SELECT inbox_seq, reason, attempts FROM dead_letters').all()).toEqual([
      { inbox_seq: r.seq, reason: 'agent answered 503', attempts: RETRY.maxAttempts },
    ]);
    expect(terminal).toEqual([{ id: 'm1', status: 'dead_lettered' }]);
    expect(inbox.depth).toBe(0);
  });

  test('a hand-off during a retry wait ends the turn: no further attempt, the row stays for the new owner', async () => {
    const clock = new VirtualClock();
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ error: new AgentError('agent answered 503', true, 503) }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({ db, clock, agent: agent.client, adapter: channel.adapter });

    const r = await inbox.ingest(message('m1'));
    const run = actor.receive();
    // The first attempt fails; the actor waits out its backoff.
    await until(clock, () => agent.calls.length === 1 && clock.nextDue() !== undefined);
    // The cluster lost the conversation's shard meanwhile (self-fence / take-over).
    actor.cancel();
    await drive(clock, run);
    // Without the hand-off observed by the wait, the retry ran after the delay (and, with the shard
    // back on this node, would have sent a reply the new owner had already sent).
    expect(agent.calls).toHaveLength(1);
    expect(channel.sends).toEqual([]);
    expect(rowOf(db, r.seq).status).not.toBe('completed');
    expect(rowOf(db, r.seq).status).not.toBe('dead_lettered');
  });

  test('messages of one conversation are handled strictly in order, one at a time', async () => {
    const clock = new VirtualClock();
    const db = open(tempDatabase());
    const events: Event[] = [];
    // The first message is the slowest: a later one must still wait for it.
    const delays: Record<string, number> = { 'question m1': 3_000, 'question m2': 10, 'question m3': 500 };
    const agent = standInAgent(clock, events, (req) => ({ delayMs: delays[req.message] }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({ db, clock, agent: agent.client, adapter: channel.adapter });

    const first = await inbox.ingest(message('m1'));
    const running = actor.receive();
    // More messages arrive while the first one is with the agent.
    await until(clock, () => agent.calls.length === 1);
    await Promise.all([inbox.ingest(message('m2')), inbox.ingest(message('m3'))]);
    await drive(clock, running);

    expect(events.map((e) => e.what)).toEqual([
      'agent:start:question m1',
      'agent:end:question m1',
      'send:reply to question m1',
      'agent:start:question m2',
      'agent:end:question m2',
      'send:reply to question m2',
      'agent:start:question m3',
      'agent:end:question m3',
      'send:reply to question m3',
    ]);
    const rows = db
      .query<{ provider_message_id: string; status: string }, [number]>(
        'SELECT provider_message_id, status FROM inbox WHERE seq >= ? ORDER BY seq',
      )
      .all(first.seq);
    expect(rows).toEqual([
      { provider_message_id: 'm1', status: 'completed' },
      { provider_message_id: 'm2', status: 'completed' },
      { provider_message_id: 'm3', status: 'completed' },
    ]);
    expect(inbox.depth).toBe(0);
  });

  test('a crash between the send and its record: on resume the part is resent and marked possible_duplicate', async () => {
    const clock = new VirtualClock();
    const path = tempDatabase();
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ text: 'the answer' }));
    // The first send reaches the channel and never returns: the process dies before recording it.
    const channel = standInAdapter(clock, events, { hang: (n) => n === 1 });
    const before = build({ db: open(path), clock, agent: agent.client, adapter: channel.adapter });
    const r = await before.inbox.ingest(message('m1'));
    void before.actor.receive();
    await until(clock, () => channel.sends.length === 1);

    // Restart: a new connection and store on the same file, a new actor.
    const db = open(path);
    const observed: string[] = [];
    const after = build({ db, clock, agent: agent.client, adapter: channel.adapter, observed });
    expect(after.inbox.depth).toBe(1);
    expect(db.query('SELECT status FROM outbox WHERE inbox_seq = ?').all(r.seq)).toEqual([{ status: 'sending' }]);
    await drive(clock, after.actor.receive());

    expect(agent.calls).toHaveLength(1); // the committed reply is not recomputed
    expect(channel.sends.map((s) => s.out.text)).toEqual(['the answer', 'the answer']);
    expect(channel.sends[1].idempotencyKey).toBe(channel.sends[0].idempotencyKey);
    expect(observed).toEqual(['possible_duplicate']);
    expect(rowOf(db, r.seq)).toMatchObject({ status: 'completed', possible_duplicate: 1, channel_success: 1 });
    expect(stepsOf(db, r.traceId).map((s) => s.step)).toEqual([
      'webhook_received',
      'instance_validated',
      'access_control_checked',
      'agent_called',
      'possible_duplicate_send',
      'channel_sent',
    ]);
    expect(db.query('SELECT status, attempts, platform_message_id FROM outbox WHERE inbox_seq = ?').all(r.seq)).toEqual(
      [{ status: 'sent', attempts: 2, platform_message_id: 'p-2' }],
    );
    expect(after.inbox.depth).toBe(0);
  });
});
