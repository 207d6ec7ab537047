// One process per database: a second gateway on the same DATABASE_PATH stops with one line; the
// lock goes with the process that held it, kill -9 included.
import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseLocked, lockDatabase } from '../../db/lock.ts';

const ROOT = join(import.meta.dir, '..', '..');
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sb-lock-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('lockDatabase', () => {
  test('a second lock on the same database is refused until the first is released', () => {
    const db = join(tempDir(), 'data', 'switchboard.db');
    const first = lockDatabase(db)!;
    expect(first.path).toBe(`${db}.lock`);
    expect(() => lockDatabase(db)).toThrow(DatabaseLocked);
    first.release();
    lockDatabase(db)!.release();
  });

  test(':memory: is not locked', () => {
    expect(lockDatabase(':memory:')).toBeNull();
    expect(lockDatabase(':memory:')).toBeNull();
  });
});

function spawnGateway(databasePath: string) {
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_PATH: databasePath,
    LOG_LEVEL: 'info',
  };
  return Bun.spawn([process.execPath, 'src/main.ts'], { cwd: ROOT, env, stdout: 'pipe', stderr: 'pipe' });
}

/** Reads stdout until the gateway logs that it listens; returns its port. */
async function listening(proc: ReturnType<typeof spawnGateway>): Promise<number> {
  const reader = proc.stdout.getReader();
  let buf = '';
  for (;;) {
    const m = /"port":(\d+)[^\n]*"msg":"switchboard listening"/.exec(buf);
    if (m) {
      reader.releaseLock();
      return Number(m[1]);
    }
    const { value, done } = await reader.read();
    if (done) throw new Error(`main.ts exited early: ${buf} ${await new Response(proc.stderr).text()}`);
    buf += new TextDecoder().decode(value);
  }
}

describe('bun src/main.ts on a database in use', () => {
  test('the second process exits non-zero with one line; after kill -9 of the first a new one starts', async () => {
    const db = join(tempDir(), 'data', 'switchboard.db');
    const first = spawnGateway(db);
    const procs = [first];
    const killer = setTimeout(() => {
      for (const p of procs) p.kill('SIGKILL');
    }, 30_000);
    try {
      const port = await listening(first);
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

      const second = spawnGateway(db);
      procs.push(second);
      const [code, out, err] = await Promise.all([
        second.exited,
        new Response(second.stdout).text(),
        new Response(second.stderr).text(),
      ]);
      expect(code).not.toBe(0);
      const lines = (out + err).split('\n').filter((l) => l.trim() !== '');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('in use by another switchboard process');
      expect(lines[0]).toContain(db);
      // The first one is untouched.
      expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);

      first.kill('SIGKILL');
      await first.exited;
      const third = spawnGateway(db);
      procs.push(third);
      const port3 = await listening(third);
      expect((await fetch(`http://127.0.0.1:${port3}/health`)).status).toBe(200);
      third.kill('SIGTERM');
      expect(await third.exited).toBe(0);
    } finally {
      clearTimeout(killer);
      for (const p of procs) p.kill('SIGKILL');
    }
  }, 40_000);
});
