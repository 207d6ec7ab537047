// Spawns real Switchboard node processes (`bun src/main.ts`) on one Redis for cluster tests
// and the cluster benchmark. Each node has its own port and SQLite file; all share a random
// Redis key prefix that `cleanup()` deletes afterwards.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Subprocess } from 'bun';
import Redis from 'ioredis';
import { shardOf } from '../../src/cluster/membership/shards.ts';

export const CLUSTER_ADMIN_KEY = 'cluster-admin-key-0123456789';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** CLUSTER_SECRET of the test clusters (required in cluster mode). */
export const CLUSTER_SECRET = 'test-cluster-secret-0123456789abcdef';

export interface NodeProc {
  id: string;
  port: number;
  url: string;
  proc: Subprocess<'ignore', 'pipe', 'pipe'>;
  log: string[];
  call(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: any }>;
}

export interface ClusterHarness {
  prefix: string;
  dir: string;
  nodes: NodeProc[];
  start(id: string): Promise<NodeProc>;
  stopAll(): Promise<void>;
  cleanup(): Promise<void>;
}

export function clusterHarness(env: Record<string, string> = {}): ClusterHarness {
  const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
  const dir = mkdtempSync(join(tmpdir(), 'sb-cluster-'));
  const nodes: NodeProc[] = [];
  const bun = process.execPath;
  const h: ClusterHarness = {
    prefix,
    dir,
    nodes,
    async start(id) {
      const proc = Bun.spawn([bun, 'src/main.ts'], {
        cwd: join(import.meta.dir, '..', '..'),
        env: {
          PATH: process.env.PATH ?? '',
          PORT: '0',
          HOST: '127.0.0.1',
          DATABASE_PATH: join(dir, `${id}.db`),
          SWITCHBOARD_API_KEY: CLUSTER_ADMIN_KEY,
          REDIS_URL,
          CLUSTER_SECRET,
          CLUSTER_KEY_PREFIX: prefix,
          CLUSTER_NODE_ID: id,
          CLUSTER_LEASE_MS: '1500',
          CLUSTER_SHARDS: '32',
          PIPELINE_RETRY_BASE_MS: '50',
          PIPELINE_RETRY_MAX_MS: '200',
          LOG_LEVEL: 'info',
          ...env,
        },
        stdin: 'ignore',
        stdout: 'pipe',
        stderr: 'pipe',
      });
      const log: string[] = [];
      let port = 0;
      const ready = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`node ${id} did not start:\n${log.join('\n')}`)), 10_000);
        const pump = async (stream: ReadableStream<Uint8Array>) => {
          const dec = new TextDecoder();
          let buf = '';
          for await (const chunk of stream) {
            buf += dec.decode(chunk, { stream: true });
            let i;
            while ((i = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, i);
              buf = buf.slice(i + 1);
              log.push(line);
              const m = /"port":(\d+).*switchboard listening|switchboard listening.*"port":(\d+)/.exec(line);
              if (m && !port) {
                port = Number(m[1] ?? m[2]);
                clearTimeout(timer);
                resolve();
              }
            }
          }
        };
        void pump(proc.stdout);
        void pump(proc.stderr);
        void proc.exited.then((code) => {
          clearTimeout(timer);
          if (!port) reject(new Error(`node ${id} exited ${code}:\n${log.join('\n')}`));
        });
      });
      try {
        await ready;
      } catch (err) {
        proc.kill('SIGKILL'); // never leave a half-started node writing under the test prefix
        await proc.exited;
        throw err;
      }
      const url = `http://127.0.0.1:${port}`;
      const node: NodeProc = {
        id,
        port,
        url,
        proc,
        log,
        async call(method, path, body, headers = {}) {
          const res = await fetch(url + path, {
            method,
            headers: {
              'x-api-key': CLUSTER_ADMIN_KEY,
              ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
              ...headers,
            },
            body: body === undefined ? undefined : JSON.stringify(body),
          });
          const text = await res.text();
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          return { status: res.status, body: parsed };
        },
      };
      nodes.push(node);
      return node;
    },
    async stopAll() {
      for (const n of nodes) {
        try {
          n.proc.kill('SIGCONT');
          n.proc.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
      await Promise.all(nodes.map((n) => n.proc.exited));
    },
    async cleanup() {
      await h.stopAll();
      await dropKeys(prefix);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

/** Every key under `prefix`. */
async function keysUnder(r: Redis, prefix: string): Promise<string[]> {
  const all: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    all.push(...keys);
  } while (cursor !== '0');
  return all;
}

/** Deletes every key of a test cluster. */
export async function dropKeys(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  const keys = await keysUnder(r, prefix);
  if (keys.length) await r.del(...keys);
  r.disconnect();
}

/** Every key under `prefix` with its whole value (strings, hashes, lists, sets, streams) as text, to search for what must not be there. */
export async function dumpKeys(prefix: string): Promise<string> {
  const r = new Redis(REDIS_URL);
  const out: string[] = [];
  for (const key of (await keysUnder(r, prefix)).sort()) {
    const type = await r.type(key);
    const value =
      type === 'string'
        ? await r.get(key)
        : type === 'hash'
          ? await r.hgetall(key)
          : type === 'list'
            ? await r.lrange(key, 0, -1)
            : type === 'set'
              ? await r.smembers(key)
              : type === 'zset'
                ? await r.zrange(key, '0', '-1', 'WITHSCORES')
                : type === 'stream'
                  ? await r.xrange(key, '-', '+')
                  : null;
    out.push(`${key} (${type}) ${JSON.stringify(value)}`);
  }
  r.disconnect();
  return out.join('\n');
}

export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

export function upsert(instance: string, id: string, text: string, phone = '15551234567') {
  return {
    event: 'messages.upsert',
    instance,
    data: {
      key: { remoteJid: `${phone}@s.whatsapp.net`, fromMe: false, id },
      pushName: 'Tester',
      messageTimestamp: 1765375800,
      message: { conversation: text },
    },
  };
}

/** The node that holds the instance's shard right now (asked of `among[0]`), or null. */
export async function shardOwner(among: NodeProc[], instanceId: string, shards = 32): Promise<NodeProc | null> {
  const s = shardOf(instanceId, shards);
  const st = (await among[0]!.call('GET', '/api/v2/cluster')).body.data;
  const holder = st.nodes.find((n: any) => n.shards.some((x: any) => x.shard === s));
  return holder ? (among.find((n) => n.id === holder.id) ?? null) : null;
}

/** Waits until some node holds the instance's shard, and returns it. */
export async function waitForShardOwner(among: NodeProc[], instanceId: string, ms = 6000): Promise<NodeProc> {
  let owner: NodeProc | null = null;
  await until(async () => (owner = await shardOwner(among, instanceId)) !== null, ms, 'shard owned');
  return owner!;
}

/** Follows a cursor list to its end, one page per call; no page may be partial. */
export async function walkPages(
  next: (cursor: string | null) => Promise<{ status: number; body: any }>,
): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 50; i++) {
    const res = await next(cursor);
    if (res.status !== 200 || res.body.meta.partial !== undefined)
      throw new Error(`page after cursor ${cursor}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
    ids.push(...res.body.items.map((x: any) => x.id));
    cursor = res.body.meta.cursor;
    if (!res.body.meta.hasMore) break;
  }
  return ids;
}

/** Walks a v2 list with ?limit=1 and the cursor. */
export function walk(n: NodeProc, path: string, headers: Record<string, string> = {}): Promise<string[]> {
  const sep = path.includes('?') ? '&' : '?';
  return walkPages((cursor) =>
    n.call('GET', `${path}${sep}limit=1${cursor ? `&cursor=${cursor}` : ''}`, undefined, headers),
  );
}
