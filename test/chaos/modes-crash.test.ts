// Conversation mode `collect` across kill -9: the real gateway process, the Evolution and agent
// stand-ins, a burst of five messages within two seconds and debounceMs 3000. Killed while the
// window is open (nothing was asked yet), or inside the batch's agent call, the restarted process
// answers the batch once: every fragment completed in one batch, one reply on the channel.
import { Database } from 'bun:sqlite';
import { afterEach, describe, expect, test } from 'bun:test';
import { CHAOS_KEY, ChaosRun } from './harness.ts';

let run: ChaosRun | null = null;
afterEach(async () => {
  await run?.dispose(process.env.CHAOS_KEEP === '1');
  run = null;
});

const CHAT = '15550009999';
const TEXTS = ['hi', 'I need', 'to change', 'my order', 'please'];

async function collectInstance(r: ChaosRun): Promise<void> {
  await r.createInstance();
  const res = await fetch(`${r.url}/api/v2/instances/bot`, {
    method: 'PATCH',
    headers: { 'x-api-key': CHAOS_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ messaging: { mode: 'collect', debounceMs: 3000 } }),
  });
  expect(res.status).toBe(200);
}

/** Five messages to one chat within two seconds. */
async function burst(r: ChaosRun): Promise<void> {
  for (const [i, text] of TEXTS.entries()) {
    await r.deliver(`BURST-${i}`, CHAT, text);
    if (i < TEXTS.length - 1) await Bun.sleep(300);
  }
}

function inboxRows(r: ChaosRun) {
  const db = new Database(r.dbPath);
  try {
    return db
      .query<
        { provider_message_id: string; status: string; batch_id: string | null; response_text: string | null },
        []
      >('SELECT provider_message_id, status, batch_id, response_text FROM inbox ORDER BY seq')
      .all();
  } finally {
    db.close();
  }
}

function expectOneBatch(r: ChaosRun): void {
  const rows = inboxRows(r);
  expect(rows.map((x) => [x.provider_message_id, x.status])).toEqual(TEXTS.map((_, i) => [`BURST-${i}`, 'completed']));
  expect(new Set(rows.map((x) => x.batch_id)).size).toBe(1);
  expect(rows[0]!.batch_id).toMatch(/^b_/);
  // One reply, held by the last fragment.
  expect(rows.filter((x) => x.response_text !== null).map((x) => x.provider_message_id)).toEqual(['BURST-4']);
  expect(r.evo.sent).toHaveLength(1);
  // The agent got the five fragments as consecutive user messages (AG-UI).
  const last = r.agent.requests.at(-1)!;
  expect(last.body.messages.map((m: { content: string }) => m.content)).toEqual(TEXTS);
}

describe('collect mode across kill -9', () => {
  test('killed while the window is open: the restart recomputes it and answers the batch once', async () => {
    run = new ChaosRun('modes-window-open');
    await run.standIns();
    const first = await run.start(null);
    await collectInstance(run);
    await burst(run);
    // The window is open (3 s after the last message): kill -9 now.
    expect(run.agent.requests).toHaveLength(0);
    first.proc.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');

    const second = await run.start(null);
    await run.settled(TEXTS.length, 20_000);
    await Bun.sleep(200);
    await second.stop();
    expect(run.agent.requests).toHaveLength(1);
    expectOneBatch(run);
  }, 40_000);

  test('killed inside the batch’s agent call: the same batch is asked again (same key) and answered once', async () => {
    run = new ChaosRun('modes-agent-call');
    await run.standIns({ deltaDelayMs: 1 });
    const first = await run.start('agent_before_first_delta:1');
    await collectInstance(run);
    await burst(run);
    const exit = await Promise.race([first.exited, Bun.sleep(15_000).then(() => null)]);
    expect(exit?.signal).toBe('SIGKILL');
    expect(first.stderr()).toContain('crash point agent_before_first_delta reached');

    const second = await run.start(null);
    await run.settled(TEXTS.length, 20_000);
    await Bun.sleep(200);
    await second.stop();
    // At most the call that died with the process and the one after the restart, under one key.
    expect(run.agent.requests.length).toBeLessThanOrEqual(2);
    expect(new Set(run.agent.requests.map((q) => q.idempotencyKey)).size).toBe(1);
    expectOneBatch(run);
  }, 40_000);
});
