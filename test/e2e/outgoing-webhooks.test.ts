// Outgoing webhooks through the real gateway process (the chaos harness: `bun src/main.ts` against
// a fake Evolution server and agent): a subscriber verifies every delivery with standardwebhooks,
// gets message.received and message.sent of each conversation in order, and exactly one event per
// event id — also when the gateway is killed (SIGKILL) while recording events or while delivering.
import { Database } from 'bun:sqlite';
import { afterEach, describe, expect, test } from 'bun:test';
import { CHAOS_KEY, ChaosRun, pool } from '../chaos/harness.ts';
import { type Receiver, startReceiver, until } from '../webhooks/receiver.ts';

let run: ChaosRun | null = null;
let rx: Receiver | null = null;
afterEach(async () => {
  await run?.dispose();
  rx?.stop();
  run = null;
  rx = null;
});

const CHATS = 4;
const PER_CHAT = 6;

function messages() {
  const all: Array<{ id: string; chat: string; text: string }> = [];
  for (let i = 0; i < PER_CHAT; i++)
    for (let c = 0; c < CHATS; c++)
      all.push({ id: `W-${c}-${i}`, chat: `1555100${String(c).padStart(4, '0')}`, text: `chat ${c} message ${i}` });
  return all;
}

async function subscribe(r: ChaosRun, receiver: Receiver): Promise<void> {
  const res = await fetch(`${r.url}/api/v2/webhooks`, {
    method: 'POST',
    headers: { 'x-api-key': CHAOS_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ url: receiver.url }),
  });
  const body = (await res.json()) as { data: { secret: string } };
  expect(res.status).toBe(201);
  receiver.secrets = [body.data.secret];
}

/**
 * What the gateway recorded (its database), checked against what the receiver got: every
 * message event delivered, none invented, one event per webhook-id, and per conversation the
 * first arrivals in the order of the inbox (received, sent, received, sent, …).
 */
function check(r: ChaosRun, receiver: Receiver, expectedMessages: number) {
  const db = new Database(r.dbPath, { readonly: true });
  try {
    const events = db
      .query<{ id: string; type: string; trace_id: string; conversation_id: string }, []>(
        "SELECT id, type, trace_id, conversation_id FROM events WHERE type LIKE 'message.%'",
      )
      .all();
    const inbox = db
      .query<{ id: string; conversation_id: string }, []>('SELECT id, conversation_id FROM inbox ORDER BY seq')
      .all();
    const pending = db
      // (Instance status changes at shutdown are queued for the next start: only message events count.)
      .query<{ n: number }, []>(
        "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status <> 'delivered' AND event_type LIKE 'message.%'",
      )
      .get()!.n;
    expect(inbox).toHaveLength(expectedMessages);
    expect(events).toHaveLength(2 * expectedMessages); // received + sent (the agent echoes)
    expect(pending).toBe(0);
    const messageDeliveries = receiver.got.filter((d) => d.type.startsWith('message.'));
    const firstArrivals = new Map<string, (typeof messageDeliveries)[number]>();
    for (const d of messageDeliveries) if (!firstArrivals.has(d.webhookId)) firstArrivals.set(d.webhookId, d);
    // Nothing lost, nothing invented: the delivered ids are exactly the recorded events.
    expect([...firstArrivals.keys()].sort()).toEqual(events.map((e) => `msg_${e.id}`).sort());
    // A redelivered id carries the same event.
    for (const d of messageDeliveries) {
      const first = firstArrivals.get(d.webhookId)!;
      expect({ type: d.type, data: d.data }).toEqual({ type: first.type, data: first.data });
    }
    // One event per (message, type).
    expect(new Set([...firstArrivals.values()].map((d) => `${d.type}:${d.data.traceId}`)).size).toBe(events.length);
    // Order per conversation.
    const byConversation = new Map<string, string[]>();
    for (const d of firstArrivals.values())
      byConversation.set(d.data.conversationId, [
        ...(byConversation.get(d.data.conversationId) ?? []),
        `${d.type}:${d.data.traceId}`,
      ]);
    const expected = new Map<string, string[]>();
    for (const row of inbox)
      expected.set(row.conversation_id, [
        ...(expected.get(row.conversation_id) ?? []),
        `message.received:${row.id}`,
        `message.sent:${row.id}`,
      ]);
    expect(Object.fromEntries(byConversation)).toEqual(Object.fromEntries(expected));
    for (const d of firstArrivals.values()) {
      expect(d.data).toMatchObject({
        instanceId: r.instanceId,
        messageId: d.data.traceId,
        channel: 'whatsapp-evolution',
      });
      expect(typeof d.data.personId).toBe('string');
    }
    expect(receiver.unverified).toEqual([]);
    return { deliveries: messageDeliveries.length, events: events.length };
  } finally {
    db.close();
  }
}

