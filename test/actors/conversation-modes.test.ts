// Conversation modes on the conversation actor built on its own (temporary SQLite store, stand-in
// agent and channel, virtual clock): collect (a burst is one turn), interrupt (a new message
// cancels the agent call), the window's edges (exactly at its end, maxWait, maxBatch), a mode
// change while a window is open, a restart while a window is open or a batch is running.
import type { Database } from 'bun:sqlite';
import { describe, expect, test } from 'bun:test';
import { ConversationActor, type ConversationDeps, type TurnSink } from '../../actors/conversation.ts';
import { batchIdempotencyKey, idempotencyKeyFor, windowOf } from '../../actors/conversation-window.ts';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import { InboxStore } from '../../db/inbox-store.ts';
import { type AgentClient, AgentError, type AgentEvent, type AgentRequest } from '../../src/agents/types.ts';
import type { ChannelAdapter } from '../../src/channels/types.ts';
import type { Instance } from '../../src/core/instance.ts';
import type { ChatRef, InboundMessage } from '../../src/core/message.ts';
import { FifoSemaphore } from '../../src/engine/fifo-semaphore.ts';
import { silentLogger } from '../../src/log.ts';
import { conversationIdFor, type InboxRow } from '../../src/services/inbox.ts';
import { DEFAULT_MESSAGING, type MessagingOptions } from '../../src/services/instance-options.ts';
import { testInstance, useTempDatabases } from './harness.ts';

const EPOCH = Date.UTC(2025, 0, 1);
const CHAT: ChatRef = { chatId: 'chat-1', kind: 'direct' };

const instance = testInstance;
const CONVERSATION = conversationIdFor('inst-1', CHAT);

const { open, temp: tempDatabase } = useTempDatabases('sb-modes-');

function message(id: string, sender = 'user-1'): InboundMessage {
  return {
    instanceId: 'inst-1',
    providerMessageId: id,
    chat: CHAT,
    sender: { id: sender, name: 'Ana' },
    text: `text ${id}`,
    contentType: 'text',
    timestamp: 0,
  };
}

type Event = { at: number; what: string };

/**
 * A stand-in agent that honours the abort signal. Per call: a reply streamed as `deltas` with
 * `deltaMs` between them (or one final text after `delayMs`), or an error; `hang` never answers.
 */
function standInAgent(
  clock: VirtualClock,
  events: Event[],
  plan: (
    req: AgentRequest,
    call: number,
  ) => { deltas?: string[]; deltaMs?: number; delayMs?: number; error?: AgentError; hang?: boolean } = () => ({}),
) {
  const calls: Array<{ req: AgentRequest; aborted: boolean }> = [];
  const client: AgentClient = {
    async *run(req, signal): AsyncIterable<AgentEvent> {
      const call = { req, aborted: false };
      calls.push(call);
      events.push({ at: clock.monotonic(), what: `agent:start:${req.message}` });
      const p = plan(req, calls.length);
      const sleep = async (ms: number) => {
        try {
          await clock.sleep(ms, signal);
        } catch {
          call.aborted = true;
          events.push({ at: clock.monotonic(), what: `agent:aborted:${req.message}` });
          throw new AgentError('agent call aborted by the caller', false);
        }
      };
      if (p.hang) await new Promise(() => {});
      if (p.delayMs) await sleep(p.delayMs);
      if (p.error) throw p.error;
      let text = '';
      for (const d of p.deltas ?? []) {
        yield { type: 'delta', text: d };
        text += d;
        if (p.deltaMs) await sleep(p.deltaMs);
      }
      events.push({ at: clock.monotonic(), what: `agent:end:${req.message}` });
      yield { type: 'final', text: p.deltas ? text : `reply to ${req.message}` };
    },
  };
  return { client, calls };
}

