// The v1 setup guide's walkthrough, with the guide's own request bodies, against stand-ins for
// Evolution and the "Leo adapter": create an instance whose agent_api_url is a base URL
// (http://localhost:8887 in the guide), post the guide's webhook, and see the agent called at
// /api/agent/chat with the guide's body, the reply sent through Evolution's sendText, and the
// trace with the guide's steps.
import { afterAll, describe, expect, test } from 'bun:test';
import { until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVOLUTION-KEY-REDACTED' },
  agent: { protocol: 'json', reply: () => 'I am Leo, your AI assistant.' },
});
const t = createTestGateway();
afterAll(() => t.close());

describe('v1 setup guide, end to end', () => {
  test('create with a base agent URL → webhook → agent at /api/agent/chat → sendText → traces', async () => {
    await t.gw.start();
    const agentBase = new URL(fakes.agent.url).origin; // no path, as "http://localhost:8887"
    const created = await t.call('POST', '/api/v1/instances', {
      name: 'whatsapp-leo-bot',
      evolution_url: fakes.evo.url,
      evolution_key: 'EVOLUTION-KEY-REDACTED',
      agent_api_url: agentBase,
      agent_api_key: 'leo-adapter-key-2025',
      default_agent: 'leo-adapter',
      agent_timeout: 120,
      is_active: true,
      is_default: false,
    });
    expect(created.status).toBe(201);
    expect(created.body.agent_api_url).toBe(agentBase);
    const token = new URL(created.body.webhook_url).searchParams.get('token')!;

    // The guide's simulated Evolution webhook, verbatim.
    const hook = await t.call(
      'POST',
      `/webhook/evolution/whatsapp-leo-bot?token=${token}`,
      {
        event: 'messages.upsert',
        data: {
          key: { remoteJid: '919391189719@s.whatsapp.net', fromMe: false, id: 'test_pavan_postman_001' },
          messageTimestamp: 1765375800,
          pushName: 'Pavan',
          status: 'PENDING',
          message: { conversation: 'give me a java code to check greatest of 3 numbers ' },
        },
      },
      { 'x-api-key': '' },
    );
    expect(hook.status).toBe(200);
    expect(hook.body.status).toBe('received');

    await until(() => fakes.evo.calls.some((c) => c.route === 'sendText'));
    const call = fakes.agent.requests[0]!;
    expect(call.path).toBe('/api/agent/chat');
    expect(call.headers['x-api-key']).toBe('leo-adapter-key-2025');
    expect(call.body).toMatchObject({
      user_id: expect.stringContaining('919391189719'),
      session_id: expect.any(String),
      session_name: expect.any(String),
      message: 'give me a java code to check greatest of 3 numbers ',
    });
    const send = fakes.evo.calls.find((c) => c.route === 'sendText')!;
    expect(send.path).toBe('/message/sendText/whatsapp-leo-bot');
    expect(send.body).toMatchObject({
      number: expect.stringContaining('919391189719'),
      text: 'I am Leo, your AI assistant.',
    });

    await until(async () => (await t.call('GET', '/api/v1/traces')).body.traces[0]?.status === 'completed');
    const trace = (await t.call('GET', '/api/v1/traces')).body.traces[0];
    expect(trace.message_content).toBe('give me a java code to check greatest of 3 numbers ');
    expect(trace.response_content).toBe('I am Leo, your AI assistant.');
    const steps = trace.steps.map((s: { step: string }) => s.step);
    expect(steps).toEqual(
      expect.arrayContaining(['webhook_received', 'instance_validated', 'access_control_checked', 'agent_called']),
    );
    expect(trace.steps.find((s: { step: string }) => s.step === 'instance_validated')).toMatchObject({
      status: 'success',
      instance_name: 'whatsapp-leo-bot',
    });
  });
});

