// The gateway's composition root: database, services and actors, built once per process (or per
// test). The HTTP layer (src/server.ts) and main.ts only talk to this object.
import type { Database } from 'bun:sqlite';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { realClock, type Clock } from '../actors/runtime/clock.ts';
import { openDatabase } from '../db/open.ts';
import type { Config } from './config.ts';
import { loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { InstanceService } from './services/instances.ts';
import { KeyService } from './services/keys.ts';
import { SettingsService } from './services/settings.ts';

export interface GatewayOptions {
  log?: Logger;
  clock?: Clock;
  db?: Database;
  fetch?: typeof fetch;
}

export interface Gateway {
  config: Config;
  log: Logger;
  clock: Clock;
  db: Database;
  fetch: typeof fetch;
  keys: KeyService;
  instances: InstanceService;
  settings: SettingsService;
  /** Flips to false when shutdown starts (readiness goes 503). */
  ready: boolean;
  /** Stops actors, drains in-flight work, closes the database. */
  close(): Promise<void>;
  /** Shutdown hooks registered by subsystems, run in reverse order. */
  onClose(fn: () => Promise<void> | void): void;
}

export function createGateway(config: Config = loadConfig(), opts: GatewayOptions = {}): Gateway {
  const log = opts.log ?? createLogger(config.logLevel);
  const db = opts.db ?? openDatabase(config.databasePath);
  const settings = new SettingsService(db);
  const keys = new KeyService(db);
  const instances = new InstanceService(db, { agentTimeoutSeconds: () => settings.value<number>('agent.defaultTimeoutSeconds') });
  keys.bootstrap(config.apiKey, join(config.dataDir, 'admin.key'), log);

  const closers: Array<() => Promise<void> | void> = [];
  let closed = false;
  const gw: Gateway = {
    config, log, clock: opts.clock ?? realClock, db, fetch: opts.fetch ?? fetch,
    keys, instances, settings,
    ready: true,
    onClose(fn) {
      closers.push(fn);
    },
    async close() {
      if (closed) return;
      closed = true;
      gw.ready = false;
      for (const fn of closers.reverse()) {
        try {
          await fn();
        } catch (err) {
          log.error({ err }, 'shutdown step failed');
        }
      }
      db.close();
    },
  };
  return gw;
}
