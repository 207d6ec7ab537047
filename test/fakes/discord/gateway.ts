// A gateway whose Discord instance runs real discord.js against the local Discord stand-in, for the
// suites that drive Discord through the whole pipeline. Connected when it returns.
import { expect } from 'bun:test';
import { DiscordAdapter } from '../../../src/channels/discord/adapter.ts';
import { until } from '../../fixtures.ts';
import { createTestGateway } from '../../helpers.ts';
import { BOT_USER, type FakeDiscord, GUILD_ID, startFakeDiscord } from './server.ts';

export async function discordThroughGateway(
  agent: { url: string; type: 'json' | 'agui' },
  cleanups: Array<() => Promise<unknown> | unknown>,
  settings: Record<string, unknown> = {},
) {
  const discord: FakeDiscord = await startFakeDiscord({ heartbeatIntervalMs: 300 });
  cleanups.push(() => discord.close());
  const t = createTestGateway(
    { PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' },
    {
      pipeline: {
        factories: {
          discord: (_inst, d) =>
            new DiscordAdapter({
              clock: d.clock,
              waitGuildTimeout: 200,
              clientOptions: { rest: { retries: 1, timeout: 3000 } },
            }),
        },
      },
    },
  );
  cleanups.push(() => t.close());
  await t.gw.start();
  const res = await t.call('POST', '/api/v2/instances', {
    name: 'dc',
    channel: 'discord',
    channelConfig: {
      discordBotToken: discord.token,
      discordClientId: BOT_USER.id,
      discordGuildId: GUILD_ID,
      discordApiUrl: discord.apiUrl,
    },
    agent: { url: agent.url, type: agent.type, timeoutSeconds: 10 },
    settings,
  });
  expect(res.status).toBe(201);
  const id = res.body.data.id as string;
  await until(() => t.gw.instances.get(id)?.status === 'connected', 8000);
  return { ...t, discord, id };
}
