// SQLite: the pragmas the gateway relies on, and numbered forward-only migrations.
import { afterEach, describe, expect, test } from 'bun:test';
import { Database } from 'bun:sqlite';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listMigrations, migrate, openDatabase } from '../db/open.ts';

const dirs: string[] = [];
function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-db-'));
  dirs.push(dir);
  return join(dir, 'nested', 'switchboard.db');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const pragma = (db: Database, name: string) => Object.values(db.query(`PRAGMA ${name}`).get() as Record<string, unknown>)[0];

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
    const recorded = db.query<{ version: number; name: string }, []>('SELECT version, name FROM schema_migrations ORDER BY version').all();
    expect(recorded.map((r) => r.name)).toEqual(files.map((m) => m.name));
    // The foundation tables exist.
    const tables = db.query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((r) => r.name);
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
      const tables = db.query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((r) => r.name);
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
