// Opens the SQLite database with the pragmas the gateway relies on and applies the numbered,
// forward-only migrations in db/migrations (each file once, inside one transaction).
import { Database } from 'bun:sqlite';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const MIGRATIONS_DIR = join(import.meta.dir, 'migrations');

export interface OpenOptions {
  /** Apply migrations (default true). */
  migrate?: boolean;
}

export function openDatabase(path: string, opts: OpenOptions = {}): Database {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { create: true, strict: true });
  db.exec('PRAGMA journal_mode = WAL');
  // NORMAL in WAL mode: a commit is durable against a process crash (kill -9) because the WAL
  // is written before the commit returns; only an OS crash or power loss can drop the last
  // commits. FULL would fsync on every commit and cap the group-committed hot path at the
  // disk's fsync rate.
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec('PRAGMA busy_timeout = 5000');
  db.exec('PRAGMA foreign_keys = ON');
  db.exec('PRAGMA temp_store = MEMORY');
  if (opts.migrate !== false) migrate(db);
  return db;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .map((f) => ({ version: Number(f.split('_')[0]), name: f, sql: readFileSync(join(dir, f), 'utf8') }))
    .sort((a, b) => a.version - b.version);
}

/** Applies pending migrations; returns the names applied (empty on a second start). */
export function migrate(db: Database, migrations = listMigrations()): string[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
  )`);
  const seen = new Set(
    db
      .query<{ version: number }, []>('SELECT version FROM schema_migrations')
      .all()
      .map((r) => r.version),
  );
  const versions = new Set<number>();
  for (const m of migrations) {
    if (versions.has(m.version)) throw new Error(`duplicate migration number ${m.version} (${m.name})`);
    versions.add(m.version);
  }
  const pending = migrations.filter((m) => !seen.has(m.version));
  if (pending.length === 0) return [];
  db.transaction(() => {
    for (const m of pending) {
      db.exec(m.sql);
      db.query('INSERT INTO schema_migrations (version, name) VALUES (?, ?)').run(m.version, m.name);
    }
  }).immediate();
  return pending.map((m) => m.name);
}
