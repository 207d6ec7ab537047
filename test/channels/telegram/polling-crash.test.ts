// Polling across a kill -9: the real gateway (`bun src/main.ts`, a child process) polls the Bot
// API stand-in and SIGKILLs itself right after an update's inbox write, before its offset is
// committed (crash point after_poll_ingest_before_offset). After the restart Telegram delivers the
// update again; it is a duplicate in the inbox, and the update is answered exactly once.
import { Database } from 'bun:sqlite';
import { afterEach, expect, test } from 'bun:test';
import { CHAOS_KEY, ChaosRun } from '../../chaos/harness.ts';
import { startFakeAgent } from '../../fakes/agents.ts';
import { FakeTelegram } from '../../fakes/telegram/server.ts';
import { ALICE, message, messageUpdate } from '../../fakes/telegram/updates.ts';
import { until } from '../../fixtures.ts';

let run: ChaosRun | null = null;
let tg: FakeTelegram | null = null;
afterEach(async () => {
  await run?.dispose(process.env.CHAOS_KEEP === '1');
  await tg?.stop();
  run = null;
  tg = null;
});

function query<T>(dbPath: string, sql: string): T[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db.query<T, []>(sql).all();
  } finally {
    db.close();
  }
}

test('polling: a kill -9 between the inbox write and the offset commit → redelivered, answered once', async () => {
  tg = new FakeTelegram().start();
  run = new ChaosRun('telegram-polling');
  // The agent answers slowly: the killed process never gets as far as sending.
  run.agent = startFakeAgent({ protocol: 'json', reply: (m) => `echo: ${m}`, latencyMs: 300 });
  const first = await run.start('after_poll_ingest_before_offset:1');

  const res = await fetch(`${run.url}/api/v2/instances`, {
    method: 'POST',
    headers: { 'x-api-key': CHAOS_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'tgpoll',
      channel: 'telegram',
      channelConfig: { telegramBotToken: tg.token, telegramApiUrl: tg.apiUrl, telegramMode: 'polling' },
      agent: { url: run.agent.url, type: 'json', timeoutSeconds: 10 },
    }),
  });
  expect(res.status).toBe(201);
  const update = tg.push(messageUpdate(message('survive the crash')));

  const exit = await Promise.race([first.exited, Bun.sleep(15_000).then(() => null)]);
  expect(exit?.signal).toBe('SIGKILL');
  expect(first.stderr()).toContain('after_poll_ingest_before_offset');
  // Stored, not yet committed as read.
  const rows = () => query<{ provider_message_id: string; status: string }>(run!.dbPath, 'SELECT * FROM inbox');
  expect(rows().map((r) => r.provider_message_id)).toEqual([`${ALICE.id}:${update.message!.message_id}`]);
  expect(query(run.dbPath, 'SELECT * FROM channel_state')).toEqual([]);
  expect(tg.callsOf('sendMessage')).toHaveLength(0);

  const polledBefore = tg.callsOf('getUpdates').length;
  await run.start(null);
  await until(() => tg!.callsOf('sendMessage').length >= 1, 15_000);
  // The restarted poller got the same update again and moved past it.
  await until(
    () =>
      query<{ value: string }>(run!.dbPath, 'SELECT value FROM channel_state')[0]?.value ===
      String(update.update_id + 1),
    10_000,
  );
  const afterRestart = tg.callsOf('getUpdates').slice(polledBefore);
  expect(afterRestart[0].params.offset).toBeUndefined();
  await Bun.sleep(500);

  const sends = tg.callsOf('sendMessage');
  expect(sends).toHaveLength(1);
  expect(sends[0].params).toMatchObject({ chat_id: ALICE.id, text: 'echo: survive the crash' });
  expect(rows()).toHaveLength(1);
  expect(rows()[0].status).toBe('completed');
  // However many times the agent was asked (the killed process may have started a call), it was one turn.
  expect(new Set(run.agent.requests.map((r) => r.idempotencyKey)).size).toBe(1);
  expect(tg.pending).toBe(0);
}, 60_000);
