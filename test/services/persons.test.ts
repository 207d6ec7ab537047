// Persons and identities from real webhook traffic: auto-creation with display names, WhatsApp
// phone JID ↔ LID as one identity, link/unlink, presence and the cross-channel timeline; ids that
// every node of a cluster derives alike, and link/unlink decisions replayed on another node.
import { describe, expect, test } from 'bun:test';
import { openDatabase } from '../../db/open.ts';
import { type PersonOp, PersonService, type Platform } from '../../src/services/persons.ts';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-PERSONS' },
  agent: { protocol: 'json' },
  resetAfterEach: true,
});

/** An Evolution upsert; `key` overrides the message key (LID addressing). */
const upsert = (instance: string, id: string, text: string, key: Record<string, unknown>, name?: string) =>
  evolutionUpsert({ instance, id, text, key, name });
const phoneKey = (phone: string) => ({ remoteJid: `${phone}@s.whatsapp.net` });

async function setup(names = ['bot']) {
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  const posts: Record<string, (body: unknown) => Promise<{ status: number; body: any }>> = {};
  for (const name of names) posts[name] = (await evolutionInstance(t, { name, ...fakes })).post;
  await t.gw.start();
  const received = () =>
    (t.gw.db.query("SELECT COUNT(*) AS n FROM events WHERE type = 'message.received'").get() as { n: number }).n;
  /** Posts and waits until the message is recorded as an event. */
  const send = async (name: string, body: unknown) => {
    const n = received();
    expect((await posts[name](body)).status).toBe(200);
    await until(() => (t.gw.events.flush(), received() > n));
  };
  const persons = async (search?: string) =>
    (await t.call('GET', `/api/v2/persons${search ? `?search=${encodeURIComponent(search)}` : ''}`)).body.items;
  return { ...t, send, persons };
}

