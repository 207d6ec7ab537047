// What the tests that build a conversation actor directly share: a test instance, and temporary
// database files (migrations applied, the instance row in place) removed after each test.
import type { Database } from 'bun:sqlite';
import { afterEach } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../db/open.ts';
import type { Instance, ReplyMode } from '../../src/core/instance.ts';

/** The instance the actor answers for (a Discord bot with a JSON agent, access rules off). */
export function testInstance(replyMode: ReplyMode = 'final'): Instance {
  return {
    id: 'inst-1',
    seq: 1,
    name: 'bot',
    channel: 'discord',
    isActive: true,
    isDefault: false,
    agent: {
      url: 'http://agent.invalid/chat',
      apiKey: null,
      type: 'json',
      timeoutSeconds: 30,
      idleTimeoutSeconds: 30,
      defaultAgent: null,
      model: null,
      headers: {},
    },
    config: {},
    settings: { replyMode, errorReply: null, accessMode: 'disabled', maxTextLength: null },
    webhookSecret: 'secret',
    status: 'connected',
    statusReason: null,
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
  };
}

/** Temporary databases for the calling test file; closed and removed after each test. */
export function useTempDatabases(prefix: string) {
  const dirs: string[] = [];
  const dbs: Database[] = [];
  afterEach(() => {
    for (const db of dbs.splice(0)) db.close();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const open = (path: string): Database => {
    const db = openDatabase(path);
    dbs.push(db);
    return db;
  };
  /** A new database file with the migrations and the test instance's row. */
  const temp = (): string => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    const path = join(dir, 'switchboard.db');
    const inst = testInstance();
    open(path)
      .query(
        `INSERT INTO instances (id, seq, name, channel, webhook_secret, created_at, updated_at)
         VALUES (?, 1, ?, ?, 'secret', '2025-01-01T00:00:00.000Z', '2025-01-01T00:00:00.000Z')`,
      )
      .run(inst.id, inst.name, inst.channel);
    return path;
  };
  return { open, temp };
}
