// GET /api/v2/channels: the channel kinds with library version and capabilities.
import { describe, expect, test } from 'bun:test';
import { createTestGateway } from '../../helpers.ts';

describe('channels', () => {
  test('lists every kind with version and capabilities; one by id; unknown is 404; needs instances:read', async () => {
    const t = createTestGateway();
    const list = await t.call('GET', '/api/v2/channels');
    expect(list.status).toBe(200);
    expect(list.body.items.map((c: any) => c.id)).toEqual([
      'whatsapp-evolution',
      'whatsapp-baileys',
      'whatsapp-cloud',
      'discord',
      'slack',
      'telegram',
      'api',
      'webchat',
    ]);
    const discord = list.body.items.find((c: any) => c.id === 'discord');
    expect(discord.version).toBe('14.28.1');
    expect(discord.capabilities).toMatchObject({
      maxText: 2000,
      edit: true,
      threads: true,
      reactions: true,
      pairing: 'token',
    });
    // The instance fields, as the console's form reads them.
    const token = discord.fields.find((f: any) => f.name === 'discordBotToken');
    expect(token).toMatchObject({ v1Name: 'discord_bot_token', type: 'secret', secret: true, required: true });
    expect(token.form.label).toBe('Bot token');
    expect(discord.fields.find((f: any) => f.name === 'discordApiUrl')).toMatchObject({ env: 'DISCORD_API_URL' });
    const baileys = (await t.call('GET', '/api/v2/channels/whatsapp-baileys')).body.data;
    expect(baileys.version).toBe('7.0.0-rc14');
    expect(baileys.capabilities.pairing).toBe('qr+code');
    expect(baileys.capabilities.media).toContain('sticker');
    expect(baileys.instances).toBe(0);
    const telegram = (await t.call('GET', '/api/v2/channels/telegram')).body.data;
    expect(telegram).toMatchObject({ name: 'Telegram', version: '1.46.0', capabilities: { maxText: 4096 } });
    expect(telegram.fields.find((f: any) => f.name === 'telegramApiUrl')).toMatchObject({ env: 'TELEGRAM_API_URL' });
    expect((await t.call('GET', '/api/v2/channels/signal')).status).toBe(404);
    const sender = t.gw.keys.create({ name: 'sender', scopes: ['messages:send'] }).key;
    expect((await t.call('GET', '/api/v2/channels', undefined, { 'x-api-key': sender })).status).toBe(403);
    await t.close();
  });
});
