// The send API end to end: POST /api/v2/messages (and media, reaction, v1 send-text) through the
// conversation actor and outbox to a local Evolution stand-in, ordered with agent replies.
import { describe, expect, test } from 'bun:test';
import { MessageService } from '../../src/services/messages.ts';
import { evolutionInstance, evolutionUpsert, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-SEND' },
  agent: { protocol: 'json' },
  resetAfterEach: true,
});

const upsert = (id: string, text: string, phone: string) =>
  evolutionUpsert({ instance: 'bot', id, text, phone, name: 'Gus' });

async function setup() {
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  const { post, id } = await evolutionInstance(t, { name: 'bot', ...fakes });
  await t.gw.start();
  return { ...t, post, id };
}

describe('send API', () => {
  test('POST /api/v2/messages sends through Evolution and answers with both ids; GET /messages/:id shows it', async () => {
    const t = await setup();
    const res = await t.call('POST', '/api/v2/messages', {
      instanceId: t.id,
      to: '+1 555 777 0001',
      text: 'Your order shipped',
    });
    expect(res.status).toBe(200);
    expect(fakes.evo.sent.map((s) => [s.number, s.text])).toEqual([['15557770001', 'Your order shipped']]);
    expect(res.body.data).toEqual({
      messageId: expect.any(String),
      externalMessageId: fakes.evo.sent[0].id,
      status: 'sent',
    });
    const got = await t.call('GET', `/api/v2/messages/${res.body.data.messageId}`);
    expect(got.status).toBe(200);
    expect(got.body.data).toMatchObject({
      direction: 'outbound',
      status: 'completed',
      text: 'Your order shipped',
      externalMessageId: fakes.evo.sent[0].id,
      instanceId: t.id,
    });
    // An inbound message is readable the same way (by its trace id).
    const inbound = await t.post(upsert('in-1', 'thanks!', '15557770001'));
    await fakes.evo.waitForSent(2);
    const m = await t.call('GET', `/api/v2/messages/${inbound.body.trace_id}`);
    expect(m.body.data).toMatchObject({
      direction: 'inbound',
      text: 'thanks!',
      externalMessageId: 'in-1',
      from: { name: 'Gus', phone: '+15557770001' },
    });
    expect((await t.call('GET', '/api/v2/messages/unknown')).status).toBe(404);
    // Sends are events; once the number is a known person, a send to it is on their timeline.
    await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: '15557770001', text: 'follow-up' });
    const sentEvents = async () => (
      t.gw.events.flush(), (await t.call('GET', '/api/v2/events?eventType=message.sent')).body.items
    );
    const end = Date.now() + 3000;
    while ((await sentEvents()).length < 3 && Date.now() < end) await Bun.sleep(5);
    const events = await sentEvents();
    expect(events.map((e: any) => `${e.payload.source}:${e.text}`)).toEqual([
      'api:follow-up',
      'agent:echo: thanks!',
      'api:Your order shipped',
    ]);
    expect(events[0].personId).toBe(events[1].personId);
    expect(events[0].personId).toBeTruthy();
    expect(events[2].personId).toBeNull();
    await t.close();
  });

  test('a send to a chat whose agent reply is still being written leaves after that reply', async () => {
    const t = await setup();
    fakes.agent.setBehaviour({ latencyMs: 150 });
    await t.post(upsert('o-1', 'question', '15557770002'));
    const started = Date.now();
    const res = await t.call('POST', '/api/v2/messages', {
      instanceId: 'bot',
      to: '15557770002',
      text: 'operator note',
    });
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(fakes.evo.sentTo('15557770002')).toEqual(['echo: question', 'operator note']);
    // And a send queued before the next message goes first.
    const send = t.call('POST', '/api/v2/messages', { instanceId: 'bot', to: '15557770002', text: 'first' });
    await Bun.sleep(5);
    await t.post(upsert('o-2', 'second', '15557770002'));
    expect((await send).status).toBe(200);
    await fakes.evo.waitForSent(4);
    expect(fakes.evo.sentTo('15557770002')).toEqual(['echo: question', 'operator note', 'first', 'echo: second']);
    await t.close();
  });

  test('a send still queued when the wait ends answers 202 pending with its id; it is sent later, in order', async () => {
    const t = await setup();
    t.gw.messages = new MessageService(t.gw.db, t.gw.pipeline, { waitMs: 50 });
    fakes.agent.setBehaviour({ latencyMs: 400 });
    await t.post(upsert('q-1', 'slow question', '15557770005'));
    const res = await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: '15557770005', text: 'queued note' });
    expect(res.status).toBe(202);
    expect(res.body.data).toEqual({ messageId: expect.any(String), externalMessageId: null, status: 'pending' });
    expect(fakes.evo.sentTo('15557770005')).toEqual([]);
    await fakes.evo.waitForSent(2);
    expect(fakes.evo.sentTo('15557770005')).toEqual(['echo: slow question', 'queued note']);
    const end = Date.now() + 3000;
    let got = await t.call('GET', `/api/v2/messages/${res.body.data.messageId}`);
    while (got.body.data.status !== 'completed' && Date.now() < end)
      got = (await Bun.sleep(10), await t.call('GET', `/api/v2/messages/${res.body.data.messageId}`));
    expect(got.body.data).toMatchObject({ status: 'completed', externalMessageId: expect.any(String) });
    await t.close();
  });

  test('Idempotency-Key: retries (also concurrent) return the first result and send once', async () => {
    const t = await setup();
    const body = { instanceId: t.id, to: '15557770003', text: 'pay your bill' };
    const h = { 'idempotency-key': 'bill-2025-01' };
    const [a, b] = await Promise.all([
      t.call('POST', '/api/v2/messages', body, h),
      t.call('POST', '/api/v2/messages', body, h),
    ]);
    const c = await t.call('POST', '/api/v2/messages', body, h);
    for (const r of [a, b, c]) expect(r.status).toBe(200);
    expect(b.body.data).toEqual(a.body.data);
    expect(c.body.data).toEqual(a.body.data);
    expect(fakes.evo.sent.length).toBe(1);
    // Without the header every request is a new message.
    await t.call('POST', '/api/v2/messages', body);
    await t.call('POST', '/api/v2/messages', body);
    expect(fakes.evo.sent.length).toBe(3);
    await t.close();
  });

  test("a channel failure is 502 CHANNEL_ERROR with the channel's reason; its retry answers the same", async () => {
    const t = await setup();
    fakes.evo.fail('sendText', 400, 1);
    const h = { 'idempotency-key': 'will-fail' };
    const res = await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: '15557770004', text: 'hello' }, h);
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('CHANNEL_ERROR');
    // The channel's status and our reason; the remote body ('scripted failure 400') is never echoed (#26).
    expect(res.body.error.message).toContain('HTTP 400');
    expect(res.body.error.details.reason).toContain('HTTP 400');
    expect(JSON.stringify(res.body)).not.toContain('scripted failure');
    const again = await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: '15557770004', text: 'hello' }, h);
    expect(again.status).toBe(502);
    expect(again.body.error.details.messageId).toBe(res.body.error.details.messageId);
    expect(fakes.evo.calls.filter((c) => c.route === 'sendText').length).toBe(1);
    const got = await t.call('GET', `/api/v2/messages/${res.body.error.details.messageId}`);
    expect(got.body.data.status).toBe('failed');
    t.gw.events.flush();
    expect((await t.call('GET', '/api/v2/events?eventType=message.failed')).body.items).toHaveLength(1);
    await t.close();
  });

  test("media and reaction reach the channel's media and reaction calls", async () => {
    const t = await setup();
    const media = await t.call('POST', '/api/v2/messages/media', {
      instanceId: t.id,
      to: '15557770005',
      mediaType: 'image',
      mediaUrl: 'https://example.com/a.png',
      caption: 'the chart',
    });
    expect(media.status).toBe(200);
    const mc = fakes.evo.calls.find((c) => c.route === 'sendMedia')!;
    expect(mc.body).toMatchObject({
      number: '15557770005',
      mediatype: 'image',
      media: 'https://example.com/a.png',
      caption: 'the chart',
    });
    expect(media.body.data.externalMessageId).toBeTruthy();
    const reaction = await t.call('POST', '/api/v2/messages/reaction', {
      instanceId: t.id,
      to: '15557770005',
      messageId: 'WAMSG1',
      emoji: '👍',
    });
    expect(reaction.status).toBe(200);
    expect(reaction.body.success).toBe(true);
    const rc = fakes.evo.calls.find((c) => c.route === 'sendReaction')!;
    expect(rc.body).toMatchObject({ key: { id: 'WAMSG1', remoteJid: '15557770005@s.whatsapp.net' }, reaction: '👍' });
    expect(fakes.evo.sent.length).toBe(0); // no stray text messages
    const both = await t.call('POST', '/api/v2/messages/media', {
      instanceId: t.id,
      to: '15557770005',
      mediaType: 'image',
      mediaUrl: 'https://e.com/x',
      mediaBase64: 'AAAA',
    });
    expect(both.status).toBe(400);
    await t.close();
  });

  test('v1 send-text accepts phone_number or number', async () => {
    const t = await setup();
    const a = await t.call('POST', '/api/v1/instance/bot/send-text', {
      phone_number: '+15557770006',
      text: 'v1 hello',
    });
    expect(a.status).toBe(200);
    expect(a.body).toEqual({
      success: true,
      message_id: expect.any(String),
      external_message_id: fakes.evo.sent[0].id,
      status: 'sent',
    });
    const b = await t.call('POST', '/api/v1/instance/bot/send-text', { number: '15557770006', text: 'v1 again' });
    expect(b.status).toBe(200);
    expect(fakes.evo.sentTo('15557770006')).toEqual(['v1 hello', 'v1 again']);
    expect((await t.call('POST', '/api/v1/instance/bot/send-text', { text: 'no number' })).status).toBe(400);
    expect((await t.call('POST', '/api/v1/instance/ghost/send-text', { number: '1555', text: 'x' })).status).toBe(404);
    await t.close();
  });

  test('validation, scopes and instance-bound keys', async () => {
    const t = await setup();
    const bad = await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: 'not a number', text: 'x' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.details.field).toBe('to');
    expect((await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: '15557770007' })).status).toBe(400);
    const reader = t.gw.keys.create({ name: 'reader', scopes: ['messages:read'] }).key;
    expect(
      (
        await t.call(
          'POST',
          '/api/v2/messages',
          { instanceId: t.id, to: '15557770007', text: 'x' },
          { 'x-api-key': reader },
        )
      ).status,
    ).toBe(403);
    const other = await t.call('POST', '/api/v1/instances', {
      name: 'other',
      evolution_url: fakes.evo.url,
      evolution_key: fakes.evo.apikey,
      agent_api_url: fakes.agent.url,
    });
    const otherId = (await t.call('GET', `/api/v2/instances/${other.body.name}`)).body.data.id;
    const bound = t.gw.keys.create({ name: 'bound', scopes: ['messages:*'], instanceIds: [otherId] }).key;
    expect(
      (
        await t.call(
          'POST',
          '/api/v2/messages',
          { instanceId: t.id, to: '15557770007', text: 'x' },
          { 'x-api-key': bound },
        )
      ).status,
    ).toBe(404);
    const sent = await t.call('POST', '/api/v2/messages', { instanceId: t.id, to: '15557770007', text: 'mine' });
    expect(
      (await t.call('GET', `/api/v2/messages/${sent.body.data.messageId}`, undefined, { 'x-api-key': bound })).status,
    ).toBe(404);
    expect(fakes.evo.sent.map((s) => s.text)).toEqual(['mine']);
    await t.close();
  });
});