describe('outgoing webhooks end to end', () => {
  test('every delivery verifies; received and sent per conversation in order; instance status too', async () => {
    run = new ChaosRun('webhooks');
    rx = startReceiver();
    await run.standIns({ deltaDelayMs: 1 });
    await run.start();
    await subscribe(run, rx);
    await run.createInstance();
    const msgs = messages();
    const r = run;
    await pool(msgs, 8, (m) => r.deliver(m.id, m.chat, m.text));
    await run.settled(msgs.length);
    const receiver = rx;
    await until(() => receiver.got.filter((d) => d.type.startsWith('message.')).length >= 2 * msgs.length, 15_000);
    await until(() => receiver.got.some((d) => d.type === 'instance.status'), 5000, 'instance.status');
    const status = rx.got.find((d) => d.type === 'instance.status')!;
    expect(status.data).toMatchObject({ instanceId: run.instanceId, instanceName: 'bot' });
    await run.current!.stop();
    const stats = check(run, rx, msgs.length);
    expect(stats.deliveries).toBe(stats.events); // no crash: no repeats
  }, 60_000);

  for (const { point, n } of [
    { point: 'events_mid_write', n: 2 }, // message-event batches only (status events are written with their status)
    { point: 'webhook_after_response', n: 12 },
  ]) {
    test(`kill -9 at ${point}: after the restart every event is delivered, none twice under another id, in order`, async () => {
      run = new ChaosRun(`webhooks-${point}`);
      rx = startReceiver();
      await run.standIns({ deltaDelayMs: 1 });
      const first = await run.start(`${point}:${n}`);
      await subscribe(run, rx);
      await run.createInstance();
      const msgs = messages();
      const r = run;
      const load = pool(msgs, 8, (m) => r.deliver(m.id, m.chat, m.text));
      const exit = await Promise.race([first.exited, Bun.sleep(20_000).then(() => null)]);
      expect(exit?.signal).toBe('SIGKILL');
      expect(first.stderr()).toContain(`crash point ${point} reached`);
      await run.start(null);
      await load;
      await run.settled(msgs.length);
      const receiver = rx;
      const ids = () => new Set(receiver.got.filter((d) => d.type.startsWith('message.')).map((d) => d.webhookId));
      await until(() => ids().size >= 2 * msgs.length, 20_000, 'every message event');
      await Bun.sleep(200); // a straggler would show up as an extra id
      await run.current!.stop();
      const stats = check(run, rx, msgs.length);
      if (point === 'webhook_after_response') expect(stats.deliveries).toBeGreaterThan(stats.events); // the resent one
    }, 60_000);
  }

  // The status change, its event and its delivery rows are one transaction: a crash right after the
  // status write leaves none of them (the restart reports the connection again), never the status alone.
  test('kill -9 between an instance status write and its event: the status has its event and delivery, or neither has', async () => {
    run = new ChaosRun('webhooks-status');
    rx = startReceiver();
    await run.standIns({ deltaDelayMs: 1 });
    const first = await run.start('status_before_event:2'); // connecting (no event), then connected
    await subscribe(run, rx);
    // The process dies while the new instance connects (createInstance's wait for it fails then).
    await run.createInstance().catch(() => {});
    const exit = await Promise.race([first.exited, Bun.sleep(20_000).then(() => null)]);
    expect(exit?.signal).toBe('SIGKILL');
    expect(first.stderr()).toContain('crash point status_before_event reached');
    const stored = () => {
      const db = new Database(run!.dbPath, { readonly: true });
      try {
        const inst = db
          .query<{ id: string; status: string }, []>("SELECT id, status FROM instances WHERE name = 'bot'")
          .get()!;
        const events = db
          .query<{ id: string; type: string }, [string]>(
            "SELECT id, type FROM events WHERE instance_id = ? AND type LIKE 'instance.%'",
          )
          .all(inst.id);
        const deliveries = db
          .query<{ msg_id: string }, []>("SELECT msg_id FROM webhook_deliveries WHERE event_type = 'instance.status'")
          .all()
          .map((d) => d.msg_id);
        return { status: inst.status, events, deliveries };
      } finally {
        db.close();
      }
    };
    const atCrash = stored();
    // 'connecting' (without a QR) has no event; the crash hit the change after it.
    expect(atCrash.status).not.toBe('connected');
    expect(atCrash.events.map((e) => e.type)).not.toContain('instance.connected');
    await run.start(null);
    await until(() => stored().status === 'connected', 15_000, 'connected after the restart');
    const after = stored();
    const connected = after.events.filter((e) => e.type === 'instance.connected');
    expect(connected).toHaveLength(1);
    expect(after.deliveries).toContain(`msg_${connected[0]!.id}`);
    const receiver = rx;
    await until(
      () => receiver.got.some((d) => d.type === 'instance.status' && d.data.status === 'connected'),
      15_000,
      'instance.status connected',
    );
    await run.current!.stop();
  }, 60_000);
});
