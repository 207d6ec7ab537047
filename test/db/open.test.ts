// SQLite: the pragmas the gateway relies on, and numbered forward-only migrations.

import type { Database } from 'bun:sqlite';
import { afterEach, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCheckpointer } from '../../db/checkpointer.ts';
import { listMigrations, migrate, openDatabase } from '../../db/open.ts';

const dirs: string[] = [];
function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-db-'));
  dirs.push(dir);
  return join(dir, 'nested', 'switchboard.db');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const pragma = (db: Database, name: string) =>
  Object.values(db.query(`PRAGMA ${name}`).get() as Record<string, unknown>)[0];

describe('openDatabase', () => {
  test('creates the directory and sets WAL, foreign keys, busy timeout, synchronous=NORMAL', () => {
    const db = openDatabase(tempDb());
    try {
      expect(pragma(db, 'journal_mode')).toBe('wal');
      expect(pragma(db, 'foreign_keys')).toBe(1);
      expect(pragma(db, 'busy_timeout')).toBe(5000);
      expect(pragma(db, 'synchronous')).toBe(1); // NORMAL
    } finally {
      db.close();
    }
  });

  test('applies every migration file once and records it; a second open applies nothing', () => {
    const path = tempDb();
    const files = listMigrations();
    expect(files.length).toBeGreaterThan(0);
    expect(files.map((m) => m.version)).toEqual([...files.map((m) => m.version)].sort((a, b) => a - b));

    const db = openDatabase(path);
    const recorded = db
      .query<{ version: number; name: string }, []>('SELECT version, name FROM schema_migrations ORDER BY version')
      .all();
    expect(recorded.map((r) => r.name)).toEqual(files.map((m) => m.name));
    // The foundation tables exist.
    const tables = db
      .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'")
      .all()
      .map((r) => r.name);
    for (const t of ['instances', 'api_keys', 'settings', 'schema_migrations']) expect(tables).toContain(t);
    db.close();

    const again = openDatabase(path, { migrate: false });
    expect(migrate(again)).toEqual([]);
    expect(again.query('SELECT COUNT(*) AS n FROM schema_migrations').get()).toEqual({ n: files.length });
    again.close();
  });

  test('a later migration is applied on the next start without re-running earlier ones', () => {
    const db = openDatabase(tempDb(), { migrate: false });
    try {
      const first = [{ version: 1, name: '001_a.sql', sql: 'CREATE TABLE a (x INTEGER);' }];
      expect(migrate(db, first)).toEqual(['001_a.sql']);
      // Re-running 001 would fail with "table a already exists".
      const both = [...first, { version: 2, name: '002_b.sql', sql: 'CREATE TABLE b (y INTEGER);' }];
      expect(migrate(db, both)).toEqual(['002_b.sql']);
      expect(migrate(db, both)).toEqual([]);
    } finally {
      db.close();
    }
  });

  test('a failing migration leaves nothing applied, not even the migrations before it', () => {
    const db = openDatabase(tempDb(), { migrate: false });
    try {
      const list = [
        { version: 1, name: '001_ok.sql', sql: 'CREATE TABLE ok_table (x INTEGER);' },
        { version: 2, name: '002_broken.sql', sql: 'CREATE TABLE half (y INTEGER); THIS IS NOT SQL;' },
      ];
      expect(() => migrate(db, list)).toThrow();
      const tables = db
        .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .all()
        .map((r) => r.name);
      expect(tables).not.toContain('ok_table');
      expect(tables).not.toContain('half');
      expect(db.query('SELECT COUNT(*) AS n FROM schema_migrations').get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  test('duplicate migration numbers are refused before anything runs', () => {
    const db = openDatabase(tempDb(), { migrate: false });
    try {
      const list = [
        { version: 3, name: '003_a.sql', sql: 'CREATE TABLE a (x INTEGER);' },
        { version: 3, name: '003_b.sql', sql: 'CREATE TABLE b (x INTEGER);' },
      ];
      expect(() => migrate(db, list)).toThrow(/duplicate migration number 3/);
      expect(db.query("SELECT COUNT(*) AS n FROM sqlite_master WHERE name IN ('a','b')").get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });
});

describe('background WAL checkpointer', () => {
  const walBytes = (path: string) => (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0);

  test('the worker checkpoints while the main connection only keeps a backstop; the data reaches the database file and the WAL stays bounded', async () => {
    const path = tempDb();
    const db = openDatabase(path);
    const cp = startCheckpointer(db, path, undefined, 10)!;
    try {
      expect(pragma(db, 'wal_autocheckpoint')).toBe(10_000); // 16 MiB below stay under it: only the worker copies them
      db.exec('CREATE TABLE blobs (b BLOB)');
      const insert = db.query('INSERT INTO blobs (b) VALUES (?)');
      const chunk = new Uint8Array(64 * 1024).fill(7);
      const before = statSync(path).size;
      // 16 MiB in 256 commits; the worker gets a moment between batches of 16.
      for (let batch = 0; batch < 16; batch++) {
        for (let i = 0; i < 16; i++) insert.run(chunk);
        await Bun.sleep(30);
      }
      const deadline = Date.now() + 5000;
      while (statSync(path).size - before < 15 * 2 ** 20 && Date.now() < deadline) await Bun.sleep(20);
      expect(statSync(path).size - before).toBeGreaterThanOrEqual(15 * 2 ** 20); // checkpointed by the worker
      expect(walBytes(path)).toBeLessThan(8 * 2 ** 20); // the WAL was restarted, not grown to 16 MiB
    } finally {
      await cp.stop();
      db.close();
    }
  });

  test('commits back to back (the worker can never copy every frame): the backstop keeps the WAL bounded', async () => {
    const path = tempDb();
    const db = openDatabase(path);
    const cp = startCheckpointer(db, path, undefined, 10)!;
    try {
      db.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, b BLOB)');
      const insert = db.query('INSERT INTO rows (b) VALUES (?)');
      const prune = db.query('DELETE FROM rows WHERE id < ?');
      const chunk = new Uint8Array(2000).fill(7);
      let n = 0;
      let maxWal = 0;
      const end = Date.now() + 1500;
      while (Date.now() < end) {
        db.transaction(() => {
          for (let i = 0; i < 5; i++) insert.run(chunk);
          if (++n % 100 === 0) prune.run(n * 5 - 2000);
        })();
        await new Promise((r) => setImmediate(r));
        maxWal = Math.max(maxWal, walBytes(path));
      }
      // Without the backstop this run grows the WAL by hundreds of MiB; SQLite restarts it past ~40 MiB.
      expect(n).toBeGreaterThan(5000);
      expect(maxWal).toBeLessThan(80 * 2 ** 20);
    } finally {
      await cp.stop();
      db.close();
    }
  });

  test('a worker that cannot work hands checkpoints back to the main connection, with a warning', async () => {
    const path = tempDb();
    const db = openDatabase(path);
    const warnings: string[] = [];
    const cp = startCheckpointer(
      db,
      join(tmpdir(), 'sb-no-such-dir', 'missing.db'),
      { warn: (_o: unknown, msg?: string) => void warnings.push(String(msg)) } as never,
      10,
    )!;
    try {
      const deadline = Date.now() + 5000;
      while (pragma(db, 'wal_autocheckpoint') !== 1000 && Date.now() < deadline) await Bun.sleep(10);
      expect(pragma(db, 'wal_autocheckpoint')).toBe(1000);
      expect(warnings.join()).toContain('checkpointer stopped');
    } finally {
      await cp.stop();
      db.close();
    }
  });

  test('in-memory databases get no checkpointer', () => {
    const db = openDatabase(':memory:');
    expect(startCheckpointer(db, ':memory:')).toBeNull();
    db.close();
  });
});
