// Configuration replication. Each node keeps its own SQLite file; configuration tables are
// replicated through Redis as whole rows (last writer wins per row):
// - TEMP triggers on this process's connection record the primary key of every local change
//   (writes applied from the cluster switch them off, so nothing echoes);
// - a publisher turns each change into one Lua call: append to `cfg:log`, update the
//   `cfg:snap:<table>` hash (the full current state for nodes that join later), PUBLISH a notice;
// - an applier reads `cfg:log` after each notice (and every pollMs, since pub/sub may lose
//   notices), applies foreign rows with an upsert on the primary key (never REPLACE, whose delete would
//   cascade to the instance's conversations and traces), and tells the services to drop caches.
// Runtime columns (instance status, key usage) stay local and never replicate.
// Every row in Redis (log and snapshot, deletions included) is sealed with the cluster secret
// (AES-256-GCM, bound to table + primary key; see crypto.ts): channel secrets, key hashes and
// WhatsApp login state are never readable in Redis, and a value that does not open with this
// node's secret is logged (without content) and skipped, never applied. cfg:seeded holds the
// secret's fingerprint: a node with another secret is refused at start (checkSecret), and a
// publish never replaces it (CONFIG_PUT fails; the node stops publishing and says so).
import type { Database } from 'bun:sqlite';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { ConfigError } from '../../config.ts';
import type { ClusterKeys } from '../crypto.ts';
import { CONFIG_FOREIGN_SECRET, CONFIG_PUT } from '../lua.ts';

interface TableSpec {
  name: string;
  pk: string[];
  /** Columns that are per-node runtime state. */
  local: string[];
}

const TABLES: TableSpec[] = [
  { name: 'instances', pk: ['id'], local: ['status', 'status_reason'] },
  { name: 'api_keys', pk: ['id'], local: ['last_used_at', 'last_used_ip', 'usage_count'] },
  { name: 'settings', pk: ['key'], local: [] },
  { name: 'access_rules', pk: ['id'], local: [] },
  { name: 'conversation_pauses', pk: ['instance_id', 'chat_key'], local: [] },
  // Outgoing webhook subscriptions (their delivery rows stay with the node that recorded each event).
  { name: 'webhook_subscriptions', pk: ['id'], local: [] },
  // WhatsApp (Baileys) login state: only the shard owner writes it; replicated so that the next
  // owner can reopen the same linked session after a failover instead of asking for a new QR.
  { name: 'whatsapp_auth', pk: ['instance_id', 'kind', 'key_id'], local: [] },
];

export interface ConfigSyncDeps {
  db: Database;
  redis: Redis;
  prefix: string;
  node: string;
  log: Logger;
  keys: ClusterKeys;
  /** Called after foreign rows were applied (tables touched, instance ids touched). */
  applied(tables: Set<string>, instanceIds: Set<string>): void;
  /** Called once when Redis turns out to hold another secret's configuration (this node must step down). */
  foreignSecret?(): void;
}

type Row = Record<string, unknown>;

/** How often local changes are looked for and published (ms). */
const PUBLISH_MS = 100;

export class ConfigSync {
  private tables: Array<TableSpec & { columns: string[] }> = [];
  private lastId = '0-0';
  private publishing = false;
  /** Redis holds another secret's fingerprint (a node with another secret seeded it): nothing is published any more. */
  private refused = false;
  private inFlight: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private publishTimer: ReturnType<typeof setInterval> | null = null;
  readonly counters = { published: 0, applied: 0, rejected: 0 };

  constructor(private d: ConfigSyncDeps) {}

