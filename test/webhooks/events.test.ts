// Which events reach the outbox, and with what: pauses and resumes are written in the pause's own
// transaction; instance status records become instance.status; the data carries REST ids.
import { afterEach, describe, expect, test } from 'bun:test';
import { webhookEventFor, webhookEventsFor } from '../../src/webhooks/index.ts';
import { createTestGateway } from '../helpers.ts';
import { type Receiver, startReceiver, until } from './receiver.ts';

let t: ReturnType<typeof createTestGateway> | null = null;
let rx: Receiver | null = null;
afterEach(async () => {
  await t?.close();
  rx?.stop();
  t = null;
  rx = null;
});

describe('events into the outbox', () => {
  test('conversation.paused and conversation.resumed, in order, with the ids of the pauses API', async () => {
    t = createTestGateway();
    t.gw.webhooks.start();
    rx = startReceiver();
    const inst = (await t.call('POST', '/api/v2/instances', { name: 'alpha', channel: 'api' })).body.data;
    const sub = await t.call('POST', '/api/v2/webhooks', {
      url: rx.url,
      events: ['conversation.paused', 'conversation.resumed'],
    });
    rx.secrets = [sub.body.data.secret];
    t.gw.access.pause(inst.id, '5511999#t1', 'stop_keyword', null);
    const pauses = await t.call('GET', '/api/v2/access/pauses');
    const conversationId = pauses.body.items[0].conversationId;
    expect((await t.call('DELETE', `/api/v2/access/pauses/${conversationId}`)).status).toBe(200);
    const receiver = rx;
    await until(() => receiver.got.length === 2, 5000, 'pause and resume');
    expect(rx.got.map((d) => d.type)).toEqual(['conversation.paused', 'conversation.resumed']);
    expect(rx.got[0].data).toMatchObject({
      instanceId: inst.id,
      instanceName: 'alpha',
      conversationId,
      chatKey: '5511999/t1',
      reason: 'stop_keyword',
      until: null,
    });
    expect(rx.got[1].data).toMatchObject({ instanceId: inst.id, conversationId });
    // Resuming a conversation that is not paused is no event.
    expect(t.gw.access.resume(inst.id, '5511999#t1')).toBe(false);
    expect(t.gw.webhooks.outbox.list(sub.body.data.id, { limit: 10 })).toHaveLength(2);
  });

  test('a pause write that fails writes no delivery (one transaction)', async () => {
    t = createTestGateway();
    const inst = (await t.call('POST', '/api/v2/instances', { name: 'alpha', channel: 'api' })).body.data;
    const sub = await t.call('POST', '/api/v2/webhooks', { url: 'https://x.example/' });
    t.gw.access.onPauseChange(() => {
      throw new Error('boom');
    });
    expect(() => t!.gw.access.pause(inst.id, 'chat', 'stop_keyword', null)).toThrow('boom');
    expect(t.gw.webhooks.outbox.list(sub.body.data.id, { limit: 10 })).toHaveLength(0);
    expect(t.gw.access.pauseOf(inst.id, 'chat')).toBeNull();
  });

  test('instance status records become instance.status; message records carry REST ids', () => {
    const base = {
      id: 'e1',
      channel: 'discord',
      instanceId: 'i1',
      personId: 'p1',
      conversationId: null,
      traceId: null,
      contentType: null,
      text: null,
      createdAt: '2025-01-01T00:00:00.000Z',
    };
    expect(
      webhookEventFor({ ...base, type: 'instance.qr', payload: { instanceName: 'bot', reason: null } }),
    ).toMatchObject({
      type: 'instance.status',
      msgId: 'msg_e1',
      orderKey: 'instance:i1',
      data: { status: 'qr', instanceName: 'bot', instanceId: 'i1', channel: 'discord' },
    });
    expect(
      webhookEventFor({ ...base, type: 'instance.logged_out', payload: { instanceName: 'bot', reason: 'gone' } })?.data,
    ).toMatchObject({ status: 'logged_out', reason: 'gone' });
    const m = webhookEventFor({
      ...base,
      type: 'message.failed',
      conversationId: 'c1',
      traceId: 't1',
      text: 'hi',
      payload: { error: 'refused' },
    });
    expect(m).toMatchObject({
      type: 'message.failed',
      orderKey: 'c1',
      data: {
        eventId: 'e1',
        traceId: 't1',
        messageId: 't1',
        conversationId: 'c1',
        personId: 'p1',
        text: 'hi',
        error: 'refused',
      },
    });
    expect(webhookEventFor({ ...base, type: 'something.else', payload: null })).toBeNull();
    // An inbound message that was dead-lettered: received, then failed (its own webhook-id).
    const dead = webhookEventsFor({
      ...base,
      type: 'message.received',
      conversationId: 'c1',
      traceId: 't2',
      payload: { status: 'dead_lettered', direction: 'inbound' },
    });
    expect(dead.map((w) => [w.type, w.msgId, w.orderKey])).toEqual([
      ['message.received', 'msg_e1', 'c1'],
      ['message.failed', 'msg_e1_failed', 'c1'],
    ]);
    expect(dead[1].data).toMatchObject({ traceId: 't2', status: 'dead_lettered' });
    expect(
      webhookEventsFor({ ...base, type: 'message.received', payload: { status: 'completed' } }).map((w) => w.type),
    ).toEqual(['message.received']);
  });
});
