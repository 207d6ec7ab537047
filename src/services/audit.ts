// API audit log: one row per authenticated /api request. The request path only appends to an
// in-memory buffer; one transaction per event-loop tick writes the rows and the keys' usage
// counters, so auditing costs the hot path a push, not a disk write.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import { isoNow } from './ids.ts';
import type { KeyService } from './keys.ts';

export interface AuditEntry {
  keyId: string;
  method: string;
  /** Path with the query string, secrets removed (see cleanPath). */
  path: string;
  status: number;
  ip: string | null;
  userAgent: string | null;
  /** Epoch ms. */
  at: number;
}

/** A stored entry: its cursor position and the time as ISO 8601. */
export interface AuditRecord extends Omit<AuditEntry, 'at'> {
  seq: number;
  at: string;
}

/** Query parameters that carry credentials (browsers pass ?apiKey=, webhook URLs ?token=). */
const SECRET_PARAMS = new Set(['apikey', 'api_key', 'token', 'access_token', 'secret', 'key', 'x-api-key']);

/** pathname + query without credential parameters, capped at 2,048 characters. */
export function cleanPath(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.split('?')[0].slice(0, 2048);
  }
  for (const name of [...u.searchParams.keys()]) if (SECRET_PARAMS.has(name.toLowerCase())) u.searchParams.delete(name);
  const q = u.searchParams.toString();
  return (u.pathname + (q ? `?${q}` : '')).slice(0, 2048);
}

const MAX_BUFFER = 5_000;
const PRUNE_EVERY_MS = 60 * 60_000;

export class AuditService {
  private buffer: AuditEntry[] = [];
  private scheduled = false;
  private pruneTimer: Timer | null = null;
  private closed = false;

  constructor(
    private db: Database,
    private keys: Pick<KeyService, 'recordUsage'>,
    private clock: Clock,
    private retentionDays: () => number,
    private log?: Logger,
  ) {}

  /** Buffers one entry; it is written at the end of the current tick. */
  record(e: AuditEntry): void {
    if (this.closed) return;
    this.buffer.push(e);
    if (this.buffer.length >= MAX_BUFFER) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setTimeout(() => this.flush(), 0);
    }
  }

  /** Writes buffered entries and key usage in one transaction. */
  flush(): number {
    this.scheduled = false;
    const batch = this.buffer;
    if (batch.length === 0) return 0;
    this.buffer = [];
    const usage = new Map<string, { count: number; at: number; ip: string | null }>();
    for (const e of batch) {
      const u = usage.get(e.keyId);
      if (!u) usage.set(e.keyId, { count: 1, at: e.at, ip: e.ip });
      else {
        u.count++;
        if (e.at >= u.at) {
          u.at = e.at;
          u.ip = e.ip ?? u.ip;
        }
      }
    }
    try {
      const insert = this.db.query(
        'INSERT INTO audit_log (key_id, method, path, status, ip, user_agent, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      );
      this.db.transaction(() => {
        for (const e of batch) insert.run(e.keyId, e.method, e.path, e.status, e.ip, e.userAgent, isoNow(e.at));
        this.keys.recordUsage(usage);
      })();
    } catch (err) {
      // Never let auditing break requests; a closed database at shutdown lands here too.
      this.log?.error({ err, dropped: batch.length }, 'audit flush failed');
    }
    return batch.length;
  }

  /** A key's audit records, newest first; `beforeSeq` continues a page. */
  list(keyId: string, opts: { beforeSeq?: number; limit?: number } = {}): AuditRecord[] {
    this.flush();
    const limit = opts.limit ?? 50;
    const rows = this.db
      .query<
        {
          seq: number;
          key_id: string;
          method: string;
          path: string;
          status: number;
          ip: string | null;
          user_agent: string | null;
          at: string;
        },
        [string, number, number]
      >('SELECT * FROM audit_log WHERE key_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?')
      .all(keyId, opts.beforeSeq ?? Number.MAX_SAFE_INTEGER, limit);
    return rows.map((r) => ({
      seq: r.seq,
      keyId: r.key_id,
      method: r.method,
      path: r.path,
      status: r.status,
      ip: r.ip,
      userAgent: r.user_agent,
      at: r.at,
    }));
  }

  count(keyId: string): number {
    this.flush();
    return this.db.query<{ n: number }, [string]>('SELECT count(*) AS n FROM audit_log WHERE key_id = ?').get(keyId)!.n;
  }

  /** Deletes records older than the retention setting; returns how many. */
  prune(now = this.clock.now()): number {
    const cutoff = isoNow(now - this.retentionDays() * 86_400_000);
    return this.db.query('DELETE FROM audit_log WHERE at < ?').run(cutoff).changes;
  }

  /** Prunes now and then every hour. */
  start(): void {
    const tick = () => {
      if (this.closed) return;
      try {
        const n = this.prune();
        if (n) this.log?.info({ deleted: n }, 'audit records pruned');
      } catch (err) {
        this.log?.error({ err }, 'audit prune failed');
      }
      this.pruneTimer = this.clock.setTimeout(tick, PRUNE_EVERY_MS);
    };
    tick();
  }

  close(): void {
    this.flush();
    this.closed = true;
    this.pruneTimer?.cancel();
  }
}