/** A stand-in channel that records sends (with the message they quote) and typing indicators. */
function standInAdapter(clock: VirtualClock, events: Event[]) {
  const sends: Array<{ text: string; quoted: string | undefined; idempotencyKey: string }> = [];
  const adapter: ChannelAdapter = {
    kind: 'discord',
    capabilities: {
      maxText: 2000,
      edit: false,
      typing: true,
      threads: false,
      reactions: false,
      media: [],
      pairing: 'token',
    },
    async start() {},
    async stop() {},
    async send(_to, out, o) {
      sends.push({ text: out.text ?? '', quoted: o.inbound?.providerMessageId, idempotencyKey: o.idempotencyKey });
      events.push({ at: clock.monotonic(), what: `send:${out.text}` });
      return { platformMessageId: `p-${sends.length}` };
    },
    async typing(_chat, on) {
      events.push({ at: clock.monotonic(), what: `typing:${on}` });
    },
  };
  return { adapter, sends };
}

function recordingSink(events: Event[], clock: VirtualClock): TurnSink {
  return {
    runStarted: (s) => events.push({ at: clock.monotonic(), what: `run:start:${s.turnId}` }),
    delta() {},
    messageBreak() {},
    runFinished: (id) => events.push({ at: clock.monotonic(), what: `run:finished:${id}` }),
    runError: (id, m) => events.push({ at: clock.monotonic(), what: `run:error:${id}:${m}` }),
    turnRestarted() {},
  };
}

function build(opts: {
  db: Database;
  clock: VirtualClock;
  agent: AgentClient;
  adapter: ChannelAdapter;
  messaging: MessagingOptions;
  inst?: Instance;
  events?: Event[];
  terminal?: Array<{ id: string; status: string; reply: string | null }>;
  access?: ConversationDeps['access'];
}) {
  const inst = opts.inst ?? instance();
  const inbox = new InboxStore(opts.db, { conversationBacklog: 100, globalBacklog: 1000 }, () => opts.clock.now());
  const deps: ConversationDeps = {
    inbox,
    clock: opts.clock,
    log: silentLogger,
    instance: (id) => (id === inst.id ? inst : null),
    adapter: () => opts.adapter,
    agentFor: () => opts.agent,
    access: opts.access ?? (() => ({ allowed: true, reason: 'no access rules' })),
    sink: recordingSink(opts.events ?? [], opts.clock),
    agentPermits: new FifoSemaphore(4),
    observer: {
      terminal: (row, status, _i, reply) => opts.terminal?.push({ id: row.provider_message_id, status, reply }),
    },
    policy: { maxAttempts: () => 3, retryBaseMs: 1_000, retryMaxMs: 60_000, prefetch: 16, typingDelayMs: 0 },
    messaging: () => opts.messaging,
  };
  const actor = new ConversationActor(CONVERSATION, deps);
  // As the engine does: every new row tells the running actor (window, interrupt).
  inbox.onNewWork(() => actor.newWork());
  return { inbox, actor };
}

/** Runs `work` to its end, moving virtual time to each timer it waits on. */
async function drive(clock: VirtualClock, work: Promise<unknown>): Promise<void> {
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
    if (i > 1_000) throw new Error('drive: the actor did not finish');
    await clock.flush();
    if (done) break;
    const due = clock.nextDue();
    if (due !== undefined) await clock.advance(due - clock.monotonic());
  }
  if (failure) throw failure;
}

/** Moves virtual time to `at` (ms since the start), firing what falls due on the way. */
async function at(clock: VirtualClock, ms: number): Promise<void> {
  await clock.advance(ms - clock.monotonic());
}

async function until(clock: VirtualClock, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await clock.flush();
  if (!cond()) throw new Error('condition not reached');
}

const stepsOf = (db: Database, traceId: string) =>
  db
    .query<{ step: string; status: string; details_json: string | null }, [string]>(
      'SELECT step, status, details_json FROM trace_steps WHERE trace_id = ? ORDER BY idx',
    )
    .all(traceId);
const rows = (db: Database) =>
  db
    .query<Pick<InboxRow, 'provider_message_id' | 'status' | 'response_text' | 'batch_id'>, []>(
      'SELECT provider_message_id, status, response_text, batch_id FROM inbox ORDER BY seq',
    )
    .all();
