// v2 instances (camelCase, envelopes, cursor pagination, filters) and v2 settings.
import { describe, expect, test } from 'bun:test';
import { offlineGatewaysClosedAfterEach } from '../instance-fixtures.ts';

const gateway = offlineGatewaysClosedAfterEach();

const SECRETS = {
  evolutionKey: 'EVO-SECRET-7f3a9c1d2e4b',
  agentKey: 'AGENT-SECRET-0a1b2c3d4e5f',
  headerSecret: 'Bearer HEADER-SECRET-99887766',
  botToken: 'DISCORD-SECRET-TOKEN.abc.def',
};

const evolutionBody = (name: string) => ({
  name,
  channel: 'whatsapp-evolution',
  channelConfig: {
    evolutionUrl: 'https://evolution.example.com',
    evolutionKey: SECRETS.evolutionKey,
    webhookBase64: false,
  },
  agent: {
    url: 'https://agent.example.com/run',
    apiKey: SECRETS.agentKey,
    type: 'json',
    timeoutSeconds: 90,
    headers: { Authorization: SECRETS.headerSecret },
  },
  isActive: true,
});
const discordBody = (name: string) => ({
  name,
  channel: 'discord',
  channelConfig: { discordBotToken: SECRETS.botToken, discordClientId: '198622483624032258' },
  agent: { url: 'http://localhost:8887', apiKey: SECRETS.agentKey },
});

function expectNoSecrets(json: unknown) {
  const text = JSON.stringify(json);
  for (const s of Object.values(SECRETS)) expect(text).not.toContain(s);
}

