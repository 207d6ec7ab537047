// v1 instances: the setup guide's request bodies, verbatim, and its response shapes.
import { describe, expect, test } from 'bun:test';
import { offlineGatewaysClosedAfterEach } from '../instance-fixtures.ts';

const gateway = offlineGatewaysClosedAfterEach();

// "Create WhatsApp Instance with Leo Agent", copied from the v1 setup guide.
const GUIDE_LEO_BODY = `{
  "name": "whatsapp-leo-bot",
  "evolution_url": "https://evolution.example.com",
  "evolution_key": "YOUR_EVOLUTION_KEY",
  "agent_api_url": "https://leo.example.com/leo-portal-agentic-runtime-node-api/v1/workflow-engine/e9f65742-8f61-4a7f-b0d2-71b77c5391e7/stream",
  "agent_api_key": "leo_builtin",
  "default_agent": "leo",
  "agent_timeout": 120,
  "webhook_base64": true,
  "auto_qr": true
}`;

// "Creating Discord Instance", copied from the v1 setup guide.
const GUIDE_DISCORD_BODY = `{
  "name": "discord-leo-bot",
  "discord_bot_token": "MTk4NjIyNDgzNjI0MDMyMjU4.CXY2_A.ZV...",
  "discord_client_id": "198622483624032258",
  "discord_guild_id": "123456789012345678",
  "discord_default_channel_id": "234567890123456789",
  "discord_voice_enabled": false,
  "discord_slash_commands_enabled": true,
  "discord_permissions": 8,
  "agent_api_url": "http://localhost:8887",
  "agent_api_key": "leo-adapter-key-2025",
  "default_agent": "leo-adapter",
  "agent_timeout": 120,
  "is_active": true,
  "is_default": false
}`;

const SLACK_BODY = {
  name: 'slack-bot',
  slack_bot_token: 'xoxb-1111-2222-abcdEFGH',
  slack_signing_secret: '8f14e45fceea167a5a36dedd4bea2543',
  agent_api_url: 'http://localhost:8887',
  agent_timeout: 30,
};

describe('POST /api/v1/instances', () => {
  test("the guide's Leo body, sent verbatim, answers 201 with the guide's instance object and masked secrets", async () => {
    const t = gateway();
    const res = await t.call('POST', '/api/v1/instances', GUIDE_LEO_BODY);
    expect(res.status).toBe(201);
    const b = res.body;
    expect(b).toMatchObject({
      id: 1,
      name: 'whatsapp-leo-bot',
      channel: 'whatsapp-evolution',
      evolution_url: 'https://evolution.example.com',
      whatsapp_instance: 'whatsapp-leo-bot',
      agent_api_url:
        'https://leo.example.com/leo-portal-agentic-runtime-node-api/v1/workflow-engine/e9f65742-8f61-4a7f-b0d2-71b77c5391e7/stream',
      default_agent: 'leo',
      agent_timeout: 120,
      webhook_base64: true,
      auto_qr: true,
      is_active: true,
      is_default: false,
    });
    // Only the last 4 characters of each secret.
    expect(b.evolution_key).toBe('****_KEY');
    expect(b.agent_api_key).toBe('****ltin');
    expect(Date.parse(b.created_at)).not.toBeNaN();
    expect(Date.parse(b.updated_at)).not.toBeNaN();
    const hook = new URL(b.webhook_url);
    expect(`${hook.origin}${hook.pathname}`).toBe('http://localhost/webhook/evolution/whatsapp-leo-bot');
    expect(hook.searchParams.get('token')).toMatch(/^[A-Za-z0-9_-]{24,}$/);
    const text = JSON.stringify(res.body);
    expect(text).not.toContain('YOUR_EVOLUTION_KEY');
    expect(text).not.toContain('leo_builtin');
  });

  test("the guide's Discord body answers 201 with channel discord and a masked token", async () => {
    const t = gateway();
    const res = await t.call('POST', '/api/v1/instances', GUIDE_DISCORD_BODY);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      name: 'discord-leo-bot',
      channel: 'discord',
      discord_client_id: '198622483624032258',
      discord_guild_id: '123456789012345678',
      discord_default_channel_id: '234567890123456789',
      discord_voice_enabled: false,
      discord_slash_commands_enabled: true,
      discord_permissions: 8,
      agent_api_url: 'http://localhost:8887',
      default_agent: 'leo-adapter',
      agent_timeout: 120,
      is_active: true,
      is_default: false,
    });
    expect(res.body.discord_bot_token).toBe('****V...');
    expect(res.body.agent_api_key).toBe('****2025');
    expect(JSON.stringify(res.body)).not.toContain('MTk4NjIyNDgzNjI0MDMyMjU4');
  });

  test('a Slack body infers channel slack; PUBLIC_URL is the webhook base', async () => {
    const t = gateway({ PUBLIC_URL: 'https://gw.example.com/' });
    const res = await t.call('POST', '/api/v1/instances', SLACK_BODY);
    expect(res.status).toBe(201);
    expect(res.body.channel).toBe('slack');
    expect(res.body.slack_bot_token).toBe('****EFGH');
    expect(res.body.slack_signing_secret).toBe('****2543');
    expect(res.body.webhook_url).toStartWith('https://gw.example.com/webhook/slack/slack-bot?token=');
  });

  test('an explicit channel wins over inference (Baileys: no webhook)', async () => {
    const t = gateway();
    const res = await t.call('POST', '/api/v1/instances', {
      name: 'baileys-bot',
      channel: 'whatsapp-baileys',
      auto_qr: true,
    });
    expect(res.status).toBe(201);
    expect(res.body.channel).toBe('whatsapp-baileys');
    expect(res.body.webhook_url).toBeNull();
  });

  test('a duplicate name answers 409 CONFLICT and the first instance is unchanged', async () => {
    const t = gateway();
    expect((await t.call('POST', '/api/v1/instances', GUIDE_LEO_BODY)).status).toBe(201);
    const dup = await t.call('POST', '/api/v1/instances', {
      ...JSON.parse(GUIDE_DISCORD_BODY),
      name: 'whatsapp-leo-bot',
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe('CONFLICT');
    const list = await t.call('GET', '/api/v1/instances');
    expect(list.body).toHaveLength(1);
    expect(list.body[0].channel).toBe('whatsapp-evolution');
  });

  test('agent_timeout must be 1–600 seconds', async () => {
    const t = gateway();
    for (const bad of [0, 601, -5, 1.5, '120s']) {
      const res = await t.call('POST', '/api/v1/instances', { ...JSON.parse(GUIDE_LEO_BODY), agent_timeout: bad });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION_ERROR');
      expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain('agent_timeout');
    }
    for (const ok of [1, 600]) {
      const res = await t.call('POST', '/api/v1/instances', {
        ...JSON.parse(GUIDE_LEO_BODY),
        name: `leo-${ok}`,
        agent_timeout: ok,
      });
      expect(res.status).toBe(201);
      expect(res.body.agent_timeout).toBe(ok);
    }
  });

  test('bad URLs and bad names are rejected', async () => {
    const t = gateway();
    const base = JSON.parse(GUIDE_LEO_BODY);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ evolution_url: 'evolution.example.com' }, 'evolution_url'],
      [{ evolution_url: 'javascript:alert(1)' }, 'evolution_url'],
      [{ agent_api_url: 'ftp://leo.example.com/x' }, 'agent.url'],
      [{ agent_api_url: 'http://' }, 'agent.url'],
      [{ name: 'Whatsapp Leo' }, 'name'],
      [{ name: '-leading-dash' }, 'name'],
      [{ name: 'a' }, 'name'],
      [{ name: 'x'.repeat(64) }, 'name'],
    ];
    for (const [patch, field] of cases) {
      const res = await t.call('POST', '/api/v1/instances', { ...base, ...patch });
      expect(res.status).toBe(400);
      expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
    }
    expect((await t.call('GET', '/api/v1/instances')).body).toEqual([]);
  });
});