const collect = (o: Partial<MessagingOptions> = {}): MessagingOptions => ({
  ...DEFAULT_MESSAGING,
  mode: 'collect',
  debounceMs: 3_000,
  ...o,
});
const agentStarts = (events: Event[]) => events.filter((e) => e.what.startsWith('agent:start'));

describe('collect', () => {
  test('a burst within the debounce is one turn: one agent call with every fragment, one reply quoting the last', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const terminal: Array<{ id: string; status: string; reply: string | null }> = [];
    const agent = standInAgent(clock, events);
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect(),
      events,
      terminal,
    });

    const first = await inbox.ingest(message('m1'));
    const running = actor.receive();
    const ids = [first.traceId];
    for (const [t, id] of [
      [400, 'm2'],
      [900, 'm3'],
      [1_500, 'm4'],
      [1_900, 'm5'],
    ] as const) {
      await at(clock, t);
      ids.push((await inbox.ingest(message(id))).traceId);
    }
    await drive(clock, running);

    // The turn starts debounceMs after the last fragment; no typing indicator before (only waiting).
    expect(agent.calls).toHaveLength(1);
    expect(agentStarts(events).map((e) => e.at)).toEqual([1_900 + 3_000]);
    expect(events.find((e) => e.what === 'typing:true')!.at).toBe(4_900);
    const req = agent.calls[0]!.req;
    expect(req.message).toBe('text m1\ntext m2\ntext m3\ntext m4\ntext m5');
    expect(req.messages!.map((m) => [m.id, m.text])).toEqual(ids.map((id, i) => [id, `text m${i + 1}`]));
    expect(req.messages!.map((m) => m.time)).toEqual(
      [0, 400, 900, 1_500, 1_900].map((t) => new Date(EPOCH + t).toISOString()),
    );
    expect(req.messageId).toBe(ids[4]);
    expect(req.idempotencyKey).toBe(batchIdempotencyKey('inst-1', ['m1', 'm2', 'm3', 'm4', 'm5']));
    expect(channel.sends).toEqual([
      {
        text: 'reply to text m1\ntext m2\ntext m3\ntext m4\ntext m5',
        quoted: 'm5',
        idempotencyKey: `${req.idempotencyKey}:0`,
      },
    ]);

    // Every fragment ended completed in batch X; only the lead (the last) holds the reply.
    const all = rows(db);
    const batchId = all[0]!.batch_id!;
    expect(batchId).toMatch(/^b_/);
    expect(all.map((r) => [r.provider_message_id, r.status, r.batch_id])).toEqual(
      ['m1', 'm2', 'm3', 'm4', 'm5'].map((id) => [id, 'completed', batchId]),
    );
    expect(all.map((r) => r.response_text)).toEqual([null, null, null, null, req.message.replace(/^/, 'reply to ')]);
    expect(stepsOf(db, ids[0]!).map((s) => s.step)).toEqual([
      'webhook_received',
      'instance_validated',
      'access_control_checked',
      'batched',
      'answered_in_batch',
    ]);
    expect(JSON.parse(stepsOf(db, ids[0]!)[3]!.details_json!)).toEqual({
      batch_id: batchId,
      mode: 'collect',
      position: 1,
      size: 5,
      answered_by: ids[4],
    });
    expect(JSON.parse(stepsOf(db, ids[0]!)[4]!.details_json!)).toEqual({
      batch_id: batchId,
      answered_by: ids[4],
      status: 'completed',
    });
    expect(stepsOf(db, ids[4]!).map((s) => s.step)).toEqual([
      'webhook_received',
      'instance_validated',
      'access_control_checked',
      'batched',
      'agent_called',
      'channel_sent',
    ]);
    // The fragments are reported finished first (inbox order), the lead last with the reply.
    expect(terminal.map((t) => [t.id, t.status, t.reply !== null])).toEqual([
      ['m1', 'completed', false],
      ['m2', 'completed', false],
      ['m3', 'completed', false],
      ['m4', 'completed', false],
      ['m5', 'completed', true],
    ]);
    expect(inbox.depth).toBe(0);
  });

  test('a message at exactly the window end starts the next window; one just before joins', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ delayMs: 100 }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({ db, clock, agent: agent.client, adapter: channel.adapter, messaging: collect() });

    await inbox.ingest(message('m1')); // t = 0: the window ends at 3000
    const running = actor.receive();
    await at(clock, 2_999);
    await inbox.ingest(message('m2')); // joins: the window now ends at 5999
    await at(clock, 5_999);
    await inbox.ingest(message('m3')); // exactly at the end: the next window
    await drive(clock, running);

    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2', 'text m3']);
    // m3 arrived while the first turn ran: its window opens when that turn ends and waits for quiet after m3.
    expect(agentStarts(events).map((e) => e.at)).toEqual([5_999, 5_999 + 3_000]);
    expect(channel.sends.map((s) => s.quoted)).toEqual(['m2', 'm3']);
    const all = rows(db);
    expect(all[0]!.batch_id).toBe(all[1]!.batch_id!);
    expect(all[2]!.batch_id).not.toBe(all[0]!.batch_id!);
    expect(all.map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);
  });

  test('the window computed from the rows: a row already there at exactly the deadline is left for the next window', () => {
    const row = (id: string, t: number, sender = 'user-1') =>
      ({
        seq: Number(id.slice(1)),
        id,
        provider_message_id: id,
        instance_id: 'inst-1',
        kind: 'inbound',
        sender_id: sender,
        batch_id: null,
        payload_json: JSON.stringify(message(id, sender)),
        received_at: new Date(EPOCH + t).toISOString(),
      }) as InboxRow;
    const opts = collect();
    const ids = (w: { members: InboxRow[] }) => w.members.map((r) => r.id);
    // The window opened with m1 (t = 0); m2 extends it to 5999; m3 at 5999 exactly does not join.
    const w = windowOf([row('m1', 0), row('m2', 2_999), row('m3', 5_999)], EPOCH, opts);
    expect([ids(w), w.deadline - EPOCH, w.closed]).toEqual([['m1', 'm2'], 5_999, true]);
    // One millisecond earlier it joins, and the window is still open.
    const w2 = windowOf([row('m1', 0), row('m2', 2_999), row('m3', 5_998)], EPOCH, opts);
    expect([ids(w2), w2.deadline - EPOCH, w2.closed]).toEqual([['m1', 'm2', 'm3'], 8_998, false]);
    // Rows that were there when the window opened (they came while a turn ran) all join.
    const w3 = windowOf([row('m1', 0), row('m2', 9_000), row('m3', 20_000)], EPOCH + 20_000, opts);
    expect([ids(w3), w3.deadline - EPOCH]).toEqual([['m1', 'm2', 'm3'], 23_000]);
    // maxWaitMs caps the deadline from the first row; maxBatch closes the window.
    const w4 = windowOf([row('m1', 0), row('m2', 2_000)], EPOCH, collect({ maxWaitMs: 4_000 }));
    expect([ids(w4), w4.deadline - EPOCH, w4.closed]).toEqual([['m1', 'm2'], 4_000, false]);
    const w5 = windowOf([row('m1', 0), row('m2', 1), row('m3', 2)], EPOCH, collect({ maxBatch: 2 }));
    expect([ids(w5), w5.closed]).toEqual([['m1', 'm2'], true]);
    // Another sender's message closes it (their burst is the next batch).
    const w6 = windowOf([row('m1', 0), row('m2', 1, 'user-2'), row('m3', 2)], EPOCH, opts);
    expect([ids(w6), w6.closed]).toEqual([['m1'], true]);
    // An edit (kept for the record only) and a message with media never join: the edit would reach
    // the agent, and a member's media would not (a batch fetches its lead's). Media may lead.
    const edit = { ...row('m2', 1), payload_json: JSON.stringify({ ...message('m2'), recordOnly: 'edited' }) };
    const w7 = windowOf([row('m1', 0), edit, row('m3', 2)], EPOCH, opts);
    expect([ids(w7), w7.closed]).toEqual([['m1'], true]);
    const withMedia = (id: string, t: number) => ({
      ...row(id, t),
      payload_json: JSON.stringify({ ...message(id), media: [{ type: 'audio', url: 'http://127.0.0.1:9/a.ogg' }] }),
    });
    const w8 = windowOf([row('m1', 0), withMedia('m2', 1), row('m3', 2)], EPOCH, opts);
    expect([ids(w8), w8.closed]).toEqual([['m1'], true]);
    const w9 = windowOf([withMedia('m1', 0), row('m2', 1)], EPOCH, opts);
    expect(ids(w9)).toEqual(['m1', 'm2']);
  });

  test('maxWaitMs: a burst that never goes quiet is answered maxWaitMs after its first message', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ delayMs: 1_000 }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 1_000, maxWaitMs: 2_500 }),
    });

    await inbox.ingest(message('m1'));
    const running = actor.receive();
    for (const [t, id] of [
      [800, 'm2'],
      [1_600, 'm3'],
      [2_400, 'm4'],
      [3_200, 'm5'], // after the cap: the turn (2500–3500) is running
    ] as const) {
      await at(clock, t);
      await inbox.ingest(message(id));
    }
    await drive(clock, running);

    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2\ntext m3\ntext m4', 'text m5']);
    // m5 arrived during the first turn: its window is already open when that turn ends, and waits
    // for the quiet after m5 (3200 + 1000).
    expect(agentStarts(events).map((e) => e.at)).toEqual([2_500, 4_200]);
    expect(channel.sends).toHaveLength(2);
  });

  test('maxBatch: the turn starts as soon as the batch is full; the rest is the next batch', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ delayMs: 1_000 }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 5_000, maxBatch: 3 }),
    });

    await inbox.ingest(message('m1'));
    const running = actor.receive();
    for (const [t, id] of [
      [100, 'm2'],
      [200, 'm3'],
      [300, 'm4'],
    ] as const) {
      await at(clock, t);
      await inbox.ingest(message(id));
    }
    await drive(clock, running);

    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2\ntext m3', 'text m4']);
    expect(agentStarts(events).map((e) => e.at)).toEqual([200, 5_300]);
  });

  test('messages that arrive while a turn runs are answered together in the next turn (debounce 0)', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ delayMs: 2_000 }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 0 }),
    });

    await inbox.ingest(message('m1'));
    const running = actor.receive();
    await at(clock, 500);
    await inbox.ingest(message('m2'));
    await at(clock, 1_000);
    await inbox.ingest(message('m3'));
    await drive(clock, running);

    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1', 'text m2\ntext m3']);
    expect(agentStarts(events).map((e) => e.at)).toEqual([0, 2_000]);
    // A batch of one message keeps the key it has on its own.
    expect(agent.calls[0]!.req.idempotencyKey).toBe(idempotencyKeyFor('inst-1', 'm1'));
    expect(channel.sends.map((s) => s.quoted)).toEqual(['m1', 'm3']);
  });

  test("messages of different senders (a group) are not answered together; each sender's burst is", async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events);
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 1_000 }),
    });
    await inbox.ingest(message('a1', 'ana'));
    await inbox.ingest(message('a2', 'ana'));
    await inbox.ingest(message('b1', 'bia'));
    await inbox.ingest(message('a3', 'ana'));
    await drive(clock, actor.receive());
    expect(agent.calls.map((c) => c.req.message)).toEqual(['text a1\ntext a2', 'text b1', 'text a3']);
  });

  test('a refused fragment ends blocked on its own; the others are one batch', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events);
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 1_000 }),
      access: (_i, m) =>
        m.providerMessageId === 'm2'
          ? { allowed: false, reason: 'denied by rule' }
          : { allowed: true, reason: 'no access rules' },
    });
    for (const id of ['m1', 'm2', 'm3']) await inbox.ingest(message(id));
    await drive(clock, actor.receive());
    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m3']);
    expect(rows(db).map((r) => [r.provider_message_id, r.status, r.batch_id !== null])).toEqual([
      ['m1', 'completed', true],
      ['m2', 'blocked', false],
      ['m3', 'completed', true],
    ]);
  });

  test('changing the mode while a window is open applies from the next window', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ delayMs: 10 }));
    const channel = standInAdapter(clock, events);
    const messaging = collect();
    const { inbox, actor } = build({ db, clock, agent: agent.client, adapter: channel.adapter, messaging });

    await inbox.ingest(message('m1'));
    const running = actor.receive();
    await at(clock, 1_000);
    // PATCH messaging.mode = sequential while m1 waits: this window still collects.
    messaging.mode = 'sequential';
    messaging.debounceMs = 0;
    await inbox.ingest(message('m2'));
    await drive(clock, running);
    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2']);
    expect(agentStarts(events).map((e) => e.at)).toEqual([4_000]);

    // The next messages run sequentially: one turn each, no batch.
    await inbox.ingest(message('m3'));
    await inbox.ingest(message('m4'));
    await drive(clock, actor.receive());
    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2', 'text m3', 'text m4']);
    expect(agent.calls[1]!.req.messages).toBeUndefined();
    expect(rows(db).map((r) => r.batch_id === null)).toEqual([false, false, true, true]);

    // And back: collect from the next window on.
    Object.assign(messaging, collect({ debounceMs: 500 }));
    await inbox.ingest(message('m5'));
    await inbox.ingest(message('m6'));
    await drive(clock, actor.receive());
    expect(agent.calls.at(-1)!.req.message).toBe('text m5\ntext m6');
  });
});

