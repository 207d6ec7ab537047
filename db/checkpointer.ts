// Moves WAL checkpoints off the event loop. With SQLite's automatic checkpoint, the commit that
// crosses 1000 WAL pages copies them into the database file and waits for two fsyncs on the
// gateway's only JS thread (measured: a quarter of the pipeline's throughput on this disk).
// Here the main connection never checkpoints; a worker thread with its own connection runs
// PASSIVE checkpoints (they never block writers or readers), and the next writer restarts the
// WAL from its beginning once every frame is in the database file. If the worker fails, the main
// connection goes back to automatic checkpoints so the WAL can never grow without bound.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';

export const CHECKPOINT_INTERVAL_MS = 100;
const AUTO_CHECKPOINT_PAGES = 1000; // SQLite's default

export interface Checkpointer {
  /** Stops the worker (the last connection's close checkpoints what is left). */
  stop(): Promise<void>;
}

/** Starts the background checkpointer for a file database; `null` for in-memory ones. */
export function startCheckpointer(db: Database, path: string, log?: Pick<Logger, 'warn'>, intervalMs = CHECKPOINT_INTERVAL_MS): Checkpointer | null {
  if (!path || path === ':memory:') return null;
  db.exec('PRAGMA wal_autocheckpoint = 0');
  const worker = new Worker(new URL('./checkpoint-worker.ts', import.meta.url).href);
  let stopping = false;
  const fallBack = (why: string) => {
    if (stopping) return;
    stopping = true;
    log?.warn({ why }, 'background WAL checkpointer stopped: the database checkpoints on commit again');
    try {
      db.exec(`PRAGMA wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    } catch {
      // closed already
    }
  };
  worker.addEventListener('error', (e) => fallBack(String((e as ErrorEvent).message ?? e)));
  worker.addEventListener('close', () => fallBack('worker exited'));
  worker.addEventListener('message', (e: MessageEvent) => {
    if ((e.data as { error?: string })?.error) {
      fallBack((e.data as { error: string }).error);
      worker.terminate();
    }
  });
  worker.postMessage({ path, intervalMs });
  (worker as unknown as { unref(): void }).unref(); // never keeps the process alive
  return {
    async stop() {
      if (stopping) return;
      stopping = true;
      const closed = new Promise<void>((resolve) => worker.addEventListener('close', () => resolve(), { once: true }));
      worker.terminate();
      await Promise.race([closed, Bun.sleep(1000)]);
    },
  };
}
