// Group commit for the pipeline's own writes: every write requested in the same event-loop turn
// (by any conversation) shares one transaction, and each caller resumes only after that commit.
// Under load this turns hundreds of small transactions a second into a few larger ones.
import type { Database } from 'bun:sqlite';

interface Pending {
  write: () => void;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class GroupCommitter {
  private queue: Pending[] = [];
  private scheduled = false;
  /** Transactions committed (for metrics). */
  commits = 0;

  constructor(private db: Database) {}

  commit(write: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ write, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    try {
      this.db.transaction(() => {
        for (const p of batch) p.write();
      })();
      this.commits++;
    } catch {
      // The shared transaction rolled back: one bad write must not fail the others, so each
      // write is retried in a transaction of its own and only its own caller sees its error.
      for (const p of batch) {
        try {
          this.db.transaction(p.write)();
          this.commits++;
          p.resolve();
        } catch (err) {
          p.reject(err);
        }
      }
      return;
    }
    for (const p of batch) p.resolve();
  }
}
