// Channel webhooks: malformed bodies are 400s (not 500s), a batch says what became of all its
// messages, and unknown instance names are answered like wrong credentials on every channel.
import { describe, expect, test } from 'bun:test';
import { evolutionUpsert } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

async function evolutionHook(env: Record<string, string> = {}) {
  const t = createTestGateway(env);
  const created = await t.call('POST', '/api/v1/instances', {
    name: 'hooked',
    evolution_url: 'http://127.0.0.1:9',
    evolution_key: 'evo-key-0001',
  });
  expect(created.status).toBe(201);
  const token = new URL(created.body.webhook_url).searchParams.get('token')!;
  const post = (body: unknown) => t.call('POST', `/webhook/evolution/hooked?token=${token}`, body, { 'x-api-key': '' });
  return { t, post };
}

describe('Evolution webhook', () => {
  test('an event that is not a string (own toString) is a 400 with the envelope, not a 500', async () => {
    const { t, post } = await evolutionHook();
    try {
      for (const raw of [
        '{"event":{"toString":1}}',
        '{"event":{"toString":[],"valueOf":{}},"data":{}}',
        '{"event":7}',
      ]) {
        const res = await post(raw);
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
        expect(res.body.error.details[0].field).toBe('event');
      }
      // Still fine: an unknown string event is ignored with 200.
      const ok = await post({ event: 'presence.update' });
      expect(ok.status).toBe(200);
      expect(ok.body.status).toBe('ignored');
    } finally {
      await t.close();
    }
  });

  test('a batch mostly shed says how many messages were accepted and how many shed', async () => {
    const { t, post } = await evolutionHook({ CONVERSATION_BACKLOG_LIMIT: '2' });
    try {
      const items = [1, 2, 3, 4, 5].map((i) => evolutionUpsert({ id: `BATCH-${i}`, text: `m${i}` }).data);
      const res = await post({ event: 'messages.upsert', data: items });
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('received');
      expect(res.body.message).toBe('2 of 5 messages accepted, 3 shed: conversation backlog full');
      // A single message keeps its answer.
      const one = await post(evolutionUpsert({ id: 'SINGLE-1', text: 'x', phone: '15550000001' }));
      expect(one.body.message).toBe('Message accepted');
    } finally {
      await t.close();
    }
  });
});

describe('Slack webhook', () => {
  test('an unknown instance name answers 401 like a bad signature (as Evolution does), not 404', async () => {
    const t = createTestGateway();
    try {
      const slack = await t.call('POST', '/webhook/slack/no-such-instance', '{"type":"url_verification"}', {
        'x-api-key': '',
      });
      const evo = await t.call(
        'POST',
        '/webhook/evolution/no-such-instance',
        { event: 'messages.upsert' },
        {
          'x-api-key': '',
        },
      );
      expect(evo.status).toBe(401);
      expect(slack.status).toBe(401);
      expect(slack.body.error.code).toBe('UNAUTHORIZED');
    } finally {
      await t.close();
    }
  });
});

describe('blank secrets', () => {
  test('a whitespace-only evolution_key (or other secret) is refused, so it cannot serve as a webhook credential', async () => {
    const t = createTestGateway();
    try {
      for (const body of [
        { name: 'blank-evo', evolution_url: 'http://127.0.0.1:9', evolution_key: '   ' },
        { name: 'blank-discord', channel: 'discord', discord_bot_token: '\t \n' },
      ]) {
        const res = await t.call('POST', '/api/v1/instances', body);
        expect(res.status).toBe(400);
        expect(res.body.error.details.map((d: { problem: string }) => d.problem)).toContain('must not be blank');
      }
      const ok = await t.call('POST', '/api/v1/instances', {
        name: 'good-evo',
        evolution_url: 'http://127.0.0.1:9',
        evolution_key: 'k',
      });
      expect(ok.status).toBe(201);
      const blanked = await t.call('PATCH', '/api/v2/instances/good-evo', { channelConfig: { evolutionKey: ' ' } });
      expect(blanked.status).toBe(400);
      const hook = await t.call(
        'POST',
        '/webhook/evolution/good-evo',
        { event: 'messages.upsert', apikey: ' ' },
        {
          'x-api-key': '',
        },
      );
      expect(hook.status).toBe(401);
    } finally {
      await t.close();
    }
  });
});
