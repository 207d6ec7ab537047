// API keys: stored as SHA-256 hashes; the full key is shown once at creation.
import type { Database } from 'bun:sqlite';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { NotFound } from '../core/errors.ts';
import { isoNow, newId, randomToken, sha256 } from './ids.ts';

export const SCOPES = [
  '*',
  'instances:*',
  'instances:read',
  'instances:write',
  'instances:delete',
  'messages:*',
  'messages:send',
  'messages:read',
  'events:read',
  'persons:*',
  'access:*',
  'settings:*',
  'webhooks:*',
  'webhooks:read',
  'webhooks:write',
  'admin:*',
] as const;
export type Scope = (typeof SCOPES)[number];

/** Who is calling: the key's id, scopes and (optional) instance restriction. */
export interface Principal {
  keyId: string;
  name: string;
  scopes: string[];
  /** null = every instance. */
  instanceIds: string[] | null;
}

export function hasScope(p: Principal, required: string): boolean {
  if (p.scopes.includes('*')) return true;
  if (p.scopes.includes(required)) return true;
  const [family] = required.split(':');
  return p.scopes.includes(`${family}:*`);
}

/** True when the principal may see this instance. */
export function canSeeInstance(p: Principal, instanceId: string): boolean {
  return p.instanceIds === null || p.instanceIds.includes(instanceId);
}

interface KeyRow {
  id: string;
  name: string;
  key_hash: string;
  key_prefix: string;
  key_suffix: string;
  scopes_json: string;
  instance_ids_json: string | null;
  expires_at: string | null;
  revoked_at: string | null;
  is_bootstrap: number;
  created_at: string;
  last_used_at: string | null;
  last_used_ip: string | null;
  usage_count: number;
}

export interface ApiKeyView {
  id: string;
  name: string;
  keyPrefix: string;
  keySuffix: string;
  scopes: string[];
  instanceIds: string[] | null;
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
  usageCount: number;
}

export function toKeyView(r: KeyRow): ApiKeyView {
  return {
    id: r.id,
    name: r.name,
    keyPrefix: r.key_prefix,
    keySuffix: r.key_suffix,
    scopes: JSON.parse(r.scopes_json),
    instanceIds: r.instance_ids_json ? JSON.parse(r.instance_ids_json) : null,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    lastUsedIp: r.last_used_ip,
    usageCount: r.usage_count,
  };
}

export class KeyService {
  private byHash = new Map<string, { principal: Principal; expiresAt: number | null; revoked: boolean }>();
  private changeListeners: Array<() => void> = [];

  constructor(private db: Database) {}

