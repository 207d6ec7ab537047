// Moves WAL checkpoints off the event loop. With SQLite's automatic checkpoint, the commit that
// crosses 1000 WAL pages copies them into the database file and waits for two fsyncs on the
// gateway's only JS thread. Here a worker thread with its own connection runs PASSIVE checkpoints
// every 100 ms (they never block writers or readers), and the next writer restarts the WAL from its
// beginning once every frame is in the database file; the main connection checkpoints only as a
// backstop (BACKSTOP_PAGES). If the worker fails, the main connection goes back to SQLite's
// automatic checkpoints every 1000 pages.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';

export const CHECKPOINT_INTERVAL_MS = 100;
const AUTO_CHECKPOINT_PAGES = 1000; // SQLite's default
/**
 * The main connection still checkpoints past this many WAL pages (~40 MiB): under a continuous
 * stream of commits the worker never completes (a PASSIVE checkpoint copies the frames that existed
 * when it started, and the WAL restarts only once every frame is copied), so without a backstop the
 * WAL would grow without bound. The worker has copied most frames by then: the backstop copies the rest.
 */
const BACKSTOP_PAGES = 10_000;
/** After a restart the WAL file is truncated to this size (it would otherwise keep its peak size). */
const WAL_SIZE_LIMIT_BYTES = 64 * 2 ** 20;

export interface Checkpointer {
  /** Stops the worker (the last connection's close checkpoints what is left). */
  stop(): Promise<void>;
}

/** Starts the background checkpointer for a file database; `null` for in-memory ones. */
export function startCheckpointer(
  db: Database,
  path: string,
  log?: Pick<Logger, 'warn'>,
  intervalMs = CHECKPOINT_INTERVAL_MS,
): Checkpointer | null {
  if (!path || path === ':memory:') return null;
  db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
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
