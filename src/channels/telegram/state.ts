// The polling offset of a Telegram instance, kept in channel_state (migration 021) so that a
// restart asks for the first update not yet in the inbox. Written only after the inbox write.
import type { Database } from 'bun:sqlite';

const OFFSET_KEY = 'telegram.update_offset';

export function readOffset(db: Database, instanceId: string): number | null {
  const row = db
    .query<{ value: string }, [string, string]>('SELECT value FROM channel_state WHERE instance_id = ? AND key = ?')
    .get(instanceId, OFFSET_KEY);
  const n = row ? Number(row.value) : Number.NaN;
  return Number.isSafeInteger(n) ? n : null;
}

export function saveOffset(db: Database, instanceId: string, offset: number): void {
  db.query(
    `INSERT INTO channel_state (instance_id, key, value, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
  ).run(instanceId, OFFSET_KEY, String(offset), new Date().toISOString());
}
