// The media store: bytes in files named by their SHA-256 under the media directory (one file per
// content, however many messages carry it), and one `media` row per item of a message. The type
// of the bytes is sniffed from the bytes (file-type), never taken from the sender. The only writer
// of the `media` table.
import type { Database } from 'bun:sqlite';
import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileTypeFromBuffer } from 'file-type';
import type { MediaKind } from '../core/message.ts';
import { isoNow, newId } from '../services/ids.ts';

export type MediaStatus = 'stored' | 'rejected' | 'failed';

export interface MediaRow {
  id: string;
  instance_id: string;
  trace_id: string;
  direction: 'in' | 'out';
  idx: number;
  status: MediaStatus;
  sha256: string | null;
  type: MediaKind;
  mime_type: string | null;
  size_bytes: number | null;
  filename: string | null;
  caption: string | null;
  voice_note: number;
  error: string | null;
  transcript: string | null;
  transcript_status: 'done' | 'failed' | null;
  created_at: string;
}

/** What the bytes are, from their first bytes. */
export interface Sniffed {
  mime: string;
  kind: MediaKind | null;
}

/** Types never stored: programs. Everything else unknown is kept as application/octet-stream. */
const REFUSED_MIME = new Set([
  'application/x-msdownload',
  'application/vnd.microsoft.portable-executable',
  'application/x-elf',
  'application/x-mach-binary',
  'application/x-executable',
  'application/x-sharedlib',
  'application/java-archive',
  'application/x-apple-diskimage',
  'application/vnd.android.package-archive',
]);

export async function sniff(bytes: Uint8Array): Promise<Sniffed> {
  const t = await fileTypeFromBuffer(bytes);
  if (!t) return { mime: 'application/octet-stream', kind: null };
  // An Ogg container is (in messaging) a voice note or other audio.
  const mime = t.mime === 'application/ogg' ? 'audio/ogg' : t.mime;
  const top = mime.split('/')[0];
  const kind: MediaKind | null =
    top === 'image' ? 'image' : top === 'audio' ? 'audio' : top === 'video' ? 'video' : 'document';
  return { mime, kind };
}

