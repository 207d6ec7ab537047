// Events: recorded from real pipeline traffic (Evolution webhook → agent → sendText), listed with
// filters and stable cursors, searched with FTS5, scoped to instance-bound keys.
import { describe, expect, test } from 'bun:test';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-EVENTS' },
  agent: { protocol: 'json' },
  resetAfterEach: true,
});

const upsert = (instance: string, id: string, text: string, phone?: string, name = 'Pavan') =>
  evolutionUpsert({ instance, id, text, phone, name });

async function setup(names = ['bot']) {
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  const posts: Record<string, (body: unknown) => Promise<{ status: number; body: any }>> = {};
  const ids: Record<string, string> = {};
  for (const name of names) {
    const inst = await evolutionInstance(t, { name, ...fakes });
    posts[name] = inst.post;
    ids[name] = inst.id;
  }
  await t.gw.start();
  const eventCount = () => (t.gw.db.query('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n;
  const settled = async (n: number) => until(() => (t.gw.events.flush(), eventCount() >= n));
  return { ...t, posts, ids, eventCount, settled };
}

describe('events', () => {
  test('an inbound message and its agent reply become events with the person, trace and platform id', async () => {
    const t = await setup();
    const res = await t.posts.bot(upsert('bot', 'ev-1', 'where is my order 42?'));
    await fakes.evo.waitForSent(1);
    await until(
      () => (
        t.gw.events.flush(),
        (t.gw.db.query("SELECT COUNT(*) AS n FROM events WHERE type LIKE 'message.%'").get() as { n: number }).n >= 2
      ),
    );
    const list = await t.call('GET', '/api/v2/events?eventType=message.*');
    expect(list.status).toBe(200);
    const [sent, received] = list.body.items;
    expect(received.type).toBe('message.received');
    expect(received.text).toBe('where is my order 42?');
    expect(received.traceId).toBe(res.body.trace_id);
    expect(received.channel).toBe('whatsapp-evolution');
    expect(received.instanceId).toBe(t.ids.bot);
    expect(received.contentType).toBe('text');
    expect(received.payload.sender.name).toBe('Pavan');
    expect(received.personId).toBeTruthy();
    expect(sent.type).toBe('message.sent');
    expect(sent.text).toBe('echo: where is my order 42?');
    expect(sent.personId).toBe(received.personId);
    expect(sent.payload.externalMessageId).toBe(fakes.evo.sent[0].id);
    const one = await t.call('GET', `/api/v2/events/${received.id}`);
    expect(one.body.data).toEqual(received);
    expect((await t.call('GET', '/api/v2/events/nope')).status).toBe(404);
    await t.close();
  });

  test('instance status changes are events', async () => {
    const t = await setup();
    await t.settled(1);
    const res = await t.call('GET', '/api/v2/events?eventType=instance.*');
    expect(res.body.items.map((e: any) => e.type)).toContain('instance.connected');
    expect(res.body.items[0].payload.instanceName).toBe('bot');
    await t.close();
  });

  test('cursor pages have no duplicates or gaps while new events keep arriving', async () => {
    const t = await setup();
    await t.settled(1); // instance.connected
    for (let i = 0; i < 25; i++) await t.posts.bot(upsert('bot', `pg-${i}`, `first batch ${i}`, `1800${i}`));
    await t.settled(1 + 50);
    const before = (await t.call('GET', '/api/v2/events?limit=100')).body.items.map((e: any) => e.id);
    expect(before.length).toBe(51);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pageNo = 0;
    do {
      const res: any = await t.call('GET', `/api/v2/events?limit=7${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      seen.push(...res.body.items.map((e: any) => e.id));
      cursor = res.body.meta.cursor;
      expect(res.body.meta.hasMore).toBe(cursor !== null);
      // New traffic between page reads: it lands before the first page, never inside the walk.
      if (pageNo++ < 3) {
        await t.posts.bot(upsert('bot', `late-${pageNo}`, `late ${pageNo}`, `1900${pageNo}`));
        await t.settled(51 + pageNo * 2);
      }
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(before);
    await t.close();
  });

  test('filters: channel, instanceId (name), eventType, contentType, since/until; bad cursor is 400', async () => {
    const t = await setup(['bot', 'other']);
    await t.posts.bot(upsert('bot', 'f-1', 'hello from bot'));
    await t.posts.other(upsert('other', 'f-2', 'hello from other', '15559999999', 'Ana'));
    await t.settled(2 + 4);
    const byInst = await t.call('GET', '/api/v2/events?instanceId=other&eventType=message.received');
    expect(byInst.body.items.map((e: any) => e.text)).toEqual(['hello from other']);
    const both = await t.call(
      'GET',
      `/api/v2/events?instanceId=${t.ids.bot},other&eventType=message.received,message.sent`,
    );
    expect(both.body.items.length).toBe(4);
    expect((await t.call('GET', '/api/v2/events?channel=whatsapp&eventType=message.received')).body.items.length).toBe(
      2,
    );
    expect((await t.call('GET', '/api/v2/events?channel=discord')).body.items.length).toBe(0);
    expect((await t.call('GET', '/api/v2/events?contentType=image')).body.items.length).toBe(0);
    expect((await t.call('GET', '/api/v2/events?contentType=text&eventType=message.received')).body.items.length).toBe(
      2,
    );
    const future = new Date(Date.now() + 3600_000).toISOString();
    expect((await t.call('GET', `/api/v2/events?since=${future}`)).body.items.length).toBe(0);
    expect((await t.call('GET', `/api/v2/events?until=${future}`)).body.items.length).toBe(t.eventCount());
    expect((await t.call('GET', '/api/v2/events?since=yesterday')).status).toBe(400);
    expect((await t.call('GET', '/api/v2/events?cursor=garbage')).status).toBe(400);
    const person = byInst.body.items[0].personId;
    const byPerson = await t.call('GET', `/api/v2/events?personId=${person}`);
    expect(byPerson.body.items.map((e: any) => e.type).sort()).toEqual(['message.received', 'message.sent']);
    await t.close();
  });

  test('full-text search finds words and prefixes, ignores FTS syntax in the query', async () => {
    const t = await setup();
    await t.posts.bot(upsert('bot', 's-1', 'My invoice number is wrong'));
    await t.posts.bot(upsert('bot', 's-2', 'Can I change the delivery address?', '15550000001'));
    await t.posts.bot(upsert('bot', 's-3', 'Café com leite, por favor', '15550000002'));
    await t.settled(1 + 6);
    const texts = async (q: string) =>
      (await t.call('GET', `/api/v2/events?eventType=message.received&search=${encodeURIComponent(q)}`)).body.items.map(
        (e: any) => e.text,
      );
    expect(await texts('invoice')).toEqual(['My invoice number is wrong']);
    expect(await texts('deliv')).toEqual(['Can I change the delivery address?']);
    expect(await texts('cafe')).toEqual(['Café com leite, por favor']);
    expect(await texts('invoice address')).toEqual([]);
    expect(await texts('"unbalanced OR (')).toEqual([]);
    // Agent replies are searchable too.
    const replies = await t.call('GET', '/api/v2/events?search=echo%20invoice');
    expect(replies.body.items.map((e: any) => e.type)).toEqual(['message.sent']);
    await t.close();
  });

  test('a search right after a message is recorded finds it (indexing runs in the background)', async () => {
    const t = await setup();
    await t.posts.bot(upsert('bot', 'fresh-1', 'Where is parcel zebra-42?'));
    await t.settled(1 + 2);
    // The background indexer has not reached these rows yet: the search itself must catch up.
    const fts = t.gw.db
      .query('SELECT indexed_seq AS i, (SELECT MAX(seq) FROM events) AS m FROM events_fts_state')
      .get() as { i: number; m: number };
    expect(fts.i).toBeLessThan(fts.m);
    const found = await t.call('GET', '/api/v2/events?search=zebra');
    expect(found.body.items.map((e: any) => [e.type, e.text])).toEqual([
      ['message.sent', 'echo: Where is parcel zebra-42?'],
      ['message.received', 'Where is parcel zebra-42?'],
    ]);
    const viaPost = await t.call('POST', '/api/v2/events/search', { query: 'parcel zebra' });
    expect(viaPost.body.items).toHaveLength(2);
    // Each event is indexed once: searching again (and the background run) adds no duplicates.
    t.gw.events.indexSearch();
    expect((await t.call('GET', '/api/v2/events?search=zebra')).body.items).toHaveLength(2);
    await t.close();
  });

  test('events written but not yet indexed at shutdown are found after a restart', async () => {
    const { openDatabase } = await import('../../db/open.ts');
    const { EventService } = await import('../../src/services/events.ts');
    const { PersonService } = await import('../../src/services/persons.ts');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'sb-events-'));
    try {
      const path = join(dir, 'gw.db');
      const db1 = openDatabase(path);
      const ev1 = new EventService(db1, new PersonService(db1));
      const inst = { id: 'i1', name: 'one', channel: 'discord' } as any;
      ev1.recordStatus(inst, 'error', { reason: 'gateway kangaroo timeout' });
      ev1.flush();
      db1.close(); // before the background indexer ran
      const db2 = openDatabase(path);
      const ev2 = new EventService(db2, new PersonService(db2));
      expect(ev2.list({ search: 'kangaroo', limit: 10 }).map((r) => r.text)).toEqual(['gateway kangaroo timeout']);
      expect(ev2.count({ search: 'timeout' })).toBe(1);
      db2.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a status change and its event are one write: when the event cannot be written, the status stays', async () => {
    const { openDatabase } = await import('../../db/open.ts');
    const { EventService } = await import('../../src/services/events.ts');
    const { PersonService } = await import('../../src/services/persons.ts');
    const { InstanceService } = await import('../../src/services/instances.ts');
    const db = openDatabase(':memory:');
    try {
      const events = new EventService(db, new PersonService(db));
      const instances = new InstanceService(db);
      const inst = instances.create({ name: 'one', channel: 'api' } as any);
      const record = (status: 'connected' | 'logged_out') =>
        instances.setStatus(inst.id, status, null, () => events.recordStatus(inst, status, {}));
      record('connected');
      let failing = false;
      // Stands in for the webhook outbox write failing inside the event write.
      events.onWritten(() => {
        if (failing) throw new Error('disk full');
      });
      failing = true;
      expect(() => record('logged_out')).toThrow('disk full');
      expect(instances.get(inst.id)!.status).toBe('connected');
      expect((db.query('SELECT status FROM instances WHERE id = ?').get(inst.id) as { status: string }).status).toBe(
        'connected',
      );
      const types = () => events.list({ instanceId: [inst.id], limit: 10 }).map((r) => r.type);
      expect(types()).toEqual(['instance.connected']);
      failing = false;
      record('logged_out');
      expect(instances.get(inst.id)!.status).toBe('logged_out');
      expect(types()).toContain('instance.logged_out');
    } finally {
      db.close();
    }
  });

  test('POST /events/search: full, summary and agent formats', async () => {
    const t = await setup();
    await t.posts.bot(upsert('bot', 'a-1', 'refund please for order 7'));
    await t.settled(1 + 2);
    const full = await t.call('POST', '/api/v2/events/search', {
      query: 'refund',
      filters: { eventType: ['message.received', 'message.sent'] },
    });
    expect(full.status).toBe(200);
    expect(full.body.items.length).toBe(2);
    expect(full.body.total).toBe(2);
    expect(full.body.asContext).toBeUndefined();
    const summary = await t.call('POST', '/api/v2/events/search', { query: 'refund', format: 'summary' });
    expect(summary.body.summary).toContain('2 events');
    const agentView = await t.call('POST', '/api/v2/events/search', {
      filters: { eventType: 'message.received,message.sent' },
      format: 'agent',
    });
    const lines = agentView.body.asContext.split('\n');
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatch(/whatsapp-evolution\/bot Pavan: refund please for order 7$/);
    expect(lines[1]).toMatch(/assistant → Pavan: echo: refund please for order 7$/);
    expect((await t.call('POST', '/api/v2/events/search', { format: 'xml' })).status).toBe(400);
    await t.close();
  });

  test("a key bound to one instance sees only that instance's events; events:read is required", async () => {
    const t = await setup(['bot', 'other']);
    await t.posts.bot(upsert('bot', 'k-1', 'mine'));
    await t.posts.other(upsert('other', 'k-2', 'not yours', '15559999999'));
    await t.settled(2 + 4);
    const bound = t.gw.keys.create({ name: 'bound', scopes: ['events:read'], instanceIds: [t.ids.bot] }).key;
    const res = await t.call('GET', '/api/v2/events?limit=100', undefined, { 'x-api-key': bound });
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBeGreaterThan(0);
    expect(res.body.items.every((e: any) => e.instanceId === t.ids.bot)).toBe(true);
    const foreign = (await t.call('GET', '/api/v2/events?instanceId=other&eventType=message.received')).body.items[0];
    expect((await t.call('GET', `/api/v2/events/${foreign.id}`, undefined, { 'x-api-key': bound })).status).toBe(404);
    expect((await t.call('GET', '/api/v2/events?instanceId=other', undefined, { 'x-api-key': bound })).status).toBe(
      404,
    );
    const search = await t.call('POST', '/api/v2/events/search', { query: 'yours' }, { 'x-api-key': bound });
    expect(search.body.items).toEqual([]);
    const noScope = t.gw.keys.create({ name: 'sender', scopes: ['messages:send'] }).key;
    expect((await t.call('GET', '/api/v2/events', undefined, { 'x-api-key': noScope })).status).toBe(403);
    await t.close();
  });
});

describe('events after a crash', () => {
  test('a message that ended without its events (crash before the batched write) gets them at the next start', async () => {
    const t = await setup();
    await t.posts.bot(upsert('bot', 'bf-1', 'backfill me'));
    const messageEvents = () =>
      (t.gw.db.query("SELECT COUNT(*) AS n FROM events WHERE type LIKE 'message.%'").get() as { n: number }).n;
    await until(() => (t.gw.events.flush(), messageEvents() >= 2));
    // Simulate the crash window: the message is terminal but its events were never written.
    t.gw.db.run("DELETE FROM events WHERE type LIKE 'message.%'");
    expect(messageEvents()).toBe(0);
    expect(t.gw.events.backfill((id) => t.gw.instances.get(id))).toBe(1);
    const types = t.gw.db
      .query<{ type: string }, []>("SELECT type FROM events WHERE type LIKE 'message.%' ORDER BY seq")
      .all()
      .map((r) => r.type);
    expect(types).toEqual(['message.received', 'message.sent']);
    expect(t.gw.events.backfill((id) => t.gw.instances.get(id))).toBe(0); // nothing twice
    await t.close();
  });
});
