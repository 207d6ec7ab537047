// Worker thread of db/checkpointer.ts: PASSIVE checkpoints of one database file, on a timer.
import { Database } from 'bun:sqlite';

declare const self: Worker;

self.addEventListener('message', (e: MessageEvent) => {
  const { path, intervalMs } = e.data as { path: string; intervalMs: number };
  let db: Database;
  try {
    db = new Database(path, { create: false });
    db.exec('PRAGMA busy_timeout = 1000');
  } catch (err) {
    self.postMessage({ error: `cannot open ${path}: ${String(err)}` });
    return;
  }
  const checkpoint = db.query<{ busy: number; log: number; checkpointed: number }, []>(
    'PRAGMA wal_checkpoint(PASSIVE)',
  );
  setInterval(() => {
    try {
      checkpoint.get();
    } catch (err) {
      self.postMessage({ error: `checkpoint failed: ${String(err)}` });
    }
  }, intervalMs);
});