/** A reason the bytes are not stored, or null. */
export function refusal(s: Sniffed): string | null {
  return REFUSED_MIME.has(s.mime) ? `type ${s.mime} is not accepted` : null;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface NewItem {
  instanceId: string;
  traceId: string;
  direction: 'in' | 'out';
  idx: number;
  type: MediaKind;
  filename?: string | null;
  caption?: string | null;
  voiceNote?: boolean;
}

export class MediaStore {
  private q;

  constructor(
    db: Database,
    /** Directory of the files; created on the first write. */
    readonly dir: string,
  ) {
    this.q = {
      get: db.query<MediaRow, [string]>('SELECT * FROM media WHERE id = ?'),
      ofMessage: db.query<MediaRow, [string, string]>(
        'SELECT * FROM media WHERE trace_id = ? AND direction = ? ORDER BY idx',
      ),
      insert: db.query<
        unknown,
        [
          string,
          string,
          string,
          string,
          number,
          string,
          string | null,
          string,
          string | null,
          number | null,
          string | null,
          string | null,
          number,
          string | null,
          string,
        ]
      >(
        `INSERT INTO media (id, instance_id, trace_id, direction, idx, status, sha256, type, mime_type, size_bytes, filename, caption, voice_note, error, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (trace_id, direction, idx) DO NOTHING`,
      ),
      transcript: db.query<unknown, [string | null, string, string]>(
        'UPDATE media SET transcript = ?, transcript_status = ? WHERE id = ?',
      ),
      referenced: db.query<{ n: number }, [string]>('SELECT COUNT(*) AS n FROM media WHERE sha256 = ?'),
      expired: db.query<{ sha256: string | null }, [string]>('DELETE FROM media WHERE created_at < ? RETURNING sha256'),
      allShas: db.query<{ sha256: string }, []>('SELECT DISTINCT sha256 FROM media WHERE sha256 IS NOT NULL'),
      ofMessages: db.query<MediaRow, [string]>(
        'SELECT * FROM media WHERE trace_id IN (SELECT value FROM json_each(?)) ORDER BY trace_id, direction, idx',
      ),
    };
  }

  get(id: string): MediaRow | null {
    return this.q.get.get(id);
  }

  /** The items of one message, in order. */
  ofMessage(traceId: string, direction: 'in' | 'out'): MediaRow[] {
    return this.q.ofMessage.all(traceId, direction);
  }

  /** The items of several messages (one query). */
  ofMessages(traceIds: string[]): MediaRow[] {
    return traceIds.length ? this.q.ofMessages.all(JSON.stringify(traceIds)) : [];
  }

  pathOf(sha256: string): string {
    return join(this.dir, sha256.slice(0, 2), sha256);
  }

  /**
   * Writes the bytes (once per content: an existing file is kept) and records the item. The file
   * is durable (fsync, then rename) before the row commits, so a row never names a missing file.
   * A second call for the same (message, direction, idx) keeps the first row.
   */
  async put(item: NewItem, bytes: Uint8Array, sniffed: Sniffed): Promise<MediaRow> {
    const sha = this.writeFile(bytes);
    return this.record(item, { status: 'stored', sha, mime: sniffed.mime, size: bytes.byteLength, error: null });
  }

  /**
   * The file of these bytes, written once (fsync, then rename): returns its SHA-256. An existing
   * file is touched, so retention (which removes unnamed files by age) leaves it to the item that
   * is about to name it.
   */
  writeFile(bytes: Uint8Array): string {
    const sha = sha256Hex(bytes);
    const path = this.pathOf(sha);
    if (existsSync(path)) {
      const now = new Date();
      try {
        utimesSync(path, now, now);
      } catch {
        // removed meanwhile: written again below
      }
    }
    if (!existsSync(path)) {
      mkdirSync(join(this.dir, sha.slice(0, 2)), { recursive: true, mode: 0o700 });
      const tmp = `${path}.${newId()}.tmp`;
      const fd = openSync(tmp, 'w', 0o600);
      try {
        let at = 0;
        while (at < bytes.byteLength) at += writeSync(fd, bytes, at);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
    }
    return sha;
  }

  /** The bytes of a file by its SHA-256 (staged at ingest), or null. */
  async readFile(sha: string): Promise<Uint8Array | null> {
    if (!/^[0-9a-f]{64}$/.test(sha)) return null;
    const file = Bun.file(this.pathOf(sha));
    return (await file.exists()) ? new Uint8Array(await file.arrayBuffer()) : null;
  }

  /** Records an item that is not stored (rejected or failed), with the reason. */
  recordUnstored(item: NewItem, status: 'rejected' | 'failed', error: string, size?: number, mime?: string): MediaRow {
    return this.record(item, { status, sha: null, mime: mime ?? null, size: size ?? null, error });
  }

  private record(
    item: NewItem,
    f: { status: MediaStatus; sha: string | null; mime: string | null; size: number | null; error: string | null },
  ): MediaRow {
    this.q.insert.run(
      newId(),
      item.instanceId,
      item.traceId,
      item.direction,
      item.idx,
      f.status,
      f.sha,
      item.type,
      f.mime,
      f.size,
      item.filename ?? null,
      item.caption ?? null,
      item.voiceNote ? 1 : 0,
      f.error,
      isoNow(),
    );
    return this.ofMessage(item.traceId, item.direction).find((r) => r.idx === item.idx)!;
  }

  setTranscript(id: string, transcript: string | null, status: 'done' | 'failed'): void {
    this.q.transcript.run(transcript, status, id);
  }

  async read(row: MediaRow): Promise<Uint8Array | null> {
    if (!row.sha256) return null;
    const file = Bun.file(this.pathOf(row.sha256));
    if (!(await file.exists())) return null;
    return new Uint8Array(await file.arrayBuffer());
  }

  /**
   * Deletes the items created before `cutoffIso`, and the files no item names any more that are
   * older than the cutoff too (also those left by a deleted instance, whose rows went with it; a
   * younger file may be staged for a message still waiting in the inbox). Returns the counts.
   */
  prune(cutoffIso: string): { items: number; files: number } {
    const cutoffMs = Date.parse(cutoffIso);
    const items = this.q.expired.all(cutoffIso).length;
    if (!existsSync(this.dir)) return { items, files: 0 };
    const live = new Set(this.q.allShas.all().map((r) => r.sha256));
    let files = 0;
    for (const sub of readdirSync(this.dir, { withFileTypes: true })) {
      if (!sub.isDirectory() || !/^[0-9a-f]{2}$/.test(sub.name)) continue;
      for (const name of readdirSync(join(this.dir, sub.name))) {
        // A temporary file of a write in progress is left alone; a finished one is named by its hash.
        if (!/^[0-9a-f]{64}$/.test(name) || live.has(name)) continue;
        try {
          const path = join(this.dir, sub.name, name);
          if (statSync(path).mtimeMs >= cutoffMs) continue;
          unlinkSync(path);
          files++;
        } catch {
          // gone already
        }
      }
    }
    return { items, files };
  }
}
