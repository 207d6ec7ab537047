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
    for (const path of [
      '/api/v1/events',
      '/api/v1/persons',
      '/api/v1/access/rules',
      '/api/v1/channels',
      '/api/v1/conversations',
      '/api/v1/dead-letters',
    ]) {
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

describe('instance create with the design body (channelConfig, agent, messaging, media)', () => {
  test('messaging and media are validated, stored, shown (transcription key masked) and merged on PATCH', async () => {
    const res = await t.call('POST', '/api/v2/instances', {
      name: 'design-body',
      channel: 'whatsapp-evolution',
      channelConfig: { evolutionUrl: 'http://127.0.0.1:9', evolutionKey: 'evo-key-1234' },
      agent: { url: 'http://127.0.0.1:9/agent', type: 'json' },
      messaging: { mode: 'collect', debounceMs: 3000, maxWaitMs: 10000, maxBatch: 5 },
      media: {
        transcription: { url: 'http://127.0.0.1:9/v1', apiKey: 'sk-transcribe-SECRET', model: 'whisper-1' },
        inline: true,
      },
    });
    expect(res.status).toBe(201);
    const data = res.body.data;
    expect(data.messaging).toEqual({ mode: 'collect', debounceMs: 3000, maxWaitMs: 10000, maxBatch: 5 });
    expect(data.media.inline).toBe(true);
    expect(data.media.transcription.model).toBe('whisper-1');
    expect(JSON.stringify(res.body)).not.toContain('sk-transcribe-SECRET');
    expect(data.settings.messaging).toBeUndefined();

    // PATCH merges: the mode changes, the other values and the stored key stay.
    const patched = await t.call('PATCH', `/api/v2/instances/${data.id}`, {
      messaging: { mode: 'interrupt' },
      media: { transcription: { language: 'pt-BR' } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.data.messaging).toMatchObject({ mode: 'interrupt', debounceMs: 3000 });
    expect(patched.body.data.media.transcription.language).toBe('pt-BR');
    const stored = t.gw.instances.get(data.id)!.settings.media as { transcription: { apiKey: string } };
    expect(stored.transcription.apiKey).toBe('sk-transcribe-SECRET');
    // null turns transcription off.
    const off = await t.call('PATCH', `/api/v2/instances/${data.id}`, { media: { transcription: null } });
    expect(off.body.data.media.transcription).toBeNull();
    // An instance created without them shows the defaults.
    const plain = (await t.call('GET', '/api/v2/instances/fields-a')).body.data;
    expect(plain.messaging.mode).toBe('sequential');
  });

  test('out-of-range or unknown values are a 400 naming the field, and nothing is stored', async () => {
    for (const [body, field] of [
      [{ messaging: { debounceMs: 60_000 } }, 'debounceMs'],
      [{ messaging: { mode: 'parallel' } }, 'mode'],
      [{ messaging: { maxBatch: 0 } }, 'maxBatch'],
      [{ media: { maxBytes: 1 } }, 'maxBytes'],
      [{ media: { transcription: { url: 'http://169.254.169.254/v1', model: 'm' } } }, 'transcription.url'],
      [{ media: { transcription: { url: 'http://127.0.0.1:9/v1' } } }, 'transcription.model'],
    ] as const) {
      const res = await t.call('POST', '/api/v2/instances', {
        name: `bad-options-${field.replace('.', '-').toLowerCase()}`,
        channel: 'api',
        ...body,
      });
      expect([field, res.status]).toEqual([field, 400]);
      expect(JSON.stringify(res.body.error)).toContain(field);
      expect(t.gw.instances.getByName(`bad-options-${field.replace('.', '-').toLowerCase()}`)).toBeNull();
    }
  });
});
