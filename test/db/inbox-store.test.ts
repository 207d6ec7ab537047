// The inbox store on its own: ingest (group commit, dedupe, bounds), the per-message unit of work,
// dead letters and the in-memory counts that must always match the rows.
import type { Database } from 'bun:sqlite';
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import { InboxStore } from '../../db/inbox-store.ts';
import { openDatabase } from '../../db/open.ts';
import { Overloaded } from '../../src/core/errors.ts';
import type { InboundMessage } from '../../src/core/message.ts';
import { conversationIdFor, type InboxRow } from '../../src/services/inbox.ts';

let db: Database;
beforeEach(() => {
  db = openDatabase(':memory:');
  addInstance('inst-1');
});
afterEach(() => db.close());

function addInstance(id: string): void {
  db.query(
    `INSERT INTO instances (id, seq, name, channel, webhook_secret, created_at, updated_at)
     VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM instances), ?, 'discord', 'secret', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z')`,
  ).run(id, id);
}

function message(id: string, chatId = 'chat-a', instanceId = 'inst-1'): InboundMessage {
  return {
    instanceId,
    providerMessageId: id,
    chat: { chatId, kind: 'direct' },
    sender: { id: `user-${chatId}`, name: 'Ana' },
    text: `text of ${id}`,
    contentType: 'text',
    timestamp: 0,
  };
}

function store(limits = { conversationBacklog: 100, globalBacklog: 1000 }): InboxStore {
  return new InboxStore(db, limits);
}

const steps = (traceId: string) =>
  db
    .query<{ idx: number; step: string }, [string]>('SELECT idx, step FROM trace_steps WHERE trace_id = ? ORDER BY idx')
    .all(traceId);
const rowOf = (seq: number) => db.query<InboxRow, [number]>('SELECT * FROM inbox WHERE seq = ?').get(seq)!;
const conv = (chatId = 'chat-a') => conversationIdFor('inst-1', { chatId, kind: 'direct' });

/** Ingests, hands out and starts a unit of work for one message. */
async function begun(s: InboxStore, id: string, chatId?: string) {
  const r = await s.ingest(message(id, chatId));
  const [row] = s.next(r.conversationId, 0, 1);
  return { r, row: row!, work: s.begin(row!) };
}

