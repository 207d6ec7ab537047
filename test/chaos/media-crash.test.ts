// kill -9 between a message's media download and its agent call (crash point
// after_media_before_agent): the webhook was acked after the durable write, the media item and its
// file are in the store, and after a restart the message reaches the agent once, with a working
// signed URL, without a second download or a second file.

import { Database } from 'bun:sqlite';
import { afterEach, expect, test } from 'bun:test';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { png } from '../media/fixtures.ts';
import { ChaosRun, until } from './harness.ts';

let run: ChaosRun | null = null;
afterEach(async () => {
  await run?.dispose(process.env.CHAOS_KEEP === '1');
  run = null;
});

function mediaFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => readdirSync(join(dir, d.name)));
}

test('after_media_before_agent: crash, restart, the media message is answered once with a working URL', async () => {
  run = new ChaosRun('media');
  await run.standIns();
  const first = await run.start('after_media_before_agent:1');
  await run.createInstance({ webhook_base64: true });

  const body = {
    event: 'messages.upsert',
    instance: 'bot',
    data: {
      key: { remoteJid: '15550001111@s.whatsapp.net', fromMe: false, id: 'CHAOS-IMG-1' },
      pushName: 'Load',
      messageTimestamp: 1765375800,
      message: {
        imageMessage: { mimetype: 'image/jpeg', caption: 'what is in the picture?' },
        base64: Buffer.from(png(11)).toString('base64'),
      },
    },
  };
  const acked = await fetch(`${run.url}/webhook/evolution/bot?token=${run.token}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(acked.status).toBe(200);

  const exit = await Promise.race([first.exited, Bun.sleep(15_000).then(() => null)]);
  expect(exit?.signal).toBe('SIGKILL');
  expect(first.stderr()).toContain('crash point after_media_before_agent reached');
  expect(run.agent.requests).toHaveLength(0);
  const mediaDir = join(run.dir, 'media');
  expect(mediaFiles(mediaDir)).toHaveLength(1);

  await run.start(null);
  await run.settled(1);
  await until(() => run!.agent.requests.length >= 1, 10_000);
  expect(run.agent.requests).toHaveLength(1);
  const content = run.agent.requests[0]!.body.messages[0].content as Array<Record<string, string>>;
  expect(content[0]).toEqual({ type: 'text', text: 'what is in the picture?' });
  const part = content[1]!;
  expect(part).toMatchObject({ type: 'binary', mimeType: 'image/png' });
  const served = await fetch(`${run.url}${new URL(part.url!).pathname}${new URL(part.url!).search}`);
  expect(served.status).toBe(200);
  expect(new Uint8Array(await served.arrayBuffer())).toEqual(png(11));
  await until(() => run!.evo.sent.length >= 1, 10_000);

  expect(mediaFiles(mediaDir)).toHaveLength(1);
  const db = new Database(run.dbPath);
  try {
    expect(db.query<{ n: number }, []>('SELECT COUNT(*) AS n FROM media').get()!.n).toBe(1);
    const fetched = db
      .query<{ n: number }, []>(
        "SELECT COUNT(*) AS n FROM trace_steps WHERE step = 'media_fetched' AND status = 'success'",
      )
      .get()!.n;
    expect(fetched).toBe(1);
    expect(db.query<{ status: string }, []>('SELECT status FROM inbox').get()!.status).toBe('completed');
  } finally {
    db.close();
  }
}, 60_000);