describe('interrupt', () => {
  test('a new message during the streaming agent call cancels it; one reply answers both', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, (req) => ({
      deltas: [`answer to `, req.message.replace(/\n/g, ' + ')],
      deltaMs: 1_000,
    }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: { ...DEFAULT_MESSAGING, mode: 'interrupt' },
      events,
    });

    const first = await inbox.ingest(message('m1'));
    const running = actor.receive();
    await at(clock, 500); // the agent has streamed its first delta
    const second = await inbox.ingest(message('m2'));
    await drive(clock, running);

    expect(agent.calls.map((c) => [c.req.message, c.aborted])).toEqual([
      ['text m1', true],
      ['text m1\ntext m2', false],
    ]);
    expect(agentStarts(events).map((e) => e.at)).toEqual([0, 500]);
    expect(channel.sends.map((s) => [s.text, s.quoted])).toEqual([['answer to text m1 + text m2', 'm2']]);
    // The first turn ended on the live stream as interrupted; the second finished.
    expect(events.filter((e) => e.what.startsWith('run:')).map((e) => e.what.split(':').slice(0, 3).join(':'))).toEqual(
      [
        `run:start:${first.traceId}`,
        `run:error:${first.traceId}`,
        `run:start:${second.traceId}`,
        `run:finished:${second.traceId}`,
      ],
    );
    // The cancelled attempt is in m1's trace; m1 was then answered as part of the second batch.
    const steps = stepsOf(db, first.traceId);
    expect(steps.map((s) => s.step)).toEqual([
      'webhook_received',
      'instance_validated',
      'access_control_checked',
      'batched',
      'agent_cancelled',
      'access_control_checked',
      'batched',
      'answered_in_batch',
    ]);
    const cancelled = JSON.parse(steps[4]!.details_json!);
    expect(cancelled).toMatchObject({ during: 'agent call' });
    const all = rows(db);
    expect(cancelled.batch_id).not.toBe(all[1]!.batch_id);
    expect(all.map((r) => [r.status, r.batch_id])).toEqual([
      ['completed', all[1]!.batch_id],
      ['completed', all[1]!.batch_id],
    ]);
    expect(all[0]!.response_text).toBeNull();
    expect(all[1]!.response_text).toBe('answer to text m1 + text m2');
    expect(rowsAttempts(db)).toEqual([0, 0]); // an interruption is not a failed attempt
  });

  test('a new message during a retry wait cancels the wait; the next turn answers both', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, (_req, call) =>
      call === 1 ? { error: new AgentError('agent answered 503', true, 503) } : {},
    );
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: { ...DEFAULT_MESSAGING, mode: 'interrupt' },
    });
    const first = await inbox.ingest(message('m1'));
    const running = actor.receive();
    await until(clock, () => agent.calls.length === 1);
    await at(clock, 200); // inside the first retry wait (~800–1000 ms)
    await inbox.ingest(message('m2'));
    await drive(clock, running);
    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1', 'text m1\ntext m2']);
    expect(agentStarts(events).map((e) => e.at)).toEqual([0, 200]);
    expect(stepsOf(db, first.traceId).map((s) => s.step)).toContain('agent_cancelled');
    expect(
      JSON.parse(stepsOf(db, first.traceId).find((s) => s.step === 'agent_cancelled')!.details_json!),
    ).toMatchObject({ during: 'retry wait' });
    expect(channel.sends).toHaveLength(1);
  });

  test('after part of the reply was sent (blocks), the turn is not cut: it finishes, and the new message is the next turn', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, (req) =>
      req.message === 'text m1' ? { deltas: ['Part one.\n\n', 'Part two.'], deltaMs: 1_000 } : { deltas: ['Later.'] },
    );
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: { ...DEFAULT_MESSAGING, mode: 'interrupt' },
      inst: instance('blocks'),
    });
    await inbox.ingest(message('m1'));
    const running = actor.receive();
    await until(clock, () => channel.sends.length === 1); // "Part one." is on the platform
    await at(clock, 500);
    await inbox.ingest(message('m2'));
    await drive(clock, running);

    expect(agent.calls.map((c) => [c.req.message, c.aborted])).toEqual([
      ['text m1', false],
      ['text m2', false],
    ]);
    expect(channel.sends.map((s) => [s.text, s.quoted])).toEqual([
      ['Part one.', 'm1'],
      ['Part two.', 'm1'],
      ['Later.', 'm2'],
    ]);
    expect(rows(db).map((r) => r.status)).toEqual(['completed', 'completed']);
  });

  test('in edit mode too: once the first part is posted, a new message waits for the next turn', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, (req) =>
      req.message === 'text m1' ? { deltas: ['Hello', ' there'], deltaMs: 1_500 } : {},
    );
    const channel = standInAdapter(clock, events);
    const edits: string[] = [];
    channel.adapter.capabilities.edit = true;
    channel.adapter.edit = async (_c, _id, text) => {
      edits.push(text);
    };
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: { ...DEFAULT_MESSAGING, mode: 'interrupt' },
      inst: instance('edit'),
    });
    await inbox.ingest(message('m1'));
    const running = actor.receive();
    await until(clock, () => channel.sends.length === 1);
    await inbox.ingest(message('m2'));
    await drive(clock, running);
    expect(agent.calls.map((c) => c.aborted)).toEqual([false, false]);
    expect(channel.sends.map((s) => s.text)).toEqual(['Hello', 'reply to text m2']);
    expect(edits).toEqual(['Hello there']);
  });

  test('in collect mode a new message never cancels the running call', async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    const agent = standInAgent(clock, events, () => ({ delayMs: 1_000 }));
    const channel = standInAdapter(clock, events);
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 0 }),
    });
    await inbox.ingest(message('m1'));
    const running = actor.receive();
    await at(clock, 500);
    await inbox.ingest(message('m2'));
    await drive(clock, running);
    expect(agent.calls.map((c) => [c.req.message, c.aborted])).toEqual([
      ['text m1', false],
      ['text m2', false],
    ]);
  });
});

