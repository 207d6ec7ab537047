// Bootstrap admin key: generated on first start into <dataDir>/admin.key (0600), logged by path
// only, reused on the next start; plus a real `bun src/main.ts` start and clean SIGTERM stop.
import { afterEach, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config.ts';
import { createGateway } from '../src/gateway.ts';
import { createLogger } from '../src/log.ts';
import { buildServer } from '../src/server.ts';

const ROOT = join(import.meta.dir, '..');
const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'sb-boot-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function start(dir: string, env: Record<string, string> = {}) {
  const lines: string[] = [];
  const log = createLogger('info', { destination: { write: (s: string) => void lines.push(s) } });
  const gw = createGateway(loadConfig({ DATABASE_PATH: join(dir, 'switchboard.db'), ...env }), { log });
  const app = buildServer(gw);
  const get = (path: string, key?: string) =>
    app.handle(new Request(`http://localhost${path}`, { headers: key === undefined ? {} : { 'x-api-key': key } }));
  return { gw, app, lines, get };
}

describe('bootstrap admin key', () => {
  test('generated on first start: file 0600, works for /api, log names the path and never the key', async () => {
    const dir = tempDir();
    const s = start(dir);
    const keyFile = join(dir, 'admin.key');
    expect(existsSync(keyFile)).toBe(true);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const key = readFileSync(keyFile, 'utf8').trim();
    expect(key.length).toBeGreaterThanOrEqual(24);

    expect((await s.get('/api/v1/instances', key)).status).toBe(200);
    expect((await s.get('/api/v1/instances', `${key}x`)).status).toBe(401);

    const logText = s.lines.join('');
    expect(logText).toContain(keyFile);
    expect(logText).not.toContain(key);
    // Stored hashed: the raw key appears nowhere in the database.
    const rows = s.gw.db.query('SELECT * FROM api_keys').all();
    expect(JSON.stringify(rows)).not.toContain(key);
    await s.gw.close();
  });

  test('a second start reuses the key and does not rewrite the file', async () => {
    const dir = tempDir();
    const first = start(dir);
    const keyFile = join(dir, 'admin.key');
    const key = readFileSync(keyFile, 'utf8').trim();
    const mtime = statSync(keyFile).mtimeMs;
    await first.gw.close();

    const second = start(dir);
    expect(readFileSync(keyFile, 'utf8').trim()).toBe(key);
    expect(statSync(keyFile).mtimeMs).toBe(mtime);
    expect(second.lines.join('')).not.toContain('generated');
    expect((await second.get('/api/v1/instances', key)).status).toBe(200);
    await second.gw.close();
  });

  test('SWITCHBOARD_API_KEY is used as given; no key file is written and the log does not show it', async () => {
    const dir = tempDir();
    const configured = 'configured-admin-key-0123456789';
    const s = start(dir, { SWITCHBOARD_API_KEY: configured });
    expect(existsSync(join(dir, 'admin.key'))).toBe(false);
    expect((await s.get('/api/v1/instances', configured)).status).toBe(200);
    expect(s.lines.join('')).not.toContain(configured);
    await s.gw.close();

    // Changing the configured key replaces the old one.
    const next = start(dir, { SWITCHBOARD_API_KEY: 'another-admin-key-0123456789' });
    expect((await next.get('/api/v1/instances', configured)).status).toBe(401);
    expect((await next.get('/api/v1/instances', 'another-admin-key-0123456789')).status).toBe(200);
    await next.gw.close();
  });

  test('/health and /docs need no key; /api does', async () => {
    const s = start(tempDir());
    expect((await s.get('/health')).status).toBe(200);
    expect((await s.get('/docs/json')).status).toBe(200);
    expect((await s.get('/docs')).status).toBe(200);
    expect((await s.get('/api/v1/instances')).status).toBe(401);
    await s.gw.close();
  });
});

describe('bun src/main.ts', () => {
  test('starts on the embedded defaults in a fresh data dir, serves, and stops cleanly on SIGTERM, open live streams included', async () => {
    const dir = tempDir();
    const env = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_PATH: join(dir, 'data', 'switchboard.db'),
      LOG_LEVEL: 'info',
    };
    const proc = Bun.spawn([process.execPath, 'src/main.ts'], { cwd: ROOT, env, stdout: 'pipe', stderr: 'pipe' });
    const killer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
    try {
      const reader = proc.stdout.getReader();
      let buf = '';
      const records = () =>
        buf
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .flatMap((l) => {
            try {
              return [JSON.parse(l)];
            } catch {
              return []; // partial line
            }
          });
      /** Reads the log until a record matches (the 20 s killer ends a hang). */
      async function waitForLog(match: (r: any) => boolean): Promise<any> {
        for (;;) {
          const hit = records().find(match);
          if (hit) return hit;
          const { value, done } = await reader.read();
          if (done) throw new Error(`main.ts exited early: ${buf} ${await new Response(proc.stderr).text()}`);
          buf += new TextDecoder().decode(value);
        }
      }
      const port = (await waitForLog((r) => r.msg === 'switchboard listening')).port;
      const base = `http://127.0.0.1:${port}`;
      expect(await (await fetch(`${base}/health`)).json()).toEqual({ status: 'ok' });
      const keyFile = join(dir, 'data', 'admin.key');
      const key = readFileSync(keyFile, 'utf8').trim();
      expect(buf).toContain(keyFile);
      expect(buf).not.toContain(key);
      const list = await fetch(`${base}/api/v1/instances`, { headers: { 'x-api-key': key } });
      expect(list.status).toBe(200);
      expect(await list.json()).toEqual([]);
      const requestId = list.headers.get('x-request-id');
      expect(requestId).toBeTruthy();

      // One log line per request with method, path, status, duration and the request id.
      const reqLine = await waitForLog((r) => r.msg === 'request' && r.reqId === requestId);
      expect(reqLine).toMatchObject({ method: 'GET', path: '/api/v1/instances', status: 200 });
      expect(typeof reqLine.ms).toBe('number');
      expect(JSON.stringify(reqLine)).not.toContain(key);

      // An open live stream does not hold the shutdown: it is closed with 1001 (going away).
      const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?apiKey=${key}`);
      const wsClosed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));
      await new Promise((resolve) => (ws.onopen = resolve));

      proc.kill('SIGTERM');
      const code = await proc.exited;
      expect(code).toBe(0);
      expect(await wsClosed).toBe(1001);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += new TextDecoder().decode(value);
      }
      expect(records().map((r) => r.msg)).toContain('stopped');
      await expect(fetch(`${base}/health`)).rejects.toThrow();
    } finally {
      clearTimeout(killer);
      proc.kill('SIGKILL');
    }
  });
});
