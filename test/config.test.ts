// Configuration: defaults, the seed's AUTOMAGIK_OMNI_* fallbacks, and one clear line per bad value.
import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../src/config.ts';

const ROOT = join(import.meta.dir, '..');

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('config defaults', () => {
  test('an empty environment gives the contract defaults', () => {
    const c = loadConfig({});
    expect(c.port).toBe(8882);
    expect(c.host).toBe('0.0.0.0');
    expect(c.databasePath).toBe('./data/switchboard.db');
    expect(c.dataDir).toBe('./data');
    expect(c.apiKey).toBeNull();
    expect(c.redisUrl).toBeNull();
    expect(c.publicUrl).toBeNull();
    expect(c.logLevel).toBe('info');
  });

  test('empty strings count as unset', () => {
    const c = loadConfig({ PORT: '', HOST: '', REDIS_URL: '' });
    expect(c.port).toBe(8882);
    expect(c.host).toBe('0.0.0.0');
    expect(c.redisUrl).toBeNull();
  });

  test('explicit values are used', () => {
    const c = loadConfig({
      PORT: '9000',
      HOST: '127.0.0.1',
      DATABASE_PATH: '/tmp/x/sb.db',
      SWITCHBOARD_API_KEY: 'k'.repeat(20),
      REDIS_URL: 'redis://127.0.0.1:6379/',
      CLUSTER_SECRET: 's'.repeat(32),
      LOG_LEVEL: 'DEBUG',
      PUBLIC_URL: 'https://gw.example.com/',
    });
    expect(c.port).toBe(9000);
    expect(c.host).toBe('127.0.0.1');
    expect(c.databasePath).toBe('/tmp/x/sb.db');
    expect(c.dataDir).toBe('/tmp/x');
    expect(c.apiKey).toBe('k'.repeat(20));
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.cluster.secret).toBe('s'.repeat(32));
    expect(c.logLevel).toBe('debug');
    // Trailing slash dropped so webhook URLs do not get a double slash.
    expect(c.publicUrl).toBe('https://gw.example.com');
  });
});

describe('AUTOMAGIK_OMNI_* fallbacks', () => {
  test('each seed variable is accepted when the Switchboard one is unset', () => {
    const c = loadConfig({
      AUTOMAGIK_OMNI_API_KEY: 'omni-dev-key-test-2025',
      AUTOMAGIK_OMNI_API_HOST: '127.0.0.1',
      AUTOMAGIK_OMNI_API_PORT: '8883',
      AUTOMAGIK_OMNI_SQLITE_DATABASE_PATH: './omni/omni.db',
    });
    expect(c.apiKey).toBe('omni-dev-key-test-2025');
    expect(c.host).toBe('127.0.0.1');
    expect(c.port).toBe(8883);
    expect(c.databasePath).toBe('./omni/omni.db');
  });

  test('the Switchboard variable wins over the fallback', () => {
    const c = loadConfig({
      PORT: '9001',
      AUTOMAGIK_OMNI_API_PORT: '8883',
      SWITCHBOARD_API_KEY: 'switchboard-key-000000',
      AUTOMAGIK_OMNI_API_KEY: 'omni-dev-key-test-2025',
      DATABASE_PATH: './a.db',
      AUTOMAGIK_OMNI_SQLITE_DATABASE_PATH: './b.db',
    });
    expect(c.port).toBe(9001);
    expect(c.apiKey).toBe('switchboard-key-000000');
    expect(c.databasePath).toBe('./a.db');
  });

  test('a bad fallback value is reported under the fallback name', () => {
    expect(configError({ AUTOMAGIK_OMNI_API_PORT: 'eighty' }).variable).toBe('AUTOMAGIK_OMNI_API_PORT');
  });
});