  async start(pollMs: number): Promise<void> {
    const { db } = this.d;
    db.run(
      'CREATE TEMP TABLE IF NOT EXISTS cluster_changes (n INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, pk TEXT NOT NULL)',
    );
    db.run('CREATE TEMP TABLE IF NOT EXISTS cluster_apply (applying INTEGER NOT NULL)');
    if (!db.query('SELECT 1 FROM temp.cluster_apply').get()) db.run('INSERT INTO temp.cluster_apply VALUES (0)');
    for (const t of TABLES) {
      const exists = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t.name);
      if (!exists) continue;
      const columns = db
        .query<{ name: string }, []>(`PRAGMA table_info(${t.name})`)
        .all()
        .map((c) => c.name);
      this.tables.push({ ...t, columns });
      const when = 'WHEN (SELECT applying FROM temp.cluster_apply) = 0';
      const pkOf = (rec: string) => `json_array(${t.pk.map((c) => `${rec}.${c}`).join(', ')})`;
      const replicated = columns.filter((c) => !t.local.includes(c));
      db.run(
        `CREATE TEMP TRIGGER IF NOT EXISTS cs_${t.name}_i AFTER INSERT ON main.${t.name} ${when} BEGIN INSERT INTO temp.cluster_changes (tbl, pk) VALUES ('${t.name}', ${pkOf('NEW')}); END`,
      );
      db.run(
        `CREATE TEMP TRIGGER IF NOT EXISTS cs_${t.name}_u AFTER UPDATE OF ${replicated.join(', ')} ON main.${t.name} ${when} BEGIN INSERT INTO temp.cluster_changes (tbl, pk) VALUES ('${t.name}', ${pkOf('NEW')}); END`,
      );
      db.run(
        `CREATE TEMP TRIGGER IF NOT EXISTS cs_${t.name}_d AFTER DELETE ON main.${t.name} ${when} BEGIN INSERT INTO temp.cluster_changes (tbl, pk) VALUES ('${t.name}', ${pkOf('OLD')}); END`,
      );
    }
    await this.bootstrap();
    this.timer = setInterval(() => void this.pull(), pollMs);
    // Local changes go out soon after they are made: a look at the temp table when there are none.
    this.publishTimer = setInterval(() => void this.publish(), Math.min(PUBLISH_MS, pollMs));
  }

  /**
   * Before anything else at start: a cluster seeded under another secret stops the start
   * (ConfigError); an empty one, or one sealed with this secret, lets it go on.
   */
  async checkSecret(): Promise<void> {
    const seeded = await this.d.redis.get(`${this.d.prefix}cfg:seeded`);
    if (seeded !== null && seeded !== this.d.keys.fingerprint) throw foreignSecretError(this.d.prefix);
  }

  /** A row from Redis: the row, null for a deletion, or undefined when it does not open with this secret (logged, skipped). */
  private openRow(table: string, pk: string, sealed: string, where: string): Row | null | undefined {
    const text = this.d.keys.open(sealed, rowContext(table, pk));
    if (text === null) {
      this.counters.rejected++;
      this.d.log.warn(
        { table, pk, where },
        'cluster: configuration value does not open with this CLUSTER_SECRET (another secret, or altered in Redis); skipped',
      );
      return undefined;
    }
    return JSON.parse(text) as Row | null;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.publishTimer) clearInterval(this.publishTimer);
    this.timer = this.publishTimer = null;
  }

  /** First node of an empty cluster seeds it with its configuration; later nodes adopt the cluster's. */
  private async bootstrap(): Promise<void> {
    const { redis, prefix, db } = this.d;
    const last = (await redis.xrevrange(`${prefix}cfg:log`, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    this.lastId = last[0]?.[0] ?? '0-0';
    const seeded = await redis.get(`${prefix}cfg:seeded`);
    if (!seeded) {
      await this.seed();
      return;
    }
    const tablesTouched = new Set<string>();
    const instanceIds = new Set<string>();
    const snapshot = new Map<string, Map<string, string>>();
    for (const t of this.tables) {
      const h = await redis.hgetall(`${prefix}cfg:snap:${t.name}`);
      snapshot.set(t.name, new Map(Object.entries(h)));
    }
    this.withApply(() => {
      for (const t of this.tables) {
        const snap = snapshot.get(t.name)!;
        // Rows the cluster no longer has (deleted while this node was away) go; the node's own bootstrap key stays.
        for (const r of db.query<Row, []>(`SELECT * FROM ${t.name}`).all()) {
          const pk = JSON.stringify(t.pk.map((c) => r[c]));
          if (snap.has(pk) || (t.name === 'api_keys' && r.is_bootstrap === 1)) continue;
          this.applyRow(t, pk, null);
          tablesTouched.add(t.name);
          if (t.name === 'instances') instanceIds.add(String(r.id));
        }
        for (const [pk, sealed] of snap) {
          const row = this.openRow(t.name, pk, sealed, `cfg:snap:${t.name}`);
          if (!row) continue;
          this.applyRow(t, pk, row);
          tablesTouched.add(t.name);
          if (t.name === 'instances') instanceIds.add(JSON.parse(pk)[0]);
        }
      }
    });
    if (tablesTouched.size) this.d.applied(tablesTouched, instanceIds);
  }

  /** Queues every local configuration row for publishing (an empty cluster takes this node's configuration). */
  private async seed(): Promise<void> {
    const { db, redis, prefix, keys } = this.d;
    for (const t of this.tables) {
      for (const r of db.query<Row, []>(`SELECT * FROM ${t.name}`).all()) {
        db.query('INSERT INTO temp.cluster_changes (tbl, pk) VALUES (?, ?)').run(
          t.name,
          JSON.stringify(t.pk.map((c) => r[c])),
        );
      }
    }
    await this.publish();
    // Seeded also when this node had nothing to publish (an empty configuration is one too), so
    // the secret's fingerprint is there for the next node to check; not while rows still wait.
    if (!db.query('SELECT 1 FROM temp.cluster_changes LIMIT 1').get()) {
      await redis.set(`${prefix}cfg:seeded`, keys.fingerprint, 'NX').catch(() => {});
    }
  }

  private withApply(fn: () => void): void {
    const { db } = this.d;
    db.transaction(() => {
      db.run('UPDATE temp.cluster_apply SET applying = 1');
      try {
        fn();
      } finally {
        db.run('UPDATE temp.cluster_apply SET applying = 0');
      }
    }).immediate();
  }

  private applyRow(t: TableSpec & { columns: string[] }, pkJson: string, row: Row | null): void {
    const { db } = this.d;
    const pk = JSON.parse(pkJson) as unknown[];
    const where = t.pk.map((c) => `${c} = ?`).join(' AND ');
    if (row === null) {
      db.query(`DELETE FROM ${t.name} WHERE ${where}`).run(...(pk as never[]));
      return;
    }
    if (t.name === 'instances') row = this.settleSeq(row);
    const existing = t.local.length
      ? db.query<Row, never[]>(`SELECT ${t.local.join(', ')} FROM ${t.name} WHERE ${where}`).get(...(pk as never[]))
      : null;
    const cols = t.columns.filter((c) => c in row || (existing && c in existing));
    const values = cols.map((c) => (existing && c in existing ? existing[c] : row[c]) as never);
    // Never INSERT OR REPLACE: its delete of the existing row would cascade to the instance's
    // conversations, inbox and traces on this node. Resolve the other unique constraints in favour
    // of the cluster's row first, then upsert on the primary key.
    const pkArgs = pk as never[];
    const notThis = t.pk.map((c) => `${c} != ?`).join(' OR ');
    if (t.name === 'instances') {
      if (row.is_default === 1)
        db.query(`UPDATE instances SET is_default = 0 WHERE is_default = 1 AND (${notThis})`).run(...pkArgs);
      db.query(`DELETE FROM instances WHERE name = ? AND (${notThis})`).run(row.name as never, ...pkArgs);
    } else if (t.name === 'api_keys') {
      db.query(`DELETE FROM api_keys WHERE key_hash = ? AND (${notThis})`).run(row.key_hash as never, ...pkArgs);
    }
    const updates = cols.filter((c) => !t.pk.includes(c)).map((c) => `${c} = excluded.${c}`);
    db.query(
      `INSERT INTO ${t.name} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) ON CONFLICT(${t.pk.join(', ')}) ${updates.length ? `DO UPDATE SET ${updates.join(', ')}` : 'DO NOTHING'}`,
    ).run(...values);
  }

  /**
   * `instances.seq` (the v1 numeric id, unique) is MAX + 1 on the node that creates the instance,
   * so two nodes creating instances at the same moment give both the same seq, and the second row
   * could not be stored anywhere else. The smaller id keeps the seq on every node; the other row
   * takes the next free one here (a local choice, so its v1 id may differ between nodes).
   */
  private settleSeq(row: Row): Row {
    const { db } = this.d;
    const clash = db
      .query<{ id: string }, [number, string]>('SELECT id FROM instances WHERE seq = ? AND id != ?')
      .get(row.seq as number, row.id as string);
    if (!clash) return row;
    // Already here (its clash settled before): it keeps the seq it has, an update does not move it.
    const mine = db.query<{ seq: number }, [string]>('SELECT seq FROM instances WHERE id = ?').get(row.id as string);
    if (mine) return { ...row, seq: mine.seq };
    const next = db.query<{ s: number }, []>('SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM instances').get()!.s;
    if (String(row.id) < clash.id) {
      db.query('UPDATE instances SET seq = ? WHERE id = ?').run(next, clash.id);
      return row;
    }
    return { ...row, seq: next };
  }

  /** Sends local changes to the cluster; a change leaves the local queue only after Redis took it. */
  async publish(): Promise<void> {
    if (this.publishing || this.refused) return;
    this.publishing = true;
    const { db, redis, prefix, node } = this.d;
    try {
      const changes = db
        .query<{ n: number; tbl: string; pk: string }, []>(
          'SELECT n, tbl, pk FROM temp.cluster_changes ORDER BY n LIMIT 500',
        )
        .all();
      for (const c of changes) {
        const t = this.tables.find((x) => x.name === c.tbl)!;
        const pk = JSON.parse(c.pk) as unknown[];
        const r = db
          .query<Row, never[]>(`SELECT * FROM ${t.name} WHERE ${t.pk.map((k) => `${k} = ?`).join(' AND ')}`)
          .get(...(pk as never[]));
        const skip = t.name === 'api_keys' && r?.is_bootstrap === 1;
        if (!skip) {
          if (r) for (const l of t.local) delete r[l];
          const sealed = this.d.keys.seal(JSON.stringify(r ?? null), rowContext(t.name, c.pk));
          await redis.eval(CONFIG_PUT, 0, prefix, node, t.name, c.pk, sealed, r ? '' : '1', this.d.keys.fingerprint);
          this.counters.published++;
        }
        db.query('DELETE FROM temp.cluster_changes WHERE n = ?').run(c.n);
      }
    } catch (err) {
      if (String(err).includes(CONFIG_FOREIGN_SECRET)) {
        // Overwriting it would lock out every node with that secret; this node's changes stay local.
        this.refused = true;
        this.d.log.error(
          "cluster: the configuration in Redis is sealed with another CLUSTER_SECRET (a node with that secret seeded it); this node steps down (leaves the cluster, not ready): restart it with the cluster's secret",
        );
        this.d.foreignSecret?.();
      } else {
        this.d.log.warn({ err: String(err) }, 'cluster: config publish failed; will retry');
      }
    } finally {
      this.publishing = false;
    }
  }

  /** Applies configuration written on other nodes since the last pull (joins one in flight). */
  pull(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    this.inFlight = this.pullOnce().finally(() => (this.inFlight = null));
    return this.inFlight;
  }

  /** A pull that starts after this call (a pull already in flight may have missed newer rows). */
  async pullFresh(): Promise<void> {
    if (this.inFlight) await this.inFlight;
    await this.pull();
  }

  private async pullOnce(): Promise<void> {
    const { redis, prefix, node } = this.d;
    try {
      // Redis restarted without its data: the surviving nodes put the configuration back.
      if ((await redis.exists(`${prefix}cfg:seeded`)) === 0) {
        this.d.log.warn('cluster: configuration missing in Redis (data lost?); re-seeding it from this node');
        await this.seed();
      }
      for (;;) {
        const entries = (await redis.xrange(`${prefix}cfg:log`, `(${this.lastId}`, '+', 'COUNT', 500)) as Array<
          [string, string[]]
        >;
        if (entries.length === 0) break;
        const tablesTouched = new Set<string>();
        const instanceIds = new Set<string>();
        this.withApply(() => {
          for (const [id, fields] of entries) {
            const f: Record<string, string> = {};
            for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
            if (f.node === node) continue;
            const t = this.tables.find((x) => x.name === f.tbl);
            if (!t) continue;
            const row = this.openRow(t.name, f.pk, f.row ?? '', `cfg:log ${id}`);
            if (row === undefined) continue;
            this.applyRow(t, f.pk, row);
            this.counters.applied++;
            tablesTouched.add(t.name);
            if (t.name === 'instances') instanceIds.add(JSON.parse(f.pk)[0]);
          }
        });
        this.lastId = entries[entries.length - 1][0];
        if (tablesTouched.size) this.d.applied(tablesTouched, instanceIds);
      }
    } catch (err) {
      this.d.log.warn({ err: String(err) }, 'cluster: config pull failed; will retry');
    } finally {
    }
  }
}

/** What a sealed row is bound to: moved to another table or primary key, it does not open. */
export function rowContext(table: string, pk: string): string {
  return `cfg\n${table}\n${pk}`;
}

/** A node started with another CLUSTER_SECRET than the cluster in Redis: one line, the secret never shown. */
function foreignSecretError(prefix: string): ConfigError {
  return new ConfigError(
    'CLUSTER_SECRET',
    `differs from the secret of the cluster already in Redis under key prefix "${prefix}"; every node needs the same CLUSTER_SECRET`,
  );
}