describe('persons', () => {
  test('each new sender becomes a person with its display name; a second message does not', async () => {
    const t = await setup();
    await t.send('bot', upsert('bot', 'p-1', 'hi', phoneKey('15551110001'), 'Alice'));
    await t.send('bot', upsert('bot', 'p-2', 'hi again', phoneKey('15551110001'), 'Alice'));
    await t.send('bot', upsert('bot', 'p-3', 'hello', phoneKey('15551110002'), 'Bob'));
    const all = await t.persons();
    expect(all.map((p: any) => p.displayName).sort()).toEqual(['Alice', 'Bob']);
    const alice = all.find((p: any) => p.displayName === 'Alice');
    expect(alice.identities).toHaveLength(1);
    expect(alice.identities[0]).toMatchObject({
      platform: 'whatsapp',
      platformUserId: '15551110001@s.whatsapp.net',
      phone: '+15551110001',
      messageCount: 2,
    });
    expect((await t.persons('bob')).map((p: any) => p.displayName)).toEqual(['Bob']);
    expect((await t.persons('5551110001')).map((p: any) => p.displayName)).toEqual(['Alice']);
    expect(await t.persons('nobody')).toEqual([]);
    expect((await t.call('GET', `/api/v2/persons/${alice.id}`)).body.data.id).toBe(alice.id);
    expect((await t.call('GET', '/api/v2/persons/unknown')).status).toBe(404);
    // A person id is one id: a comma list is a bad request, not the first person of the list.
    const bob = (await t.persons('Bob'))[0];
    for (const path of [
      `${alice.id},${bob.id}`,
      `${alice.id}%2C${bob.id}`,
      `${alice.id},${bob.id}/presence`,
      `${alice.id},${bob.id}/timeline`,
    ]) {
      const res = await t.call('GET', `/api/v2/persons/${path}`);
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({
        code: 'VALIDATION_ERROR',
        details: [expect.objectContaining({ field: 'id' })],
      });
    }
    await t.close();
  });

  test('a WhatsApp phone JID and its LID are one identity when the message says so', async () => {
    const t = await setup();
    // Phone only, then LID with the phone as alt, then LID only: one person, one identity.
    await t.send('bot', upsert('bot', 'l-1', 'from phone', phoneKey('15552220001'), 'Carla'));
    await t.send(
      'bot',
      upsert(
        'bot',
        'l-2',
        'from lid with alt',
        { remoteJid: '90000000001@lid', remoteJidAlt: '15552220001@s.whatsapp.net' },
        'Carla',
      ),
    );
    await t.send('bot', upsert('bot', 'l-3', 'from lid only', { remoteJid: '90000000001@lid' }));
    let all = await t.persons();
    expect(all).toHaveLength(1);
    expect(all[0].identities).toHaveLength(1);
    expect(all[0].identities[0].aliases).toEqual(['90000000001@lid']);
    expect(all[0].identities[0].messageCount).toBe(3);

    // Seen separately first (LID only, then phone only): two persons, merged once a message links them.
    await t.send('bot', upsert('bot', 'm-1', 'lid first', { remoteJid: '90000000002@lid' }, 'Dan'));
    await t.send('bot', upsert('bot', 'm-2', 'phone later', phoneKey('15552220002'), 'Dan'));
    expect((await t.persons('Dan')).length).toBe(2);
    await t.send(
      'bot',
      upsert('bot', 'm-3', 'both', { remoteJid: '90000000002@lid', senderPn: '15552220002@s.whatsapp.net' }, 'Dan'),
    );
    all = await t.persons('Dan');
    expect(all).toHaveLength(1);
    expect(all[0].identities).toHaveLength(1);
    expect(all[0].identities[0].messageCount).toBe(3);
    const timeline = await t.call('GET', `/api/v2/persons/${all[0].id}/timeline?limit=50`);
    expect(timeline.body.items.filter((e: any) => e.type === 'message.received').map((e: any) => e.text)).toEqual([
      'both',
      'phone later',
      'lid first',
    ]);
    await t.close();
  });

  test('link merges two persons (events follow); unlink splits an identity off again with its events', async () => {
    const t = await setup(['bot', 'work']);
    await t.send('bot', upsert('bot', 'k-1', 'personal number', phoneKey('15553330001'), 'Eve'));
    await t.send('work', upsert('work', 'k-2', 'work number', phoneKey('15553330002'), 'Eve (work)'));
    const [a, b] = [(await t.persons('15553330001'))[0], (await t.persons('15553330002'))[0]];
    expect(a.id).not.toBe(b.id);
    const linked = await t.call('POST', '/api/v2/persons/link', {
      identityA: a.identities[0].id,
      identityB: b.identities[0].id,
    });
    expect(linked.status).toBe(200);
    expect(linked.body.data.id).toBe(a.id);
    expect(linked.body.data.identities.map((i: any) => i.platformUserId).sort()).toEqual([
      '15553330001@s.whatsapp.net',
      '15553330002@s.whatsapp.net',
    ]);
    expect((await t.call('GET', `/api/v2/persons/${b.id}`)).status).toBe(404);
    const texts = async (id: string) =>
      (await t.call('GET', `/api/v2/persons/${id}/timeline`)).body.items
        .filter((e: any) => e.type === 'message.received')
        .map((e: any) => e.text);
    expect(await texts(a.id)).toEqual(['work number', 'personal number']);
    const presence = (await t.call('GET', `/api/v2/persons/${a.id}/presence`)).body.data;
    expect(presence.summary.totalIdentities).toBe(2);
    expect(presence.summary.totalMessages).toBe(2);
    expect(presence.summary.activeChannels).toEqual(['whatsapp']);
    expect(presence.byChannel.whatsapp.messages).toBe(2);
    expect(presence.summary.firstSeenAt <= presence.summary.lastSeenAt).toBe(true);
    const tl = await t.call('GET', `/api/v2/events/timeline/${a.id}`);
    expect(tl.body.channels).toEqual(['whatsapp-evolution']);
    expect(tl.body.personId).toBe(a.id);

    // New messages from the linked identity land on the merged person.
    await t.send('work', upsert('work', 'k-3', 'still work', phoneKey('15553330002')));
    expect(await texts(a.id)).toEqual(['still work', 'work number', 'personal number']);

    const un = await t.call('POST', '/api/v2/persons/unlink', {
      identityId: b.identities[0].id,
      reason: 'shared office phone',
    });
    expect(un.status).toBe(200);
    expect(un.body.data.identity.unlinkedReason).toBe('shared office phone');
    const split = un.body.data.person.id;
    expect(split).not.toBe(a.id);
    expect(await texts(split)).toEqual(['still work', 'work number']);
    expect(await texts(a.id)).toEqual(['personal number']);
    // Its only identity cannot be unlinked; unknown identities are 404.
    expect(
      (await t.call('POST', '/api/v2/persons/unlink', { identityId: b.identities[0].id, reason: 'again' })).status,
    ).toBe(409);
    expect(
      (await t.call('POST', '/api/v2/persons/link', { identityA: 'nope', identityB: b.identities[0].id })).status,
    ).toBe(404);
    expect((await t.call('POST', '/api/v2/persons/unlink', { identityId: b.identities[0].id })).status).toBe(400);
    await t.close();
  });

  test('a LID linked into another person keeps that person (and its id) once a message also reports the phone', async () => {
    const t = await setup();
    // The operator links a LID-only WhatsApp sender into the person of a Discord user.
    const hana = t.gw.db.transaction(() =>
      t.gw.persons.observe('discord', { id: '700000000000000001', name: 'Hana' }, new Date().toISOString()),
    )();
    await t.send('bot', upsert('bot', 'h-1', 'lid only', { remoteJid: '90000000033@lid' }, 'Hana'));
    const lid = (await t.persons('90000000033'))[0];
    expect(
      (await t.call('POST', '/api/v2/persons/link', { identityA: hana.identityId, identityB: lid.identities[0].id }))
        .body.data.id,
    ).toBe(hana.personId);
    // Later WhatsApp reports the phone with the LID (Evolution: the phone JID is the sender, the LID its alias).
    await t.send(
      'bot',
      upsert('bot', 'h-2', 'phone and lid', {
        remoteJid: '90000000033@lid',
        remoteJidAlt: '15556660001@s.whatsapp.net',
      }),
    );
    const person = await t.call('GET', `/api/v2/persons/${hana.personId}`);
    expect(person.status).toBe(200);
    const ids = person.body.data.identities.map((i: any) => [i.platform, i.platformUserId, i.aliases]).sort();
    expect(ids).toEqual([
      ['discord', '700000000000000001', []],
      ['whatsapp', '15556660001@s.whatsapp.net', ['90000000033@lid']],
    ]);
    expect((await t.persons('Hana')).map((p: any) => p.id)).toEqual([hana.personId]);
    const texts = (await t.call('GET', `/api/v2/persons/${hana.personId}/timeline`)).body.items
      .filter((e: any) => e.type === 'message.received')
      .map((e: any) => e.text);
    expect(texts).toEqual(['phone and lid', 'lid only']);
    await t.close();
  });

  test('persons routes need persons:*; timeline pages are stable', async () => {
    const t = await setup();
    for (let i = 0; i < 5; i++)
      await t.send('bot', upsert('bot', `c-${i}`, `msg ${i}`, phoneKey('15554440001'), 'Finn'));
    const finn = (await t.persons('Finn'))[0];
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const res: any = await t.call(
        'GET',
        `/api/v2/persons/${finn.id}/timeline?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...res.body.items.map((e: any) => e.id));
      cursor = res.body.meta.cursor;
    } while (cursor);
    const all = (await t.call('GET', `/api/v2/persons/${finn.id}/timeline?limit=100`)).body.items.map((e: any) => e.id);
    expect(seen).toEqual(all);
    expect(all.length).toBe(10); // 5 received + 5 agent replies to Finn
    const reader = t.gw.keys.create({ name: 'reader', scopes: ['events:read'] }).key;
    expect((await t.call('GET', '/api/v2/persons', undefined, { 'x-api-key': reader })).status).toBe(403);
    const pkey = t.gw.keys.create({ name: 'persons', scopes: ['persons:*'] }).key;
    expect((await t.call('GET', '/api/v2/persons', undefined, { 'x-api-key': pkey })).status).toBe(200);
    await t.close();
  });
});

describe('persons and instance-bound keys', () => {
  test('a key bound to one instance sees only the persons of that instance and cannot link', async () => {
    const t = await setup(['tenant-a', 'tenant-b']);
    await t.send('tenant-a', upsert('tenant-a', 'ta-1', 'from a', phoneKey('15552220001'), 'Ana'));
    await t.send('tenant-b', upsert('tenant-b', 'tb-1', 'from b', phoneKey('15552220002'), 'Bea'));
    const a = t.gw.instances.getByName('tenant-a')!;
    const { key } = t.gw.keys.create({ name: 'tenant a', scopes: ['persons:*', 'events:read'], instanceIds: [a.id] });
    const asA = (method: string, path: string, body?: unknown) => t.call(method, path, body, { 'x-api-key': key });
    const seen = (await asA('GET', '/api/v2/persons')).body.items.map((p: any) => p.displayName);
    expect(seen).toEqual(['Ana']);
    const bea = (await t.persons('Bea'))[0];
    expect((await asA('GET', `/api/v2/persons/${bea.id}`)).status).toBe(404);
    expect((await asA('GET', `/api/v2/persons/${bea.id}/presence`)).status).toBe(404);
    expect((await asA('GET', `/api/v2/persons/${bea.id}/timeline`)).status).toBe(404);
    // The same WhatsApp number writing to both tenants: tenant A sees only the identity it saw.
    const anaMine = (await asA('GET', '/api/v2/persons')).body.items[0];
    expect(anaMine.identities.length).toBe(1);
    expect((await asA('GET', `/api/v2/events/timeline/${bea.id}`)).status).toBe(404);
    const ana = (await t.persons('Ana'))[0];
    // Filters by person or identity id find only what the key may see.
    const ids = async (q: string) => (await asA('GET', `/api/v2/persons?${q}`)).body.items.map((p: any) => p.id);
    expect(await ids(`identityId=${ana.identities[0].id},${bea.identities[0].id}`)).toEqual([ana.id]);
    expect(await ids(`id=${ana.id},${bea.id}`)).toEqual([ana.id]);
    expect(
      (await t.call('GET', `/api/v2/persons?identityId=${bea.identities[0].id}`)).body.items.map((p: any) => p.id),
    ).toEqual([bea.id]);
    const link = await asA('POST', '/api/v2/persons/link', {
      identityA: ana.identities[0].id,
      identityB: bea.identities[0].id,
    });
    expect(link.status).toBe(403);
    await t.close();
  });
});

describe('persons as a bound key sees them: computed from its instances only (issue 26)', () => {
  test("names, phone, aliases, counts, first/last seen and totals come from the key's instances, not other tenants' traffic", async () => {
    const t = await setup(['tenant-a', 'tenant-b']);
    // One WhatsApp user writes to both tenants: first to B (by LID with the phone, under another
    // name), then once to A, then twice more to B.
    const lid = { remoteJid: '90000000009@lid', remoteJidAlt: '15552220009@s.whatsapp.net' };
    await t.send('tenant-b', upsert('tenant-b', 'tb-1', 'b one', lid, 'Bea Secret'));
    await Bun.sleep(5);
    await t.send('tenant-a', upsert('tenant-a', 'ta-1', 'a one', phoneKey('15552220009'), 'Ana'));
    await Bun.sleep(5);
    await t.send('tenant-b', upsert('tenant-b', 'tb-2', 'b two', phoneKey('15552220009'), 'Bea Secret'));
    await t.send('tenant-b', upsert('tenant-b', 'tb-3', 'b three', phoneKey('15552220009'), 'Bea Secret'));
    const whole = (await t.persons())[0];
    expect(whole.displayName).toBe('Bea Secret');
    expect(whole.identities[0]).toMatchObject({
      messageCount: 4,
      aliases: expect.arrayContaining(['90000000009@lid']),
    });

    const a = t.gw.instances.getByName('tenant-a')!;
    const { key } = t.gw.keys.create({ name: 'tenant a', scopes: ['persons:*', 'events:read'], instanceIds: [a.id] });
    const asA = (method: string, path: string, body?: unknown) => t.call(method, path, body, { 'x-api-key': key });
    const aEvent = t.gw.db
      .query("SELECT created_at FROM events WHERE type = 'message.received' AND instance_id = ?")
      .get(a.id) as { created_at: string };

    const listed = (await asA('GET', '/api/v2/persons')).body.items;
    expect(listed).toHaveLength(1);
    const one = (await asA('GET', `/api/v2/persons/${whole.id}`)).body.data;
    for (const p of [listed[0], one]) {
      expect(p.displayName).toBe('Ana');
      expect(p.createdAt >= aEvent.created_at).toBe(true);
      expect(p.identities).toHaveLength(1);
      expect(p.identities[0]).toMatchObject({
        platformUserId: '15552220009@s.whatsapp.net',
        aliases: [],
        displayName: 'Ana',
        messageCount: 1,
        firstSeenAt: aEvent.created_at,
        lastSeenAt: aEvent.created_at,
      });
    }
    const presence = (await asA('GET', `/api/v2/persons/${whole.id}/presence`)).body.data;
    expect(presence.summary).toMatchObject({
      totalMessages: 1,
      firstSeenAt: aEvent.created_at,
      lastSeenAt: aEvent.created_at,
    });
    expect(presence.byChannel.whatsapp).toMatchObject({ messages: 1, platformUserIds: ['15552220009@s.whatsapp.net'] });
    // Searching for what only B's traffic told finds nothing; what A saw finds the person.
    const found = async (q: string) =>
      (await asA('GET', `/api/v2/persons?search=${encodeURIComponent(q)}`)).body.items.map((p: any) => p.id);
    expect(await found('Secret')).toEqual([]);
    expect(await found('90000000009')).toEqual([]);
    expect(await found('Ana')).toEqual([whole.id]);
    expect(await found('5552220009')).toEqual([whole.id]);
    // The transcript of an events search names the person as A knows them.
    const digest = await asA('POST', '/api/v2/events/search', { format: 'agent', filters: { personId: whole.id } });
    expect(digest.body.asContext).toContain('assistant → Ana');
    expect(digest.body.asContext).not.toContain('Secret');
    // The whole view is unchanged for an unrestricted key.
    expect((await t.call('GET', `/api/v2/persons/${whole.id}`)).body.data.identities[0].messageCount).toBe(4);
    await t.close();
  });
});

describe('persons: the same ids on every node', () => {
  const at = '2026-01-01T00:00:00.000Z';
  const node = () => {
    const db = openDatabase(':memory:');
    const persons = new PersonService(db);
    return {
      db,
      persons,
      observe: (sender: { id: string; altId?: string; name?: string }, platform: Platform = 'whatsapp') =>
        db.transaction(() => persons.observe(platform, sender, at))(),
    };
  };

  test('a sender first seen by two nodes gets the same identity and person on both; a LID and its phone converge the same way', () => {
    const [a, b] = [node(), node()];
    const gil = { id: '15557770001@s.whatsapp.net', name: 'Gil' };
    const onA = a.observe(gil);
    expect(b.observe(gil)).toEqual(onA);
    expect(onA.personId).not.toBe(onA.identityId);
    // Another spelling of the same number (device suffix) is the same identity.
    expect(a.observe({ id: '15557770001:12@s.whatsapp.net' })).toEqual(onA);
    // Node A meets the LID alone first, node B the phone alone: once each sees both, the same ids.
    a.observe({ id: '90000000077@lid' });
    b.observe({ id: '15557770002@s.whatsapp.net' });
    const both = { id: '90000000077@lid', altId: '15557770002@s.whatsapp.net' };
    expect(a.observe(both)).toEqual(b.observe(both));
    expect(a.persons.search({ search: '90000000077', limit: 10 })).toHaveLength(1);
  });

  test('link and unlink decisions applied on another node also place the identities it first sees later', () => {
    const a = node();
    const x = a.observe({ id: '15558880001@s.whatsapp.net' });
    const y = a.observe({ id: '15558880002@s.whatsapp.net' });
    a.persons.link(x.identityId, y.identityId);
    const un = a.persons.unlink(y.identityId, 'two people');
    const log: PersonOp[] = [
      { op: 'link', keeper: x.personId, loser: y.personId, identities: [x.identityId, y.identityId] },
      { op: 'unlink', identity: y.identityId, person: un.person.id, reason: 'two people', at },
    ];

    // Node B has seen Y before the link: the link moves it; the unlink moves it out, leaving no empty person.
    const b = node();
    b.observe({ id: '15558880002@s.whatsapp.net' });
    b.persons.applyLog('log', 0, log.slice(0, 1));
    expect(b.persons.get(x.personId)!.identities.map((i) => i.id)).toEqual([y.identityId]);
    expect(b.persons.get(y.personId)).toBeNull();
    expect(b.observe({ id: '15558880001@s.whatsapp.net' }).personId).toBe(x.personId);
    b.persons.applyLog('log', 1, log.slice(1));
    expect(b.persons.get(un.person.id)!.identities.map((i) => i.id)).toEqual([y.identityId]);
    expect(b.persons.get(un.person.id)!.identities[0].unlinkedReason).toBe('two people');
    expect(b.persons.get(x.personId)!.identities.map((i) => i.id)).toEqual([x.identityId]);
    // An entry is applied once: a second pull of the same range changes nothing.
    b.persons.applyLog('log', 0, log);
    expect(b.persons.logApplied('log')).toBe(2);
    expect(b.persons.get(un.person.id)!.identities).toHaveLength(1);

    // Node C learns the whole log before it sees anyone: each sender lands where the decisions put it.
    const c = node();
    c.persons.applyLog('log', 0, log.slice(0, 1));
    expect(c.observe({ id: '15558880002@s.whatsapp.net' }).personId).toBe(x.personId);
    const d = node();
    d.persons.applyLog('log', 0, log);
    expect(d.observe({ id: '15558880002@s.whatsapp.net' }).personId).toBe(un.person.id);
    expect(d.observe({ id: '15558880001@s.whatsapp.net' }).personId).toBe(x.personId);
  });

  test('a LID linked into another person takes the phone along on every node, whatever each node saw first', () => {
    const a = node();
    const hana = a.observe({ id: '700000000000000002' }, 'discord');
    const lid = a.observe({ id: '90000000044@lid' });
    a.persons.link(hana.identityId, lid.identityId);
    const log: PersonOp[] = [
      { op: 'link', keeper: hana.personId, loser: lid.personId, identities: [hana.identityId, lid.identityId] },
    ];
    // Evolution reports the phone JID as sender with the LID as alias; Baileys may report the reverse.
    const phoneFirst = { id: '15556660002@s.whatsapp.net', altId: '90000000044@lid' };
    const lidFirst = { id: '90000000044@lid', altId: '15556660002@s.whatsapp.net' };
    const onA = a.observe(phoneFirst);
    expect(onA.personId).toBe(hana.personId);
    expect(
      a.persons
        .get(hana.personId)!
        .identities.map((i) => i.id)
        .sort(),
    ).toEqual([hana.identityId, onA.identityId].sort());

    // Node B meets the user only after the link, with both ids at once.
    const b = node();
    b.persons.applyLog('log', 0, log);
    expect(b.observe(lidFirst)).toEqual(onA);
    // Node C saw the phone alone before (its home person): it joins the linked person, leaving no empty one.
    const c = node();
    const phoneAlone = c.observe({ id: '15556660002@s.whatsapp.net' });
    expect(phoneAlone.personId).not.toBe(hana.personId);
    c.persons.applyLog('log', 0, log);
    expect(c.observe(phoneFirst)).toEqual(onA);
    expect(c.persons.get(phoneAlone.personId)).toBeNull();
    expect(c.persons.search({ search: '15556660002', limit: 10 }).map((p) => p.id)).toEqual([hana.personId]);
    // Node D saw the LID alone (the link moved it) and the phone alone: two identities become one, in the linked person.
    const d = node();
    d.observe({ id: '90000000044@lid' });
    const phoneHome = d.observe({ id: '15556660002@s.whatsapp.net' }).personId;
    d.persons.applyLog('log', 0, log);
    expect(d.observe(lidFirst)).toEqual(onA);
    expect(d.persons.get(hana.personId)!.identities.map((i) => i.id)).toEqual([onA.identityId]);
    expect(d.persons.get(phoneHome)).toBeNull();
  });

  test('rows created before deterministic ids keep their ids', () => {
    const n = node();
    n.db
      .query('INSERT INTO persons (id, display_name, created_at, updated_at) VALUES (?, ?, ?, ?)')
      .run('legacy-person', 'Old', at, at);
    n.db
      .query(
        'INSERT INTO identities (id, person_id, platform, platform_user_id, message_count, first_seen_at, last_seen_at, created_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?)',
      )
      .run('legacy-identity', 'legacy-person', 'whatsapp', '15559990001@s.whatsapp.net', at, at, at);
    n.db
      .query('INSERT INTO identity_keys (platform, key, identity_id) VALUES (?, ?, ?)')
      .run('whatsapp', '15559990001@s.whatsapp.net', 'legacy-identity');
    expect(n.observe({ id: '15559990001@s.whatsapp.net' })).toEqual({
      personId: 'legacy-person',
      identityId: 'legacy-identity',
    });
    // A new alias (the LID) joins the old identity instead of replacing it.
    expect(n.observe({ id: '15559990001@s.whatsapp.net', altId: '90000000099@lid' })).toEqual({
      personId: 'legacy-person',
      identityId: 'legacy-identity',
    });
    expect(n.persons.get('legacy-person')!.identities[0]).toMatchObject({
      messageCount: 3,
      aliases: ['90000000099@lid'],
    });
  });
});