describe('list, get, put, delete by name', () => {
  test('full lifecycle', async () => {
    const t = gateway();
    await t.call('POST', '/api/v1/instances', GUIDE_LEO_BODY);
    await t.call('POST', '/api/v1/instances', GUIDE_DISCORD_BODY);

    const list = await t.call('GET', '/api/v1/instances');
    expect(list.status).toBe(200);
    expect(Array.isArray(list.body)).toBe(true);
    expect(list.body.map((i: { name: string }) => i.name).sort()).toEqual(['discord-leo-bot', 'whatsapp-leo-bot']);
    expect(JSON.stringify(list.body)).not.toContain('YOUR_EVOLUTION_KEY');

    const one = await t.call('GET', '/api/v1/instances/whatsapp-leo-bot');
    expect(one.status).toBe(200);
    expect(one.body.evolution_key).toBe('****_KEY');

    const put = await t.call('PUT', '/api/v1/instances/whatsapp-leo-bot', {
      agent_timeout: 300,
      evolution_key: 'NEW-EVOLUTION-KEY-A36A',
    });
    expect(put.status).toBe(200);
    expect(put.body.agent_timeout).toBe(300);
    expect(put.body.evolution_key).toBe('****A36A');
    // Fields not given are unchanged.
    expect(put.body.default_agent).toBe('leo');
    expect(put.body.evolution_url).toBe('https://evolution.example.com');
    expect((await t.call('GET', '/api/v1/instances/whatsapp-leo-bot')).body.agent_timeout).toBe(300);
    // The stored key is the new one (the masked view cannot tell, the row can).
    const stored = t.gw.instances.getByName('whatsapp-leo-bot')!;
    expect(stored.config.evolution_key).toBe('NEW-EVOLUTION-KEY-A36A');

    const badPut = await t.call('PUT', '/api/v1/instances/whatsapp-leo-bot', { agent_timeout: 0 });
    expect(badPut.status).toBe(400);
    expect((await t.call('GET', '/api/v1/instances/whatsapp-leo-bot')).body.agent_timeout).toBe(300);

    const renameClash = await t.call('PUT', '/api/v1/instances/whatsapp-leo-bot', { name: 'discord-leo-bot' });
    expect(renameClash.status).toBe(409);

    const del = await t.call('DELETE', '/api/v1/instances/whatsapp-leo-bot');
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ success: true });
    expect((await t.call('GET', '/api/v1/instances/whatsapp-leo-bot')).status).toBe(404);
    expect((await t.call('DELETE', '/api/v1/instances/whatsapp-leo-bot')).status).toBe(404);
    expect((await t.call('GET', '/api/v1/instances')).body).toHaveLength(1);
  });

  test('only one default instance: setting a second default clears the first', async () => {
    const t = gateway();
    await t.call('POST', '/api/v1/instances', { ...JSON.parse(GUIDE_LEO_BODY), is_default: true });
    const second = await t.call('POST', '/api/v1/instances', { ...JSON.parse(GUIDE_DISCORD_BODY), is_default: true });
    expect(second.body.is_default).toBe(true);
    const defaults = () =>
      t
        .call('GET', '/api/v1/instances')
        .then((r) => r.body.filter((i: { is_default: boolean }) => i.is_default).map((i: { name: string }) => i.name));
    expect(await defaults()).toEqual(['discord-leo-bot']);
    await t.call('PUT', '/api/v1/instances/whatsapp-leo-bot', { is_default: true });
    expect(await defaults()).toEqual(['whatsapp-leo-bot']);
  });
});