describe('durability', () => {
  test('a restart while the window is open recomputes it from the rows: one turn with every fragment', async () => {
    const clock = new VirtualClock(EPOCH);
    const path = tempDatabase();
    const events: Event[] = [];
    const agent = standInAgent(clock, events);
    const channel = standInAdapter(clock, events);
    const before = build({
      db: open(path),
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect(),
    });
    await before.inbox.ingest(message('m1'));
    const dying = before.actor.receive();
    await at(clock, 500);
    await before.inbox.ingest(message('m2'));
    await at(clock, 1_000);
    // The process dies (its actor stops acting at once), nothing of the window was written.
    before.actor.cancel();
    await dying;

    const db = open(path);
    const after = build({ db, clock, agent: agent.client, adapter: channel.adapter, messaging: collect() });
    expect(after.inbox.depth).toBe(2);
    const running = after.actor.receive();
    await at(clock, 1_200);
    await after.inbox.ingest(message('m3')); // still inside the window (m2 + 3000)
    await drive(clock, running);

    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2\ntext m3']);
    expect(agentStarts(events).map((e) => e.at)).toEqual([1_200 + 3_000]);
    expect(channel.sends).toHaveLength(1);
    expect(rows(db).map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);
  });

  test('a restart during the batch: the same batch is resumed (same key), answered once', async () => {
    const clock = new VirtualClock(EPOCH);
    const path = tempDatabase();
    const events: Event[] = [];
    // The first process's agent call never returns (the process dies in it).
    const agent = standInAgent(clock, events, (_r, call) => (call === 1 ? { hang: true } : {}));
    const channel = standInAdapter(clock, events);
    const before = build({
      db: open(path),
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 1_000 }),
    });
    await before.inbox.ingest(message('m1'));
    await before.inbox.ingest(message('m2'));
    void before.actor.receive();
    await at(clock, 1_000);
    await until(clock, () => agent.calls.length === 1);

    const db = open(path);
    const after = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 1_000 }),
    });
    // A message that arrived after the batch was taken is not added to it: it is the next batch.
    const running = after.actor.receive();
    await after.inbox.ingest(message('m3'));
    await drive(clock, running);

    expect(agent.calls.map((c) => c.req.message)).toEqual(['text m1\ntext m2', 'text m1\ntext m2', 'text m3']);
    expect(agent.calls[1]!.req.idempotencyKey).toBe(agent.calls[0]!.req.idempotencyKey);
    expect(channel.sends.map((s) => s.quoted)).toEqual(['m2', 'm3']);
    expect(rows(db).map((r) => r.status)).toEqual(['completed', 'completed', 'completed']);
  });

  test("a dead-lettered batch ends every fragment; replaying the lead's dead letter replays the batch whole", async () => {
    const clock = new VirtualClock(EPOCH);
    const db = open(tempDatabase());
    const events: Event[] = [];
    let failing = true;
    const agent = standInAgent(clock, events, () =>
      failing ? { error: new AgentError('agent answered 503', true, 503) } : {},
    );
    const channel = standInAdapter(clock, events);
    const terminal: Array<{ id: string; status: string; reply: string | null }> = [];
    const { inbox, actor } = build({
      db,
      clock,
      agent: agent.client,
      adapter: channel.adapter,
      messaging: collect({ debounceMs: 100 }),
      terminal,
    });
    await inbox.ingest(message('m1'));
    await inbox.ingest(message('m2'));
    await drive(clock, actor.receive());
    expect(rows(db).map((r) => r.status)).toEqual(['dead_lettered', 'dead_lettered']);
    expect(terminal.map((t) => [t.id, t.status])).toEqual([
      ['m1', 'dead_lettered'],
      ['m2', 'dead_lettered'],
    ]);
    const dl = db.query<{ id: string }, []>('SELECT id FROM dead_letters').all();
    expect(dl).toHaveLength(1);

    failing = false;
    expect(inbox.replayDeadLetter(inbox.deadLetter(dl[0]!.id)!)).toBe(true);
    expect(inbox.depth).toBe(2);
    await drive(clock, actor.receive());
    expect(agent.calls.at(-1)!.req.message).toBe('text m1\ntext m2');
    expect(rows(db).map((r) => r.status)).toEqual(['completed', 'completed']);
    expect(channel.sends).toHaveLength(1);
  });
});

const rowsAttempts = (db: Database) =>
  db
    .query<{ attempts: number }, []>('SELECT attempts FROM inbox ORDER BY seq')
    .all()
    .map((r) => r.attempts);
