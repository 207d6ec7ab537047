// WhatsApp (Baileys) through the whole gateway with the stand-in socket: pairing QR over the API
// (decoded from the PNG), pairing code, inbound → agent → sendMessage in order with presence
// around it, a 401 close → logged_out in the status route, logout clearing the auth state.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { hasStoredAuth } from '../../src/channels/whatsapp/auth-state.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { fakeSocketFactory } from '../fakes/baileys-socket.ts';
import { decodeQrDataUrl, until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

let agent: FakeAgent;
beforeAll(() => {
  agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}` });
});
afterAll(() => agent.stop());

async function setup() {
  const sockets = fakeSocketFactory();
  const t = createTestGateway(
    { PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', TYPING_DELAY_MS: '0' },
    { pipeline: { adapterDeps: { baileysSocketFactory: sockets.factory } } },
  );
  await t.gw.start();
  const res = await t.call('POST', '/api/v2/instances', {
    name: 'wa',
    channel: 'whatsapp-baileys',
    channelConfig: { whatsappSendRatePerSecond: 100 },
    agent: { url: agent.url, type: 'json', timeoutSeconds: 5 },
  });
  expect(res.status).toBe(201);
  await until(() => sockets.sockets.length > 0);
  return { ...t, sockets, id: res.body.data.id as string };
}

const textMessage = (id: string, text: string, jid = '5511988887777@s.whatsapp.net') => ({
  key: { remoteJid: jid, id, fromMe: false },
  messageTimestamp: Math.floor(Date.now() / 1000),
  pushName: 'Ana',
  message: { conversation: text },
});

describe('WhatsApp (Baileys) through the gateway', () => {
  test('the QR route returns a decodable PNG while the socket shows a QR; v1 in the guide shape', async () => {
    const t = await setup();
    const none = await t.call('GET', `/api/v2/instances/${t.id}/qr`);
    expect(none.status).toBe(404);
    expect(none.body.error.message).toContain('No QR code yet');

    const payload = '2@Zm9vYmFyYmF6cXV4,ABCDEFGHIJKLMNOP,QRSTUVWXYZ012345,abcdefghijklmnop';
    t.sockets.last().emitQr(payload);
    const v2 = await t.call('GET', `/api/v2/instances/${t.id}/qr`);
    expect(v2.status).toBe(200);
    expect(decodeQrDataUrl(v2.body.data.qr)).toBe(payload);
    expect(Date.parse(v2.body.data.expiresAt)).toBeGreaterThan(Date.now());

    const v1 = await t.call('GET', '/api/v1/instances/wa/qr');
    expect(v1.status).toBe(200);
    expect(v1.body.instance_name).toBe('wa');
    expect(decodeQrDataUrl(v1.body.qr_code)).toBe(payload);

    const st = await t.call('GET', `/api/v2/instances/${t.id}/status`);
    expect(st.body.data).toMatchObject({ status: 'connecting', hasQr: true, qrRounds: 1 });

    // Pairing by phone number: the code Baileys returns, for the digits given.
    const pair = await t.call('POST', `/api/v2/instances/${t.id}/pair`, { phoneNumber: '+55 11 98888-7777' });
    expect(pair.status).toBe(200);
    expect(pair.body.data.code).toBe('ABCD1234');
    expect(t.sockets.calls).toContainEqual({ kind: 'pairing', phone: '5511988887777' });
    const bad = await t.call('POST', `/api/v2/instances/${t.id}/pair`, { phoneNumber: 'not-a-phone' });
    expect(bad.status).toBe(400);

    t.sockets.last().emitOpen();
    await until(() => t.gw.instances.get(t.id)?.status === 'connected');
    const linked = await t.call('GET', `/api/v2/instances/${t.id}/qr`);
    expect(linked.status).toBe(409);
    expect(linked.body.error.message).toContain('already linked');
    await t.close();
  });

  test('inbound messages.upsert → agent → sendMessage on the socket, in order, with composing/paused around each agent call', async () => {
    const t = await setup();
    const sock = t.sockets.last();
    sock.emitOpen();
    await until(() => t.gw.instances.get(t.id)?.status === 'connected');
    sock.emitMessages([textMessage('M1', 'one'), textMessage('M2', 'two')]);
    sock.emitMessages([textMessage('M3', 'three')]);
    await until(() => sock.sent().length >= 3);
    await until(() => t.sockets.calls.filter((c) => c.kind === 'presence' && c.type === 'paused').length >= 3);

    expect(sock.sent().map((s) => s.content.text)).toEqual(['echo: one', 'echo: two', 'echo: three']);
    expect(sock.sent().every((s) => s.jid === '5511988887777@s.whatsapp.net')).toBe(true);
    expect(agent.requests.slice(-3).map((r) => r.body.message)).toEqual(['one', 'two', 'three']);
    // "composing" while the agent works, "paused" when it is done, then the reply — per message, in order.
    const seq = t.sockets.calls
      .filter(
        (c) => c.kind === 'sendMessage' || (c.kind === 'presence' && (c.type === 'composing' || c.type === 'paused')),
      )
      .map((c) =>
        c.kind === 'sendMessage' ? `send:${c.content.text}` : c.kind === 'presence' ? `${c.type}:${c.jid}` : '',
      );
    const jid = '5511988887777@s.whatsapp.net';
    expect(seq).toEqual(
      ['one', 'two', 'three'].flatMap((m) => [`composing:${jid}`, `paused:${jid}`, `send:echo: ${m}`]),
    );
    await t.close();
  });

  test('a 401 close → logged_out with the reason in GET status; logout clears the stored auth', async () => {
    const t = await setup();
    const sock = t.sockets.last();
    sock.emitCreds({ registered: true });
    sock.emitOpen();
    await until(() => t.gw.instances.get(t.id)?.status === 'connected');
    expect(hasStoredAuth(t.gw.db, t.id)).toBe(true);

    sock.emitClose(401, 'Connection Failure');
    await until(() => t.gw.instances.get(t.id)?.status === 'logged_out');
    const st = await t.call('GET', `/api/v2/instances/${t.id}/status`);
    expect(st.status).toBe(200);
    expect(st.body.data.status).toBe('logged_out');
    expect(st.body.data.reason).toBeTruthy();
    expect(st.body.data.lastDisconnect.statusCode).toBe(401);
    expect(t.sockets.sockets).toHaveLength(1); // no reconnect after a logout
    const v1 = await t.call('GET', '/api/v1/instances/wa/status');
    expect(v1.body).toMatchObject({ status: 'logged_out', connected: false, qr_rounds: 0 });

    const out = await t.call('POST', `/api/v2/instances/${t.id}/logout`);
    expect(out.status).toBe(200);
    expect(out.body.data.status).toBe('logged_out');
    expect(hasStoredAuth(t.gw.db, t.id)).toBe(false);

    // connect starts pairing again: a new socket.
    const again = await t.call('POST', `/api/v2/instances/${t.id}/connect`);
    expect(again.status).toBe(200);
    expect(t.sockets.sockets.length).toBe(2);
    await t.close();
  });

  test('restart opens a new socket; an inactive instance cannot connect', async () => {
    const t = await setup();
    const r = await t.call('POST', `/api/v2/instances/${t.id}/restart`);
    expect(r.status).toBe(200);
    expect(r.body.data.status).toBe('connecting');
    expect(t.sockets.sockets.length).toBe(2);
    await t.call('PATCH', `/api/v2/instances/${t.id}`, { isActive: false });
    const c = await t.call('POST', `/api/v2/instances/${t.id}/connect`);
    expect(c.status).toBe(409);
    expect(c.body.error.message).toContain('inactive');
    const qr = await t.call('GET', `/api/v2/instances/${t.id}/qr`);
    expect(qr.status).toBe(409);
    await t.close();
  });
});