describe('bad values stop the start naming the variable', () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ PORT: 'abc' }, 'PORT'],
    [{ PORT: '70000' }, 'PORT'],
    [{ PORT: '-1' }, 'PORT'],
    [{ PORT: '80.5' }, 'PORT'],
    [{ HOST: 'bad host/name' }, 'HOST'],
    [{ SWITCHBOARD_API_KEY: 'short' }, 'SWITCHBOARD_API_KEY'],
    [{ REDIS_URL: 'not a url' }, 'REDIS_URL'],
    [{ REDIS_URL: 'http://127.0.0.1:6379' }, 'REDIS_URL'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ PUBLIC_URL: 'gw.example.com' }, 'PUBLIC_URL'],
    [{ PUBLIC_URL: 'ftp://gw.example.com' }, 'PUBLIC_URL'],
    [{ BODY_LIMIT_BYTES: '10' }, 'BODY_LIMIT_BYTES'],
    [{ CORS_ORIGINS: 'example.com' }, 'CORS_ORIGINS'],
    [{ DISCORD_API_URL: 'discord' }, 'DISCORD_API_URL'],
    [{ WHATSAPP_WS_URL: 'https://web.whatsapp.com/ws' }, 'WHATSAPP_WS_URL'],
    // Cluster mode needs the shared secret, and a long one.
    [{ REDIS_URL: 'redis://127.0.0.1:6379' }, 'CLUSTER_SECRET'],
    [{ REDIS_URL: 'redis://127.0.0.1:6379', CLUSTER_SECRET: 'x'.repeat(31) }, 'CLUSTER_SECRET'],
    [{ CLUSTER_SECRET: 'too-short' }, 'CLUSTER_SECRET'],
  ];
  for (const [env, variable] of cases) {
    test(`${JSON.stringify(env)} → ${variable}`, () => {
      const err = configError(env);
      expect(err.variable).toBe(variable);
      expect(err.message.startsWith(`${variable}:`)).toBe(true);
      expect(err.message).not.toContain('\n');
    });
  }
});

describe('CLUSTER_SECRET', () => {
  test('is required in cluster mode, and a short one is refused without being echoed', () => {
    expect(configError({ REDIS_URL: 'redis://127.0.0.1:6379' }).message).toContain('required when REDIS_URL is set');
    const short = configError({ REDIS_URL: 'redis://127.0.0.1:6379', CLUSTER_SECRET: 'short-secret-value' });
    expect(short.message).toContain('at least 32 characters');
    expect(short.message).not.toContain('short-secret-value');
    expect(loadConfig({}).cluster.secret).toBeNull(); // embedded mode needs none
  });
});

describe('bun src/main.ts with a bad value', () => {
  async function startOutput(extra: Record<string, string>): Promise<{ code: number; lines: string[] }> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      DATABASE_PATH: ':memory:',
      ...extra,
    };
    const proc = Bun.spawn([process.execPath, 'src/main.ts'], { cwd: ROOT, env, stdout: 'pipe', stderr: 'pipe' });
    const timer = setTimeout(() => proc.kill(), 10_000);
    const [code, out, err] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    clearTimeout(timer);
    return { code, lines: (out + err).split('\n').filter((l) => l.trim() !== '') };
  }

  test('PORT=abc exits non-zero with one line naming PORT', async () => {
    const { code, lines } = await startOutput({ PORT: 'abc' });
    expect(code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PORT');
    expect(lines[0]).toContain('abc');
  });

  test('REDIS_URL without CLUSTER_SECRET exits non-zero with one line naming CLUSTER_SECRET', async () => {
    const { code, lines } = await startOutput({ REDIS_URL: 'redis://127.0.0.1:6379' });
    expect(code).not.toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('CLUSTER_SECRET');
    expect(lines[0]).toContain('REDIS_URL');
  });
});

describe('.env.example', () => {
  const example = readFileSync(join(ROOT, '.env.example'), 'utf8');
  const source = readFileSync(join(ROOT, 'src/config.ts'), 'utf8');
  // Every env name config.ts reads appears in a quoted list like ['PORT', 'AUTOMAGIK_OMNI_API_PORT'].
  const names = [
    ...new Set(
      [...source.matchAll(/\[((?:'[A-Z][A-Z0-9_]*'(?:, )?)+)\]/g)].flatMap((m) => m[1].match(/[A-Z][A-Z0-9_]*/g)!),
    ),
  ];

  test('documents every variable config.ts reads, fallbacks included', () => {
    expect(names.length).toBeGreaterThan(20);
    expect(names).toContain('AUTOMAGIK_OMNI_SQLITE_DATABASE_PATH');
    const missing = names.filter((n) => !new RegExp(`\\b${n}\\b`).test(example));
    expect(missing).toEqual([]);
  });

  test('its example values, all uncommented, form a valid configuration', () => {
    const env: Record<string, string> = {};
    for (const line of example.split('\n')) {
      const m = line.match(/^#?([A-Z][A-Z0-9_]*)=(.*)$/);
      if (m) env[m[1]] = m[2];
    }
    expect(Object.keys(env).length).toBeGreaterThan(20);
    const c = loadConfig(env);
    expect(c.port).toBe(8882);
    expect(c.databasePath).toBe('./data/switchboard.db');
  });
});