describe('v2 instances CRUD', () => {
  test('create, get, patch, delete with {data} envelopes and camelCase fields', async () => {
    const t = gateway();
    const created = await t.call('POST', '/api/v2/instances', evolutionBody('evo-one'));
    expect(created.status).toBe(201);
    const d = created.body.data;
    expect(d).toMatchObject({
      name: 'evo-one',
      channel: 'whatsapp-evolution',
      isActive: true,
      isDefault: false,
      status: 'disconnected',
      statusReason: null,
      channelConfig: {
        evolutionUrl: 'https://evolution.example.com',
        evolutionKey: '****2e4b',
        webhookBase64: false,
        whatsappInstance: 'evo-one',
      },
      agent: {
        url: 'https://agent.example.com/run',
        apiKey: '****4e5f',
        type: 'json',
        timeoutSeconds: 90,
        headers: { Authorization: '****7766' },
      },
    });
    expect(d.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(d.webhookUrl).toStartWith('http://localhost/webhook/evolution/evo-one?token=');
    expectNoSecrets(created.body);

    const got = await t.call('GET', `/api/v2/instances/${d.id}`);
    expect(got.status).toBe(200);
    // Status is runtime state (the instance actor starts on create); the rest is the record.
    const record = ({ status, statusReason, ...rest }: Record<string, unknown>) => rest;
    expect(record(got.body.data)).toEqual(record(d));
    // The name is accepted in place of the id.
    expect((await t.call('GET', '/api/v2/instances/evo-one')).body.data.id).toBe(d.id);

    const patched = await t.call('PATCH', `/api/v2/instances/${d.id}`, {
      agent: { timeoutSeconds: 200 },
      channelConfig: { webhookBase64: true },
      isActive: false,
    });
    expect(patched.status).toBe(200);
    expect(patched.body.data).toMatchObject({
      isActive: false,
      agent: { timeoutSeconds: 200, url: 'https://agent.example.com/run', apiKey: '****4e5f' },
      channelConfig: { webhookBase64: true, evolutionKey: '****2e4b' },
    });
    expectNoSecrets(patched.body);

    const badPatch = await t.call('PATCH', `/api/v2/instances/${d.id}`, { channel: 'discord' });
    expect(badPatch.status).toBe(400);
    expect(badPatch.body.error.details).toContainEqual({
      field: 'channel',
      problem: expect.stringContaining('cannot be changed'),
    });

    const del = await t.call('DELETE', `/api/v2/instances/${d.id}`);
    expect(del.status).toBe(200);
    expect((await t.call('GET', `/api/v2/instances/${d.id}`)).status).toBe(404);
  });

  test('v1 and v2 are views over the same instances', async () => {
    const t = gateway();
    const created = (await t.call('POST', '/api/v2/instances', discordBody('shared-bot'))).body.data;
    const v1 = await t.call('GET', '/api/v1/instances/shared-bot');
    expect(v1.status).toBe(200);
    expect(v1.body).toMatchObject({
      name: 'shared-bot',
      channel: 'discord',
      discord_bot_token: '****.def',
      discord_client_id: '198622483624032258',
    });
    await t.call('PUT', '/api/v1/instances/shared-bot', { agent_timeout: 42 });
    expect((await t.call('GET', `/api/v2/instances/${created.id}`)).body.data.agent.timeoutSeconds).toBe(42);
  });

  test('duplicate name 409; agent timeout out of range 400', async () => {
    const t = gateway();
    expect((await t.call('POST', '/api/v2/instances', discordBody('dup-bot'))).status).toBe(201);
    const dup = await t.call('POST', '/api/v2/instances', evolutionBody('dup-bot'));
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('CONFLICT');
    for (const timeoutSeconds of [0, 601]) {
      const res = await t.call('POST', '/api/v2/instances', {
        ...discordBody('timeout-bot'),
        agent: { timeoutSeconds },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.details.map((x: { field: string }) => x.field)).toContain('agent.timeoutSeconds');
    }
  });

  test('rotate-webhook-secret changes the token; the old one is gone', async () => {
    const t = gateway();
    const d = (await t.call('POST', '/api/v2/instances', evolutionBody('rotate-bot'))).body.data;
    const oldToken = new URL(d.webhookUrl).searchParams.get('token');
    const rotated = await t.call('POST', `/api/v2/instances/${d.id}/rotate-webhook-secret`);
    expect(rotated.status).toBe(200);
    const newToken = new URL(rotated.body.data.webhookUrl).searchParams.get('token');
    expect(newToken).toMatch(/^[A-Za-z0-9_-]{24,}$/);
    expect(newToken).not.toBe(oldToken);
    expect(
      new URL((await t.call('GET', '/api/v1/instances/rotate-bot')).body.webhook_url).searchParams.get('token'),
    ).toBe(newToken);
    expect(t.gw.instances.get(d.id)!.webhookSecret).toBe(newToken!);
  });
});

describe('v2 list: pagination and filters', () => {
  test('7 instances, limit 3: three pages, no duplicates, no gaps, hasMore false at the end', async () => {
    const t = gateway();
    const names: string[] = [];
    for (let i = 0; i < 7; i++) {
      const name = `bot-${i}`;
      names.push(name);
      expect((await t.call('POST', '/api/v2/instances', i % 2 ? discordBody(name) : evolutionBody(name))).status).toBe(
        201,
      );
    }
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    for (let pageNo = 0; pageNo < 10; pageNo++) {
      const res = await t.call(
        'GET',
        `/api/v2/instances?limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      );
      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(['items', 'meta']);
      expect(res.body.meta.total).toBe(7);
      expectNoSecrets(res.body);
      sizes.push(res.body.items.length);
      seen.push(...res.body.items.map((i: { name: string }) => i.name));
      if (!res.body.meta.hasMore) {
        expect(res.body.meta.cursor).toBeNull();
        break;
      }
      cursor = res.body.meta.cursor;
      expect(typeof cursor).toBe('string');
    }
    expect(sizes).toEqual([3, 3, 1]);
    expect(new Set(seen).size).toBe(7);
    expect([...seen].sort()).toEqual([...names].sort());
  });

  test('a page boundary survives a delete of the last row seen', async () => {
    const t = gateway();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await t.call('POST', '/api/v2/instances', discordBody(`del-${i}`))).body.data.id);
    const first = await t.call('GET', '/api/v2/instances?limit=2');
    await t.call('DELETE', `/api/v2/instances/${first.body.items[1].id}`);
    const second = await t.call('GET', `/api/v2/instances?limit=10&cursor=${first.body.meta.cursor}`);
    expect(second.body.items.map((i: { id: string }) => i.id)).toEqual(ids.slice(2));
  });

  test('filters: channel and status comma lists', async () => {
    const t = gateway();
    // Inactive, so no instance actor moves the statuses this test sets.
    const create = async (body: Record<string, unknown>, status: 'connected' | 'disconnected' | 'error') => {
      const res = await t.call('POST', '/api/v2/instances', { ...body, isActive: false });
      expect(res.status).toBe(201);
      t.gw.instances.setStatus(res.body.data.id, status, null);
    };
    await create(evolutionBody('evo-a'), 'error');
    await create(evolutionBody('evo-b'), 'disconnected');
    await create(discordBody('disc-a'), 'connected');
    await create(
      {
        name: 'slack-a',
        channel: 'slack',
        channelConfig: { slackBotToken: 'xoxb-1', slackSigningSecret: 'sig-1234567890' },
      },
      'disconnected',
    );

    const names = async (q: string) =>
      (await t.call('GET', `/api/v2/instances?${q}`)).body.items.map((i: { name: string }) => i.name).sort();
    expect(await names('channel=discord')).toEqual(['disc-a']);
    expect(await names('channel=whatsapp-evolution,slack')).toEqual(['evo-a', 'evo-b', 'slack-a']);
    expect(await names('status=connected')).toEqual(['disc-a']);
    expect(await names('status=disconnected,connected&channel=discord,slack')).toEqual(['disc-a', 'slack-a']);
    expect(await names('status=error,connected')).toEqual(['disc-a', 'evo-a']);
    expect(await names('channel=telegram')).toEqual([]);
    expect((await t.call('GET', '/api/v2/instances?channel=whatsapp-evolution')).body.meta.total).toBe(2);
  });

  test('invalid cursor and out-of-range limit answer 400', async () => {
    const t = gateway();
    for (const q of [
      'cursor=zzz',
      `cursor=${Buffer.from('{"nope":1}').toString('base64url')}`,
      'limit=0',
      'limit=101',
      'limit=abc',
    ]) {
      const res = await t.call('GET', `/api/v2/instances?${q}`);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
    }
  });
});

describe('v2 settings', () => {
  test('list, get, put, patch many (all or nothing), unknown keys rejected', async () => {
    const t = gateway();
    const list = await t.call('GET', '/api/v2/settings');
    expect(list.status).toBe(200);
    const keys = list.body.items.map((s: { key: string }) => s.key);
    expect(keys).toContain('agent.defaultTimeoutSeconds');
    expect(keys).toContain('traces.retentionDays');
    expect(list.body.meta).toMatchObject({ hasMore: false, total: keys.length });

    const one = await t.call('GET', '/api/v2/settings/agent.defaultTimeoutSeconds');
    expect(one.body.data).toMatchObject({
      key: 'agent.defaultTimeoutSeconds',
      value: 60,
      isDefault: true,
      updatedAt: null,
    });

    const put = await t.call('PUT', '/api/v2/settings/agent.defaultTimeoutSeconds', { value: 45 });
    expect(put.status).toBe(200);
    expect(put.body.data).toMatchObject({ value: 45, isDefault: false });
    // New instances pick the default up.
    const inst = await t.call('POST', '/api/v2/instances', discordBody('uses-default'));
    expect(inst.body.data.agent.timeoutSeconds).toBe(45);

    const badPut = await t.call('PUT', '/api/v2/settings/agent.defaultTimeoutSeconds', { value: 601 });
    expect(badPut.status).toBe(400);
    expect((await t.call('PUT', '/api/v2/settings/agent.defaultTimeoutSeconds', { value: 'ten' })).status).toBe(400);

    const patch = await t.call('PATCH', '/api/v2/settings', { 'traces.retentionDays': 7, 'audit.retentionDays': 120 });
    expect(patch.status).toBe(200);
    expect(patch.body.items.map((s: { key: string; value: unknown }) => [s.key, s.value])).toEqual([
      ['traces.retentionDays', 7],
      ['audit.retentionDays', 120],
    ]);

    // One bad value or unknown key rejects the whole batch.
    const mixed = await t.call('PATCH', '/api/v2/settings', {
      'traces.retentionDays': 9,
      'inbox.dedupeRetentionDays': 3,
      'no.such.key': 1,
    });
    expect(mixed.status).toBe(400);
    expect(mixed.body.error.details.map((d: { field: string }) => d.field).sort()).toEqual([
      'inbox.dedupeRetentionDays',
      'no.such.key',
    ]);
    expect((await t.call('GET', '/api/v2/settings/traces.retentionDays')).body.data.value).toBe(7);

    expect((await t.call('PATCH', '/api/v2/settings', {})).status).toBe(400);
    const unknownGet = await t.call('GET', '/api/v2/settings/no.such.key');
    expect(unknownGet.status).toBe(404);
    expect(unknownGet.body.error.code).toBe('NOT_FOUND');
    const unknownPut = await t.call('PUT', '/api/v2/settings/no.such.key', { value: 1 });
    expect(unknownPut.status).toBe(400);
    expect(unknownPut.body.error.code).toBe('VALIDATION_ERROR');
    expect((await t.call('PUT', '/api/v2/settings/traces.retentionDays', { value: 3, extra: true })).status).toBe(400);
  });
});

describe('extension settings', () => {
  test('bounded in size and depth (400 naming the setting); null removes one', async () => {
    const t = gateway();
    expect((await t.call('POST', '/api/v2/instances', { name: 'ext', channel: 'api' })).status).toBe(201);
    const set = (settings: Record<string, unknown>) => t.call('PATCH', '/api/v2/instances/ext', { settings });
    let deep: unknown = [];
    for (let i = 0; i < 3000; i++) deep = [deep];
    for (const [settings, field] of [
      [{ notes: 'x'.repeat(500_000) }, 'settings.notes'],
      [{ nested: deep }, '(body)'], // caught by the body's depth bound before validation
      [{ nested: [[[[[[[[[1]]]]]]]]] }, 'settings.nested'],
      [Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])), 'settings'],
    ] as const) {
      const res = await set(settings);
      expect(res.status).toBe(400);
      expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
    }
    expect((await set({ stopKeyword: 'stop', custom: { a: [1, 2] } })).status).toBe(200);
    expect(t.gw.instances.getByName('ext')!.settings).toMatchObject({ stopKeyword: 'stop', custom: { a: [1, 2] } });
    const cleared = await set({ stopKeyword: null, custom: null });
    expect(cleared.status).toBe(200);
    const s = t.gw.instances.getByName('ext')!.settings;
    expect('stopKeyword' in s).toBe(false);
    expect('custom' in s).toBe(false);
    expect(Object.keys(cleared.body.data.settings)).not.toContain('custom');
  });
});
