// The v2 API design, read line by line: the request bodies and answer shapes a client written
// against it uses (sparse fieldsets, settings PATCH, logout) work unchanged.
import { afterAll, describe, expect, test } from 'bun:test';
import { createTestGateway } from '../helpers.ts';

const t = createTestGateway();
afterAll(() => t.close());

async function createInstance(name: string) {
  const res = await t.call('POST', '/api/v2/instances', {
    name,
    channel: 'whatsapp-evolution',
    channelConfig: { evolutionUrl: 'http://127.0.0.1:9', evolutionKey: 'evo-key-1234' },
    agent: { url: 'http://127.0.0.1:9/agent' },
  });
  expect(res.status).toBe(201);
  return res.body.data;
}

describe('sparse fieldsets (design principle 5)', () => {
  test('a list answers only the named fields of each item; a get only those of the resource', async () => {
    const a = await createInstance('fields-a');
    await createInstance('fields-b');
    const list = await t.call('GET', '/api/v2/instances?fields=id,name');
    expect(list.status).toBe(200);
    expect(list.body.items.length).toBeGreaterThanOrEqual(2);
    for (const item of list.body.items) expect(Object.keys(item).sort()).toEqual(['id', 'name']);
    expect(list.body.meta).toBeDefined();
    const one = await t.call('GET', `/api/v2/instances/${a.id}?fields=name,channel`);
    expect(one.status).toBe(200);
    expect(one.body.data).toEqual({ name: 'fields-a', channel: 'whatsapp-evolution' });
    // Without fields the whole object comes back.
    const full = await t.call('GET', `/api/v2/instances/${a.id}`);
    expect(Object.keys(full.body.data).length).toBeGreaterThan(5);
  });

  test('an unknown field is a 400 naming it, also on an empty list', async () => {
    const bad = await t.call('GET', '/api/v2/instances?fields=id,nope');
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_ERROR');
    expect(bad.body.error.message).toContain('nope');
    const emptyList = await t.call('GET', '/api/v2/keys?fields=bogus&limit=1');
    expect(emptyList.status).toBe(400);
    expect(emptyList.body.error.message).toContain('bogus');
    expect((await t.call('GET', '/api/v2/keys?fields=id,name')).status).toBe(200);
  });

  test('fields needs a key like the route itself', async () => {
    const res = await t.call('GET', '/api/v2/instances?fields=id', undefined, { 'x-api-key': 'wrong' });
    expect(res.status).toBe(401);
  });
});

describe('settings PATCH', () => {
  test("the design's {settings:{…}} body answers {data: Setting[]}; a flat map stays accepted", async () => {
    const res = await t.call('PATCH', '/api/v2/settings', { settings: { 'traces.retentionDays': 9 } });
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual([expect.objectContaining({ key: 'traces.retentionDays', value: 9 })]);
    const flat = await t.call('PATCH', '/api/v2/settings', { 'traces.retentionDays': 8 });
    expect(flat.status).toBe(200);
    expect(flat.body.data[0].value).toBe(8);
    const bad = await t.call('PATCH', '/api/v2/settings', { settings: { 'no.such.key': 1 } });
    expect(bad.status).toBe(400);
    expect((await t.call('GET', '/api/v2/settings/traces.retentionDays')).body.data.value).toBe(8);
  });
});

describe('one route table, several paths (design principle 1, the keys path)', () => {
  test('v2 resources the v1 guide does not define answer under /api/v1 with the v2 shapes', async () => {
    for (const path of ['/api/v1/events', '/api/v1/persons', '/api/v1/access/rules', '/api/v1/channels']) {
      const v1 = await t.call('GET', path);
      const v2 = await t.call('GET', path.replace('/api/v1/', '/api/v2/'));
      expect([path, v1.status]).toEqual([path, 200]);
      expect(Object.keys(v1.body).sort()).toEqual(Object.keys(v2.body).sort());
    }
    const settings = await t.call('PATCH', '/api/v1/settings', { settings: { 'traces.retentionDays': 11 } });
    expect(settings.body.data[0].value).toBe(11);
    const sent = await t.call('POST', '/api/v1/messages', { instanceId: 'nope', to: '1', text: 'x' });
    expect(sent.status).toBe(404);
    expect(sent.body.error.code).toBe('NOT_FOUND');
    // The guide's own v1 routes keep the guide's shapes (bare arrays / {total, traces}).
    expect(Array.isArray((await t.call('GET', '/api/v1/instances')).body)).toBe(true);
    expect((await t.call('GET', '/api/v1/traces')).body).toHaveProperty('traces');
  });

  test('the keys resource answers at /api/v2/api-keys (and its audit route) as at /api/v2/keys', async () => {
    const created = await t.call('POST', '/api/v2/api-keys', { name: 'via api-keys', scopes: ['events:read'] });
    expect(created.status).toBe(201);
    const id = created.body.data.id;
    expect((await t.call('GET', `/api/v2/keys/${id}`)).body.data.name).toBe('via api-keys');
    const audit = await t.call('GET', `/api/v2/api-keys/${id}/audit`);
    expect(audit.status).toBe(200);
    expect(Array.isArray(audit.body.items)).toBe(true);
  });

  test('an alias needs the scope of its v2 route, and instance-bound keys stay bound', async () => {
    const reader = (await t.call('POST', '/api/v2/keys', { name: 'events only', scopes: ['events:read'] })).body.data
      .key;
    const as = (method: string, path: string, body?: unknown) => t.call(method, path, body, { 'x-api-key': reader });
    expect((await as('GET', '/api/v1/events')).status).toBe(200);
    expect((await as('GET', '/api/v1/persons')).status).toBe(403);
    expect((await as('GET', '/api/v2/api-keys')).status).toBe(403);
    expect((await as('POST', '/api/v1/messages', { instanceId: 'x', to: '1', text: 'x' })).status).toBe(403);
    const inst = await createInstance('bound-target');
    const bound = (
      await t.call('POST', '/api/v2/keys', { name: 'bound', scopes: ['settings:*'], instanceIds: [inst.id] })
    ).body.data.key;
    // Settings are shared by every tenant: a bound key is refused on the alias as on the v2 route.
    const patch = await t.call('PATCH', '/api/v1/settings', { 'traces.retentionDays': 3 }, { 'x-api-key': bound });
    expect(patch.status).toBe(403);
  });

  test('the OpenAPI document lists the aliases', async () => {
    const doc = (await t.call('GET', '/docs/json')).body;
    for (const p of ['/api/v1/events', '/api/v2/api-keys', '/api/v2/api-keys/{id}/audit', '/api/v1/settings'])
      expect(Object.keys(doc.paths)).toContain(p);
  });
});
