// Evolution instance lifecycle through the whole gateway: auto_qr provisioning on create, the v1
// QR route in the guide's shape, live status, connect/restart/logout proxies, and an unreachable
// Evolution server (connect 502, create still 201).
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { decodeQrDataUrl, until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

let evo: FakeEvolution;

beforeAll(async () => {
  // Instances first seen through connectionState are closed (not yet paired), as a fresh one is.
  evo = await startFakeEvolution({ apikey: 'EVO-KEY-LIFECYCLE', defaultState: 'close' });
});
afterAll(() => evo.stop());
afterEach(() => {
  evo.reset();
  evo.instances.clear();
});

/** A port nothing listens on. */
async function deadUrl(): Promise<string> {
  const s = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') });
  const url = `http://127.0.0.1:${s.port}`;
  s.stop(true);
  return url;
}

describe('Evolution lifecycle', () => {
  test('create with auto_qr provisions Evolution in the background: instance/create, then webhook/set with our webhook_url', async () => {
    const t = createTestGateway();
    await t.gw.start();
    const res = await t.call('POST', '/api/v1/instances', {
      name: 'wa-bot',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      whatsapp_instance: 'evo-wa-bot',
      auto_qr: true,
      webhook_base64: true,
    });
    expect(res.status).toBe(201);
    await until(() => evo.calls.some((c) => c.route === 'webhookSet'));
    const create = evo.calls.find((c) => c.route === 'create')!;
    expect(create.body.instanceName).toBe('evo-wa-bot');
    expect(create.apikey).toBe('EVO-KEY-LIFECYCLE');
    const set = evo.calls.find((c) => c.route === 'webhookSet')!;
    expect(set.path).toBe('/webhook/set/evo-wa-bot');
    expect(set.body.webhook.url).toBe(res.body.webhook_url);
    expect(set.body.webhook.events).toEqual(['MESSAGES_UPSERT']);
    expect(set.body.webhook.base64).toBe(true);
    expect(evo.calls.findIndex((c) => c.route === 'create')).toBeLessThan(
      evo.calls.findIndex((c) => c.route === 'webhookSet'),
    );
    await t.close();
  });

  test('without auto_qr nothing is provisioned on create', async () => {
    const t = createTestGateway();
    const res = await t.call('POST', '/api/v1/instances', {
      name: 'wa-plain',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
    });
    expect(res.status).toBe(201);
    await Bun.sleep(50);
    expect(evo.calls.filter((c) => c.route === 'create' || c.route === 'webhookSet')).toHaveLength(0);
    await t.close();
  });

  test("v1 /qr answers the guide's shape with a scannable PNG from Evolution's connect", async () => {
    const t = createTestGateway();
    const created = await t.call('POST', '/api/v1/instances', {
      name: 'wa-qr',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      whatsapp_instance: 'evo-qr',
    });
    const connect = await t.call('POST', '/api/v2/instances/wa-qr/connect');
    expect(connect.status).toBe(200);
    // (The stand-in already knows the instance from the actor's first connectionState, so
    // Evolution answers "already in use"; either way the create was attempted and is not an error.)
    expect(typeof connect.body.data.created).toBe('boolean');
    expect(evo.calls.some((c) => c.route === 'create' && c.body.instanceName === 'evo-qr')).toBe(true);
    const before = Date.now();
    const qr = await t.call('GET', '/api/v1/instances/wa-qr/qr');
    expect(qr.status).toBe(200);
    expect(Object.keys(qr.body).sort()).toEqual(['instance_id', 'instance_name', 'qr_code', 'valid_until']);
    expect(qr.body.instance_name).toBe('wa-qr');
    expect(qr.body.instance_id).toBe(created.body.id);
    expect(Date.parse(qr.body.valid_until)).toBeGreaterThan(before);
    const inst = evo.instances.get('evo-qr')!;
    expect(decodeQrDataUrl(qr.body.qr_code)).toBe(inst.qrCode);
    expect(evo.calls.at(-1)!.path).toBe('/instance/connect/evo-qr');

    // v2 gives the same QR as {data:{qr, expiresAt}}.
    const v2 = await t.call('GET', '/api/v2/instances/wa-qr/qr');
    expect(v2.status).toBe(200);
    expect(decodeQrDataUrl(v2.body.data.qr)).toBe(evo.instances.get('evo-qr')!.qrCode);
    expect(typeof v2.body.data.expiresAt).toBe('string');

    // Once WhatsApp is linked there is no QR: 409 saying so.
    evo.setState('evo-qr', 'open');
    const linked = await t.call('GET', '/api/v1/instances/wa-qr/qr');
    expect(linked.status).toBe(409);
    expect(linked.body.error.message).toContain('already connected');
    await t.close();
  });

  test('status comes from Evolution connectionState; logout and restart are proxied', async () => {
    const t = createTestGateway();
    await t.call('POST', '/api/v1/instances', {
      name: 'wa-st',
      evolution_url: evo.url,
      evolution_key: evo.apikey,
      whatsapp_instance: 'evo-st',
    });
    expect((await t.call('POST', '/api/v2/instances/wa-st/connect')).status).toBe(200);
    let st = await t.call('GET', '/api/v2/instances/wa-st/status');
    expect(st.status).toBe(200);
    // Whatever state Evolution reports right after provisioning, the status mirrors it.
    const state = evo.instances.get('evo-st')!.state;
    const mapped = { open: 'connected', connecting: 'connecting', close: 'disconnected' }[state];
    expect(st.body.data).toMatchObject({
      status: mapped,
      evolutionState: state,
      channel: 'whatsapp-evolution',
      running: true,
    });
    evo.setState('evo-st', 'close');
    st = await t.call('GET', '/api/v2/instances/wa-st/status');
    expect(st.body.data).toMatchObject({ status: 'disconnected', evolutionState: 'close' });
    evo.setState('evo-st', 'connecting');
    st = await t.call('GET', '/api/v2/instances/wa-st/status');
    expect(st.body.data).toMatchObject({ status: 'connecting', evolutionState: 'connecting' });

    evo.setState('evo-st', 'open');
    st = await t.call('GET', '/api/v1/instances/wa-st/status');
    expect(st.body).toMatchObject({
      instance_name: 'wa-st',
      status: 'connected',
      connected: true,
      evolution_state: 'open',
    });
    expect((await t.call('GET', '/api/v2/instances/wa-st')).body.data.status).toBe('connected');

    const restarted = await t.call('POST', '/api/v2/instances/wa-st/restart');
    expect(restarted.status).toBe(200);
    expect(evo.calls.some((c) => c.route === 'restart' && c.path === '/instance/restart/evo-st')).toBe(true);

    const out = await t.call('POST', '/api/v2/instances/wa-st/logout');
    expect(out.status).toBe(200);
    expect(out.body.data.status).toBe('logged_out');
    expect(
      evo.calls.some((c) => c.route === 'logout' && c.method === 'DELETE' && c.path === '/instance/logout/evo-st'),
    ).toBe(true);
    expect(evo.instances.get('evo-st')!.state).toBe('close');
    await t.close();
  });

  test('Evolution unreachable: create is still 201 (status error with the reason), connect is 502 CHANNEL_ERROR', async () => {
    const url = await deadUrl();
    const t = createTestGateway();
    await t.gw.start();
    const res = await t.call('POST', '/api/v2/instances', {
      name: 'wa-down',
      channel: 'whatsapp-evolution',
      channelConfig: { evolutionUrl: url, evolutionKey: 'k', autoQr: true },
    });
    expect(res.status).toBe(201);
    await until(() => t.gw.instances.get(res.body.data.id)?.status === 'error');
    expect(t.gw.instances.get(res.body.data.id)!.statusReason).toContain('unreachable');

    const connect = await t.call('POST', `/api/v2/instances/${res.body.data.id}/connect`);
    expect(connect.status).toBe(502);
    expect(connect.body.error.code).toBe('CHANNEL_ERROR');
    expect(connect.body.error.message).toContain('unreachable');
    expect(connect.body.error.message).not.toContain('evolutionKey');

    const qr = await t.call('GET', '/api/v1/instances/wa-down/qr');
    expect(qr.status).toBe(502);
    const st = await t.call('GET', '/api/v2/instances/wa-down/status');
    expect(st.status).toBe(200);
    expect(st.body.data.status).toBe('error');
    expect(st.body.data.reason).toContain('unreachable');
    await t.close();
  });
});

describe('lifecycle routes per channel', () => {
  test('token channels answer 400 VALIDATION_ERROR for QR, pairing and logout; api channel cannot connect', async () => {
    const t = createTestGateway();
    await t.call('POST', '/api/v2/instances', {
      name: 'sl',
      channel: 'slack',
      isActive: false,
      channelConfig: { slackBotToken: 'xoxb-1', slackSigningSecret: 's' },
    });
    await t.call('POST', '/api/v2/instances', { name: 'plain-api', channel: 'api' });
    for (const [method, path, body] of [
      ['GET', '/api/v2/instances/sl/qr', undefined],
      ['GET', '/api/v1/instances/sl/qr', undefined],
      ['POST', '/api/v2/instances/sl/pair', { phoneNumber: '+5511999990000' }],
      ['POST', '/api/v2/instances/sl/logout', undefined],
      ['GET', '/api/v2/instances/sl/discord/invite', undefined],
      ['POST', '/api/v2/instances/plain-api/connect', undefined],
    ] as const) {
      const r = await t.call(method, path, body);
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('VALIDATION_ERROR');
      expect(r.body.error.message).toContain('does not support');
    }
    await t.close();
  });

  test('Discord invite URL uses the client id and permissions', async () => {
    const t = createTestGateway();
    await t.call('POST', '/api/v2/instances', {
      name: 'dc',
      channel: 'discord',
      isActive: false,
      channelConfig: { discordBotToken: 'x.y.z', discordClientId: '123456789012345678', discordPermissions: 2048 },
    });
    const r = await t.call('GET', '/api/v2/instances/dc/discord/invite');
    expect(r.status).toBe(200);
    const u = new URL(r.body.data.url);
    expect(u.searchParams.get('client_id')).toBe('123456789012345678');
    expect(u.searchParams.get('permissions')).toBe('2048');
    expect(u.searchParams.get('scope')).toBe('bot applications.commands');
    await t.call('PATCH', '/api/v2/instances/dc', { channelConfig: { discordClientId: null } });
    const missing = await t.call('GET', '/api/v2/instances/dc/discord/invite');
    expect(missing.status).toBe(400);
    expect(missing.body.error.message).toContain('discord_client_id');
    await t.close();
  });

  test('every lifecycle route is documented in OpenAPI and in the scope table', async () => {
    const t = createTestGateway();
    const doc = (await t.call('GET', '/docs/json')).body;
    const { ROUTE_SCOPES } = await import('../../src/api/scopes.ts');
    for (const [method, path] of [
      ['get', '/api/v1/instances/{name}/qr'],
      ['get', '/api/v1/instances/{name}/status'],
      ['get', '/api/v2/instances/{id}/qr'],
      ['post', '/api/v2/instances/{id}/pair'],
      ['get', '/api/v2/instances/{id}/status'],
      ['post', '/api/v2/instances/{id}/restart'],
      ['post', '/api/v2/instances/{id}/logout'],
      ['post', '/api/v2/instances/{id}/connect'],
      ['get', '/api/v2/instances/{id}/discord/invite'],
    ]) {
      const op = doc.paths[path]?.[method];
      expect(op?.summary).toBeTruthy();
      expect(op?.description).toBeTruthy();
      expect(op?.responses?.['200']).toBeTruthy();
      expect(ROUTE_SCOPES[`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`]).toBeTruthy();
    }
    await t.close();
  });
});
