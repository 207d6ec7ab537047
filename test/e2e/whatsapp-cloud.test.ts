// WhatsApp Cloud API end to end: a webhook signed the way Meta signs it → one agent call → one send
// to the Graph API stand-in; a forged one → nothing at all; Meta's `read` status for that reply
// shows on the message's trace and on the reply's outbox row.
import { afterEach, expect, test } from 'bun:test';
import {
  type CloudSetup,
  metaSignature,
  setupCloud,
  statusWebhook,
  textWebhook,
} from '../channels/whatsapp-cloud/setup.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { until } from '../fixtures.ts';

let s: CloudSetup | null = null;
let agent: FakeAgent | null = null;
afterEach(async () => {
  await s?.close();
  await agent?.stop();
  s = null;
  agent = null;
});

test('signed webhook → agent → Graph API send; forged → nothing; read status on the trace', async () => {
  agent = startFakeAgent({ protocol: 'json', reply: (m) => `You said: ${m}` });
  s = await setupCloud({ agent });

  // Forged: signed with another secret. Nothing is stored, asked or sent.
  const forged = JSON.stringify(textWebhook('wamid.E2E-FORGED', 'transfer all the money'));
  const refused = await s.post(forged, { signature: metaSignature(forged, 'attacker-secret') });
  expect(refused.status).toBe(401);

  // Signed like Meta: acked after the durable write, answered by the agent, sent through the Graph API.
  const res = await s.post(textWebhook('wamid.E2E-0001', 'Does it come in blue?'));
  expect(res.status).toBe(200);
  expect(res.body.status).toBe('received');
  const traceId = res.body.trace_id as string;
  await until(() => s!.graph.sent.length >= 1, 8000, 'reply sent');
  await Bun.sleep(100);
  expect(agent.requests).toHaveLength(1);
  expect(agent.requests[0]!.message).toBe('Does it come in blue?');
  expect(s.graph.sent).toHaveLength(1);
  const reply = s.graph.sent[0]!;
  expect(reply.body).toMatchObject({
    to: '16505551234',
    type: 'text',
    text: { body: 'You said: Does it come in blue?' },
  });
  expect(s.inboxRows()).toBe(1);

  // Meta reports the reply delivered, then read.
  await until(async () => (await s!.t.call('GET', `/api/v2/traces/${traceId}`)).body.data.status === 'completed', 8000);
  expect((await s.post(statusWebhook(reply.id, 'delivered'))).status).toBe(200);
  expect((await s.post(statusWebhook(reply.id, 'read'))).status).toBe(200);
  const trace = (await s.t.call('GET', `/api/v2/traces/${traceId}`)).body.data;
  const names = trace.steps.map((x: { step: string }) => x.step);
  expect(names).toContain('cloud_api_called');
  expect(names.slice(-2)).toEqual(['delivery_delivered', 'delivery_read']);
  expect(trace.steps.at(-1).details.platform_message_id).toBe(reply.id);
  const row = s.t.gw.db
    .query<{ delivery_status: string }, [string]>('SELECT delivery_status FROM outbox WHERE platform_message_id = ?')
    .get(reply.id)!;
  expect(row.delivery_status).toBe('read');

  // Still exactly one agent call and one send.
  expect(agent.requests).toHaveLength(1);
  expect(s.graph.sent).toHaveLength(1);
});
