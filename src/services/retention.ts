// Retention: once at start and then hourly, finished messages (with their steps, outbox rows and
// dead letters) older than the trace retention — never younger than the dedupe window — and
// events older than the trace retention are deleted, and so are media items (src/media) with their
// files once no item names them.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import type { InboxStore } from '../../db/inbox-store.ts';
import type { SettingsService } from './settings.ts';

/** The media store's part of retention (src/media/index.ts). */
interface MediaPruner {
  prune(retentionDays: number): { items: number; files: number };
}

const HOUR = 3_600_000;

export class Retention {
  private timer: Timer | null = null;

  constructor(
    private d: {
      db: Database;
      inbox: InboxStore;
      settings: SettingsService;
      clock: Clock;
      log: Logger;
      media?: MediaPruner;
    },
  ) {}

  /** Deletes what is past retention; returns the counts (for tests and the log). */
  run(): { messages: number; events: number; mediaItems: number; mediaFiles: number } {
    const { settings, db, clock } = this.d;
    const traceDays = settings.value<number>('traces.retentionDays');
    const dedupeDays = settings.value<number>('inbox.dedupeRetentionDays');
    const messages = this.d.inbox.prune(Math.max(traceDays, dedupeDays), clock.now());
    const cutoff = new Date(clock.now() - traceDays * 86_400_000).toISOString();
    const events = db.query('DELETE FROM events WHERE created_at < ?').run(cutoff).changes;
    const media = this.d.media?.prune(traceDays) ?? { items: 0, files: 0 };
    if (messages || events || media.items || media.files)
      this.d.log.info(
        { messages, events, mediaItems: media.items, mediaFiles: media.files },
        'retention: deleted old messages, events and media',
      );
    return { messages, events, mediaItems: media.items, mediaFiles: media.files };
  }

  start(): void {
    const tick = () => {
      try {
        this.run();
      } catch (err) {
        this.d.log.error({ err: String(err) }, 'retention run failed');
      }
      this.timer = this.d.clock.setTimeout(tick, HOUR);
    };
    tick();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }
}
