// Shared test setup: a gateway on an in-memory database with a known admin key.

import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../db/open.ts';
import { type Config, loadConfig } from '../src/config.ts';
import { createGateway, type Gateway, type GatewayOptions } from '../src/gateway.ts';
import { silentLogger } from '../src/log.ts';
import { buildServer } from '../src/server.ts';

export const ADMIN_KEY = 'test-admin-key-0123456789abcdef';

let mediaDirs = 0;

export function testConfig(env: Record<string, string> = {}): Config {
  // Platform endpoints default to a closed local port: no test can reach the real platforms.
  return loadConfig({
    DATABASE_PATH: ':memory:',
    SWITCHBOARD_API_KEY: ADMIN_KEY,
    LOG_LEVEL: 'silent',
    DISCORD_API_URL: 'http://127.0.0.1:9/api',
    SLACK_API_URL: 'http://127.0.0.1:9/api/',
    WHATSAPP_WS_URL: 'ws://127.0.0.1:9/ws',
    WHATSAPP_CLOUD_API_URL: 'http://127.0.0.1:9/graph',
    TELEGRAM_API_URL: 'http://127.0.0.1:9',
    // A media directory of its own per gateway (created only when something is stored).
    MEDIA_DIR: join(tmpdir(), `switchboard-test-media-${process.pid}-${++mediaDirs}`),
    ...env,
  });
}

export function createTestGateway(env: Record<string, string> = {}, opts: GatewayOptions = {}) {
  const config = testConfig(env);
  const gw: Gateway = createGateway(config, { log: silentLogger, db: opts.db ?? openDatabase(':memory:'), ...opts });
  const app = buildServer(gw);
  /** Calls the app in-process. `body` objects are sent as JSON. */
  async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const init: RequestInit = { method, headers: { 'x-api-key': ADMIN_KEY, ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    const res = await app.handle(new Request(`http://localhost${path}`, init));
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: res.status, body: json, headers: res.headers };
  }
  const close = async () => {
    await gw.close();
    // The per-gateway media directory of testConfig (never one a test passed in).
    if (!env.MEDIA_DIR) rmSync(config.mediaDir, { recursive: true, force: true });
  };
  return { gw, app, call, close };
}