describe('ingest', () => {
  test('writes of one event-loop turn share one commit; listeners hear of the new work after it', async () => {
    const s = store();
    const woken: string[] = [];
    s.onNewWork((c) => woken.push(c));
    const results = await Promise.all([s.ingest(message('m1')), s.ingest(message('m2')), s.ingest(message('m3', 'b'))]);
    expect(results.map((r) => r.status)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(s.counters.groupCommits).toBe(1);
    expect(s.counters.accepted).toBe(3);
    expect(woken.sort()).toEqual([conv(), conv('b')].sort());
    expect(s.depth).toBe(3);
    expect(s.conversationBacklog(conv())).toBe(2);
    expect([...s.backlogSizes()].sort()).toEqual([1, 2]);
    expect(steps(results[0].traceId).map((x) => x.step)).toEqual(['webhook_received', 'instance_validated']);
    expect(rowOf(results[0].seq).status).toBe('pending');
  });

  test('a redelivered message is a duplicate with the first trace id and changes no count', async () => {
    const s = store();
    const first = await s.ingest(message('m1'));
    const again = await s.ingest(message('m1'));
    expect(again).toMatchObject({ status: 'duplicate', traceId: first.traceId, seq: first.seq, shed: false });
    expect(s.counters.duplicates).toBe(1);
    expect(s.depth).toBe(1);
  });

  test('beyond the conversation bound a message is kept, shed and traced, and does not count', async () => {
    const s = store({ conversationBacklog: 2, globalBacklog: 1000 });
    const r = await Promise.all(['m1', 'm2', 'm3'].map((id) => s.ingest(message(id))));
    expect(r.map((x) => x.shed)).toEqual([false, false, true]);
    expect(rowOf(r[2].seq).status).toBe('shed');
    expect(steps(r[2].traceId).map((x) => x.step)).toEqual(['webhook_received', 'instance_validated', 'shed']);
    expect(s.counters.shed).toBe(1);
    expect(s.conversationBacklog(conv())).toBe(2);
  });

  test('at the global bound ingest is refused with Overloaded and nothing is written', async () => {
    const s = store({ conversationBacklog: 100, globalBacklog: 2 });
    await s.ingest(message('m1'));
    await s.ingest(message('m2', 'b'));
    await expect(s.ingest(message('m3', 'c'))).rejects.toBeInstanceOf(Overloaded);
    expect(s.counters.overloaded).toBe(1);
    expect(db.query('SELECT COUNT(*) AS n FROM inbox').get()).toEqual({ n: 2 });
  });
});

describe('reads', () => {
  test('next() hands fresh rows in order without a query; a new store reads the same rows back', async () => {
    const s = store();
    await Promise.all(['m1', 'm2', 'm3'].map((id) => s.ingest(message(id))));
    const rows = s.next(conv(), 0, 2);
    expect(rows.map((r) => r.provider_message_id)).toEqual(['m1', 'm2']);
    expect(s.begin(rows[0]).fresh).toBe(true);
    // A second store (a restart) sees the unfinished rows, not as fresh.
    const restarted = store();
    expect(restarted.depth).toBe(3);
    const again = restarted.next(conv(), 0, 16);
    expect(again.map((r) => r.provider_message_id)).toEqual(['m1', 'm2', 'm3']);
    expect(restarted.begin(again[0]).fresh).toBe(false);
    expect(restarted.conversationsWithWork().map((c) => [c.conversationId, c.instanceId])).toEqual([
      [conv(), 'inst-1'],
    ]);
    expect(restarted.openRows().map((r) => r.provider_message_id)).toEqual(['m1', 'm2', 'm3']);
  });
});

describe('the unit of work', () => {
  test('queued steps and row changes are written only at the next commit, after the trace so far', async () => {
    const s = store();
    const { row, work } = await begun(s, 'm1');
    work.step('access_control_checked', 'success', { user_allowed: true });
    work.recordAttempt(1);
    expect(steps(row.id)).toHaveLength(2);
    expect(rowOf(row.seq).attempts).toBe(0);
    await work.commit();
    expect(steps(row.id).map((x) => [x.idx, x.step])).toEqual([
      [0, 'webhook_received'],
      [1, 'instance_validated'],
      [2, 'access_control_checked'],
    ]);
    expect(rowOf(row.seq).attempts).toBe(1);
    // A unit of work for a row read back continues the trace where it stopped.
    const later = store().begin(rowOf(row.seq));
    later.step('retry_scheduled', 'error');
    await later.commit();
    expect(steps(row.id).at(-1)).toEqual({ idx: 3, step: 'retry_scheduled' });
  });

  test('reply, outbox parts and completion: the row ends completed and leaves the backlog', async () => {
    const s = store();
    const { row, work } = await begun(s, 'm1');
    await work.commitReply('hello');
    expect(rowOf(row.seq).response_text).toBe('hello');
    expect(work.outboxPart(0)).toBeNull();
    await work.commitSending(0, 'hello', null);
    expect(work.outboxPart(0)).toMatchObject({ part: 0, text: 'hello', status: 'sending' });
    work.markSent(0, 'platform-1');
    work.setPartText(0, 'hello!');
    work.step('channel_sent', 'success');
    expect(s.depth).toBe(1);
    await work.finish('completed', { channelSuccess: true });
    expect(work.sentParts()).toEqual([{ part: 0, text: 'hello!', platformMessageId: 'platform-1' }]);
    expect(rowOf(row.seq)).toMatchObject({ status: 'completed', channel_success: 1, error: null });
    expect(rowOf(row.seq).completed_at).not.toBeNull();
    expect(s.depth).toBe(0);
    expect(s.conversationBacklog(conv())).toBe(0);
  });

  test('a part found `sending` is resent: same row, one more attempt; a possible duplicate is counted on the row', async () => {
    const s = store();
    const { row, work } = await begun(s, 'm1');
    await work.commitSending(0, 'hello', null);
    const restarted = store().begin(rowOf(row.seq));
    const found = restarted.outboxPart(0)!;
    expect(found.status).toBe('sending');
    restarted.markPossibleDuplicate();
    await restarted.commitSending(0, 'hello', found);
    expect(db.query('SELECT status, attempts FROM outbox WHERE inbox_seq = ?').all(row.seq)).toEqual([
      { status: 'sending', attempts: 2 },
    ]);
    expect(rowOf(row.seq).possible_duplicate).toBe(1);
  });

  test('dead-lettering writes the dead letter with the terminal state', async () => {
    const s = store();
    const { row, work } = await begun(s, 'm1');
    work.recordAttempt(3);
    work.deadLetter({ instanceId: 'inst-1', reason: 'agent down', attempts: 3 });
    work.step('dead_lettered', 'error');
    expect(db.query('SELECT COUNT(*) AS n FROM dead_letters').get()).toEqual({ n: 0 });
    await work.finish('dead_lettered', { error: 'agent down', channelSuccess: false });
    expect(rowOf(row.seq)).toMatchObject({
      status: 'dead_lettered',
      attempts: 3,
      error: 'agent down',
      channel_success: 0,
    });
    const dead = db.query<{ id: string }, []>('SELECT id FROM dead_letters').get()!;
    expect(s.deadLetter(dead.id)).toMatchObject({
      inbox_seq: row.seq,
      instance_id: 'inst-1',
      conversation_id: conv(),
      reason: 'agent down',
      attempts: 3,
      trace_id: row.id,
      text: 'text of m1',
    });
    expect(s.depth).toBe(0);
  });
});

describe('one-shot operations', () => {
  test('an unexpected failure on the last attempt ends the row failed, traced, out of the backlog', async () => {
    const s = store();
    const { row } = await begun(s, 'm1');
    s.recordAttempt(row.seq, 1);
    expect(rowOf(row.seq).attempts).toBe(1);
    s.failUnexpectedly(row, 2, 'disk I/O error');
    expect(rowOf(row.seq)).toMatchObject({
      status: 'failed',
      attempts: 2,
      error: 'disk I/O error',
      channel_success: 0,
    });
    expect(steps(row.id).at(-1)!.step).toBe('failed_unexpectedly');
    expect(s.depth).toBe(0);
  });

  test('cluster catch-up: a row another owner finished is closed here and its kept rows dropped', async () => {
    const s = store();
    await Promise.all(['m1', 'm2'].map((id) => s.ingest(message(id))));
    const [first] = s.openRows();
    s.closeHandledElsewhere(first!);
    expect(rowOf(first!.seq).status).toBe('completed');
    expect(steps(first!.id).at(-1)!.step).toBe('handled_by_other_node');
    expect(s.conversationBacklog(conv())).toBe(1);
    // The kept fresh rows no longer match the backlog: the next read queries and finds m2 only.
    const next = s.next(conv(), 0, 16);
    expect(next.map((r) => r.provider_message_id)).toEqual(['m2']);
    expect(s.begin(next[0]!).fresh).toBe(false);
  });

  test('a dead letter is replayed once the message finished dead-lettering: pending again, woken, counted', async () => {
    const s = store();
    const woken: string[] = [];
    s.onNewWork((c) => woken.push(c));
    const { row, work } = await begun(s, 'm1');
    await work.commitReply('kept');
    work.deadLetter({ instanceId: 'inst-1', reason: 'send failed', attempts: 3 });
    work.recordAttempt(3);
    await work.commit(); // dead letter written, the terminal state not yet (error reply still sending)
    const d = s.deadLetter(db.query<{ id: string }, []>('SELECT id FROM dead_letters').get()!.id)!;
    woken.length = 0;
    expect(s.replayDeadLetter(d)).toBe(false);
    expect(s.deadLetter(d.id)).not.toBeNull();
    expect(woken).toEqual([]);

    await work.finish('dead_lettered', { error: 'send failed', channelSuccess: false });
    expect(s.depth).toBe(0);
    expect(s.replayDeadLetter(d)).toBe(true);
    expect(rowOf(row.seq)).toMatchObject({
      status: 'pending',
      attempts: 0,
      error: null,
      completed_at: null,
      duration_ms: null,
      response_text: 'kept',
    });
    expect(s.deadLetter(d.id)).toBeNull();
    expect(steps(row.id).at(-1)!.step).toBe('replayed');
    expect(s.depth).toBe(1);
    expect(s.conversationBacklog(conv())).toBe(1);
    expect(woken).toEqual([conv()]);
    // A second replay finds nothing to reopen.
    expect(s.replayDeadLetter(d)).toBe(false);
  });

  test('deleting a dead letter keeps the trace', async () => {
    const s = store();
    const { row, work } = await begun(s, 'm1');
    work.deadLetter({ instanceId: 'inst-1', reason: 'x', attempts: 1 });
    await work.finish('dead_lettered', { error: 'x' });
    const id = db.query<{ id: string }, []>('SELECT id FROM dead_letters').get()!.id;
    s.deleteDeadLetter(id);
    expect(s.deadLetter(id)).toBeNull();
    expect(rowOf(row.seq).status).toBe('dead_lettered');
  });

  test('addStep appends after the last step', async () => {
    const s = store();
    const r = await s.ingest(message('m1'));
    s.addStep(r.traceId, 'replayed', 'success', { dead_letter_id: 'd1' });
    expect(steps(r.traceId).map((x) => [x.idx, x.step])).toEqual([
      [0, 'webhook_received'],
      [1, 'instance_validated'],
      [2, 'replayed'],
    ]);
  });

  test('recount follows rows deleted by a cascade; prune drops old terminal rows only', async () => {
    addInstance('inst-2');
    const s = store();
    await s.ingest(message('m1'));
    await s.ingest(message('x1', 'chat-x', 'inst-2'));
    expect(s.depth).toBe(2);
    db.query('DELETE FROM instances WHERE id = ?').run('inst-2');
    s.recount();
    expect(s.depth).toBe(1);

    const { row, work } = await begun(s, 'm2', 'chat-b');
    await work.finish('completed', { channelSuccess: true });
    const later = Date.now() + 3 * 86_400_000;
    expect(s.prune(2, later)).toBe(1);
    expect(db.query('SELECT provider_message_id FROM inbox').all()).toEqual([{ provider_message_id: 'm1' }]);
    expect(steps(row.id)).toEqual([]); // the steps went with the row
  });
});