describe("the guide's .env: EVOLUTION_API_URL / EVOLUTION_API_KEY", () => {
  test('a v1 create without Evolution fields takes them and is an Evolution instance', async () => {
    const g = createTestGateway({ EVOLUTION_API_URL: 'http://127.0.0.1:9/evo', EVOLUTION_API_KEY: 'ENV-EVO-KEY' });
    try {
      const res = await g.call('POST', '/api/v1/instances', {
        name: 'env-evo',
        agent_api_url: 'http://127.0.0.1:9',
        agent_timeout: 60,
      });
      expect(res.status).toBe(201);
      expect(res.body.channel).toBe('whatsapp-evolution');
      expect(res.body.evolution_url).toBe('http://127.0.0.1:9/evo');
      expect(res.body.evolution_key).not.toBe('ENV-EVO-KEY'); // masked like any secret
      const stored = g.gw.instances.getByName('env-evo')!;
      expect(stored.config.evolution_key).toBe('ENV-EVO-KEY');
      // A body's own value wins; only the missing one comes from the environment.
      const own = await g.call('POST', '/api/v1/instances', {
        name: 'own-url',
        evolution_url: 'http://127.0.0.1:9/own',
      });
      expect(own.status).toBe(201);
      expect(own.body.evolution_url).toBe('http://127.0.0.1:9/own');
      expect(g.gw.instances.getByName('own-url')!.config.evolution_key).toBe('ENV-EVO-KEY');
      // Another channel's fields (or an explicit channel) are left alone.
      const discord = await g.call('POST', '/api/v1/instances', { name: 'dc', discord_bot_token: 'tok.en.value' });
      expect(discord.body.channel).toBe('discord');
      expect(g.gw.instances.getByName('dc')!.config.evolution_url).toBeUndefined();
      const baileys = await g.call('POST', '/api/v1/instances', { name: 'wa', channel: 'whatsapp-baileys' });
      expect(baileys.body.channel).toBe('whatsapp-baileys');
    } finally {
      await g.close();
    }
  });

  test('without them such a create is still the Baileys fallback, and a blank key stops the start', async () => {
    const g = createTestGateway();
    try {
      const res = await g.call('POST', '/api/v1/instances', { name: 'no-env' });
      expect(res.body.channel).toBe('whatsapp-baileys');
    } finally {
      await g.close();
    }
    expect(() => createTestGateway({ EVOLUTION_API_KEY: '   ' })).toThrow(/EVOLUTION_API_KEY/);
    expect(() => createTestGateway({ EVOLUTION_API_URL: 'ftp://x' })).toThrow(/EVOLUTION_API_URL/);
  });
});

describe("the guide's Discord fields", () => {
  test('discord_webhook_url and discord_voice_enabled are accepted and stored; the webhook URL is a masked secret', async () => {
    const g = createTestGateway();
    try {
      const hook = 'https://discordapp.com/api/webhooks/123/SECRET-WEBHOOK-TOKEN';
      const res = await g.call('POST', '/api/v1/instances', {
        name: 'discord-leo-bot',
        discord_bot_token: 'MTk4NjIyNDgzNjI0MDMyMjU4.CXY2_A.ZV',
        discord_client_id: '198622483624032258',
        discord_guild_id: '123456789012345678',
        discord_default_channel_id: '234567890123456789',
        discord_voice_enabled: false,
        discord_slash_commands_enabled: true,
        discord_permissions: 8,
        discord_webhook_url: hook,
        agent_api_url: 'http://127.0.0.1:9',
        agent_api_key: 'leo-adapter-key-2025',
        default_agent: 'leo-adapter',
        agent_timeout: 120,
        is_active: false,
        is_default: false,
      });
      expect(res.status).toBe(201);
      expect(res.body.channel).toBe('discord');
      expect(JSON.stringify(res.body)).not.toContain('SECRET-WEBHOOK-TOKEN');
      expect(g.gw.instances.getByName('discord-leo-bot')!.config).toMatchObject({
        discord_webhook_url: hook,
        discord_voice_enabled: false,
      });
    } finally {
      await g.close();
    }
  });
});