  /** Creates a key; returns the full key (only time it is visible) and its view. */
  create(
    input: { name: string; scopes: string[]; instanceIds?: string[] | null; expiresAt?: string | null },
    bootstrapKey?: string,
  ): { key: string; view: ApiKeyView } {
    const key = bootstrapKey ?? `sb_${randomToken(24)}`;
    // The bootstrap key's id derives from the key itself, so every cluster node (each with its own
    // database) gives the configured key the same id (one rate-limit budget, one audit identity).
    const id = bootstrapKey ? `bootstrap-${sha256(`switchboard key id\u0000${bootstrapKey}`).slice(0, 24)}` : newId();
    this.db
      .query(
        `INSERT INTO api_keys (id, name, key_hash, key_prefix, key_suffix, scopes_json, instance_ids_json, expires_at, is_bootstrap, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        id,
        input.name,
        sha256(key),
        key.slice(0, 8),
        key.slice(-4),
        JSON.stringify(input.scopes),
        input.instanceIds ? JSON.stringify(input.instanceIds) : null,
        input.expiresAt ?? null,
        bootstrapKey ? 1 : 0,
        isoNow(),
      );
    this.changed();
    return { key, view: this.get(id)! };
  }

  get(id: string): ApiKeyView | null {
    const r = this.db.query<KeyRow, [string]>('SELECT * FROM api_keys WHERE id = ?').get(id);
    return r ? toKeyView(r) : null;
  }

  list(): ApiKeyView[] {
    return this.db.query<KeyRow, []>('SELECT * FROM api_keys ORDER BY id').all().map(toKeyView);
  }

  update(
    id: string,
    patch: { name?: string; scopes?: string[]; instanceIds?: string[] | null; expiresAt?: string | null },
  ): ApiKeyView {
    const cur = this.get(id);
    if (!cur) throw new NotFound('API key not found');
    this.db
      .query('UPDATE api_keys SET name = ?, scopes_json = ?, instance_ids_json = ?, expires_at = ? WHERE id = ?')
      .run(
        patch.name ?? cur.name,
        JSON.stringify(patch.scopes ?? cur.scopes),
        (patch.instanceIds === undefined ? cur.instanceIds : patch.instanceIds)
          ? JSON.stringify(patch.instanceIds ?? cur.instanceIds)
          : null,
        patch.expiresAt === undefined ? cur.expiresAt : patch.expiresAt,
        id,
      );
    this.changed();
    return this.get(id)!;
  }

  revoke(id: string): boolean {
    const res = this.db
      .query('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL')
      .run(isoNow(), id);
    this.changed();
    return res.changes > 0;
  }

  /** Checks a presented key; null when unknown, expired or revoked. Cached by hash. */
  verify(presented: string | null | undefined, now = Date.now()): Principal | null {
    if (!presented || presented.length > 256) return null;
    const hash = sha256(presented);
    let entry = this.byHash.get(hash);
    if (!entry) {
      const r = this.db.query<KeyRow, [string]>('SELECT * FROM api_keys WHERE key_hash = ?').get(hash);
      if (!r) return null;
      const v = toKeyView(r);
      entry = {
        principal: { keyId: v.id, name: v.name, scopes: v.scopes, instanceIds: v.instanceIds },
        expiresAt: v.expiresAt ? Date.parse(v.expiresAt) : null,
        revoked: v.revokedAt !== null,
      };
      this.byHash.set(hash, entry);
    }
    if (entry.revoked) return null;
    if (entry.expiresAt !== null && entry.expiresAt <= now) return null;
    return entry.principal;
  }

  /** When a valid presented key expires (ms since the epoch); null for no expiry or an invalid key. */
  expiresAt(presented: string | null | undefined): number | null {
    if (!this.verify(presented)) return null;
    return this.byHash.get(sha256(presented!))?.expiresAt ?? null;
  }

  /** Adds batched usage (from the audit buffer): count, last time and IP per key. */
  recordUsage(usage: Map<string, { count: number; at: number; ip: string | null }>): void {
    const q = this.db.query(
      'UPDATE api_keys SET last_used_at = ?, last_used_ip = ?, usage_count = usage_count + ? WHERE id = ?',
    );
    for (const [id, u] of usage) q.run(isoNow(u.at), u.ip, u.count, id);
  }

  /** Keys that can still administer keys (not revoked or expired, with '*' or 'admin:*'). */
  activeAdminIds(now = Date.now()): string[] {
    return this.list()
      .filter(
        (k) =>
          !k.revokedAt &&
          (!k.expiresAt || Date.parse(k.expiresAt) > now) &&
          (k.scopes.includes('*') || k.scopes.includes('admin:*')),
      )
      .map((k) => k.id);
  }

  /** Drops cached verification results (config change on another node, key update). */
  invalidate(): void {
    this.changed();
  }

  /** Called after any key may have changed (here or replicated): holders of open connections re-check their key. */
  onChange(listener: () => void): () => void {
    this.changeListeners.push(listener);
    return () => {
      this.changeListeners = this.changeListeners.filter((l) => l !== listener);
    };
  }

  private changed(): void {
    this.byHash.clear();
    for (const l of this.changeListeners) l();
  }

  /**
   * Makes sure an admin key exists: the configured SWITCHBOARD_API_KEY, or a generated one written
   * once to `<dataDir>/admin.key` (0600). The log names the path, never the key.
   */
  bootstrap(configured: string | null, keyFile: string, log: Logger): void {
    const existing = this.db.query<KeyRow, []>('SELECT * FROM api_keys WHERE is_bootstrap = 1').all();
    if (configured) {
      const hash = sha256(configured);
      if (existing.some((r) => r.key_hash === hash && !r.revoked_at)) return;
      // The configured key replaces any earlier bootstrap key.
      this.db.query('DELETE FROM api_keys WHERE is_bootstrap = 1').run();
      this.db.query('DELETE FROM api_keys WHERE key_hash = ?').run(hash);
      this.create({ name: 'bootstrap admin', scopes: ['*'] }, configured);
      log.info('bootstrap admin key taken from SWITCHBOARD_API_KEY');
      return;
    }
    if (existing.length > 0) return;
    const { key } = this.create({ name: 'bootstrap admin', scopes: ['*'] }, `sb_${randomToken(24)}`);
    mkdirSync(dirname(keyFile), { recursive: true });
    if (!existsSync(keyFile)) {
      writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
      chmodSync(keyFile, 0o600);
    } else {
      writeFileSync(keyFile, `${key}\n`, { mode: 0o600 });
    }
    log.warn({ path: keyFile }, 'generated a bootstrap admin API key; read it from this file (mode 0600)');
  }
}
