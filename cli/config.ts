// Where the CLI finds the gateway and its key: flags, then SWITCHBOARD_URL / SWITCHBOARD_API_KEY,
// then the file `switchboard login` writes ($XDG_CONFIG_HOME or ~/.config, /switchboard/config.json,
// mode 0600: it holds a key).
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export const DEFAULT_URL = 'http://localhost:8882';

export interface Connection {
  url: string;
  key: string | null;
}

export function configPath(env: Record<string, string | undefined> = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'switchboard', 'config.json');
}

export function readConfigFile(path = configPath()): { url?: string; key?: string } {
  if (!existsSync(path)) return {};
  try {
    const v = JSON.parse(readFileSync(path, 'utf8'));
    return {
      url: typeof v.url === 'string' ? v.url : undefined,
      key: typeof v.key === 'string' ? v.key : undefined,
    };
  } catch {
    throw new Error(`${path} is not valid JSON; run switchboard login again`);
  }
}

export function resolveConnection(
  flags: { url?: string; key?: string },
  env: Record<string, string | undefined> = process.env,
): Connection {
  const file = readConfigFile(configPath(env));
  return {
    url: flags.url || env.SWITCHBOARD_URL || file.url || DEFAULT_URL,
    key: flags.key || env.SWITCHBOARD_API_KEY || file.key || null,
  };
}

/** Writes url and key, readable by the owner only (also when the file existed with wider rights). */
export function writeConfigFile(conn: { url: string; key: string }, path = configPath()): string {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify({ url: conn.url, key: conn.key }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return path;
}
