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
