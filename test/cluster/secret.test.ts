// CLUSTER_SECRET: the configuration kept in Redis is sealed (no secret of it can be read there) and
// still replicates within a second; a node with another secret is refused at start (one line from
// a node process) and never replaces the fingerprint of a cluster seeded under another secret; a value sealed with another secret, or altered in Redis, is skipped and logged
// without its content; peer requests signed with another secret are not taken for a peer's, and a
// node entry in Redis whose URL lacks a valid MAC is never sent a caller's request. Gateways in
// this process on the local redis-server (plus one node process), each with its own database. Also: instances
// created at the same moment on two nodes (same v1 numeric id) both replicate.

import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { hasStoredAuth, useSqliteAuthState } from '../../src/channels/whatsapp/auth-state.ts';
import { rowContext } from '../../src/cluster/config/config-sync.ts';
import { ClusterKeys } from '../../src/cluster/crypto.ts';
import { PEER_SIGNATURE_HEADER } from '../../src/cluster/peers/protocol.ts';
import { ConfigError } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';
import { CLUSTER_SECRET, clusterHarness, dropKeys, dumpKeys, REDIS_URL, until } from './nodes.ts';

const OTHER_SECRET = 'another-cluster-secret-abcdefghijklmnop';
const EVOLUTION_KEY = 'evo-key-must-not-reach-redis-7f3a9c';
const AGENT_KEY = 'agent-key-must-not-reach-redis-51d2e8';

const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
const redis = new Redis(REDIS_URL);

/** An in-process cluster node whose log lines are kept. */
function node(id: string, secret = CLUSTER_SECRET, keyPrefix = prefix, env: Record<string, string> = {}) {
  const logs: string[] = [];
  const log = createLogger('info', { destination: { write: (line: string) => void logs.push(line) } });
  const t = createTestGateway(
    {
      REDIS_URL,
      CLUSTER_SECRET: secret,
      CLUSTER_KEY_PREFIX: keyPrefix,
      CLUSTER_NODE_ID: id,
      CLUSTER_SHARDS: '4',
      CLUSTER_LEASE_MS: '1500',
      ...env,
    },
    { log },
  );
  return { ...t, logs };
}

const a = node('sec-a');
const b = node('sec-b');

beforeAll(async () => {
  await Promise.all([a.gw.start(), b.gw.start()]);
});
afterAll(async () => {
  await a.close();
  await b.close();
  await dropKeys(prefix);
  redis.disconnect();
});

describe('configuration sealed in Redis', () => {
  let instanceId = '';

  test('instances, keys and WhatsApp login state replicate within a second; none of their secrets is readable in Redis', async () => {
    const created = await a.call('POST', '/api/v1/instances', {
      name: 'evo',
      evolution_url: 'http://127.0.0.1:9',
      evolution_key: EVOLUTION_KEY,
      agent_api_url: 'http://127.0.0.1:9',
      agent_api_key: AGENT_KEY,
    });
    expect(created.status).toBe(201);
    instanceId = (await a.call('GET', '/api/v2/instances/evo')).body.data.id;
    await until(
      () => b.gw.instances.get(instanceId)?.config.evolution_key === EVOLUTION_KEY,
      1000,
      'instance on the other node',
    );

    const key = await a.call('POST', '/api/v2/keys', { name: 'reader', scopes: ['events:read'] });
    expect(key.status).toBe(201);
    const plainKey: string = key.body.data.key;
    await until(
      async () => (await b.call('GET', '/api/v2/traces', undefined, { 'x-api-key': plainKey })).status === 200,
      1000,
      'key usable on the other node',
    );

    const wa = await a.call('POST', '/api/v2/instances', { name: 'wa', channel: 'whatsapp-baileys', isActive: false });
    expect(wa.status).toBe(201);
    const waId: string = wa.body.data.id;
    await until(() => b.gw.instances.get(waId) !== null, 1000, 'WhatsApp instance on the other node');
    const auth = useSqliteAuthState(a.gw.db, waId);
    auth.saveCreds();
    await until(() => hasStoredAuth(b.gw.db, waId), 1000, 'login state on the other node');
    const creds = auth.state.creds;

    const secrets = {
      evolutionKey: EVOLUTION_KEY,
      agentKey: AGENT_KEY,
      apiKey: plainKey,
      apiKeyHash: a.gw.db
        .query<{ key_hash: string }, [string]>('SELECT key_hash FROM api_keys WHERE id = ?')
        .get(key.body.data.id)!.key_hash,
      webhookSecret: a.gw.db
        .query<{ webhook_secret: string }, [string]>('SELECT webhook_secret FROM instances WHERE id = ?')
        .get(instanceId)!.webhook_secret,
      advSecretKey: creds.advSecretKey,
      noiseKeyPrivate: Buffer.from(creds.noiseKey.private).toString('base64'),
      clusterSecret: CLUSTER_SECRET,
    };
    const dump = await dumpKeys(prefix);
    expect(dump).toContain(`${prefix}cfg:snap:instances`); // the dump sees the configuration
    expect(dump).toContain(`${prefix}cfg:snap:whatsapp_auth`);
    for (const [what, secret] of Object.entries(secrets)) {
      expect({ what, found: dump.includes(secret) }).toEqual({ what, found: false });
    }
    expect(dump).not.toContain(`${prefix}peer-secret`);
    // Every value of the snapshot and of the log is sealed, deletions included.
    const snap = await redis.hgetall(`${prefix}cfg:snap:instances`);
    const rows = (await redis.xrange(`${prefix}cfg:log`, '-', '+')).map(([, f]) => f[f.indexOf('row') + 1]);
    expect(rows.length).toBeGreaterThan(3);
    for (const v of [...Object.values(snap), ...rows]) expect(v.startsWith('v1.')).toBe(true);
  });

  test('a value sealed with another secret, or altered in Redis, is skipped and logged without its content; later changes still apply', async () => {
    const row = a.gw.db
      .query<Record<string, unknown>, [string]>('SELECT * FROM instances WHERE id = ?')
      .get(instanceId)!;
    const pk = JSON.stringify([instanceId]);
    const forged = {
      ...row,
      config_json: JSON.stringify({
        ...JSON.parse(String(row.config_json)),
        evolution_key: 'forged-evolution-key-0001',
      }),
    };
    const foreign = new ClusterKeys(OTHER_SECRET).seal(JSON.stringify(forged), rowContext('instances', pk));
    const ours = new ClusterKeys(CLUSTER_SECRET).seal(JSON.stringify(forged), rowContext('instances', pk));
    const altered = ours.slice(0, -6) + (ours.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA');
    const movedToAnotherRow = new ClusterKeys(CLUSTER_SECRET).seal(
      JSON.stringify(forged),
      rowContext('instances', JSON.stringify(['another-id'])),
    );
    const before = (await a.call('GET', '/api/v2/cluster')).body.data.counters.configRejected as number;
    for (const sealed of [foreign, altered, movedToAnotherRow]) {
      await redis.xadd(`${prefix}cfg:log`, '*', 'node', 'intruder', 'tbl', 'instances', 'pk', pk, 'row', sealed);
    }
    await redis.publish(`${prefix}cfg`, 'x');
    await until(
      async () => (await a.call('GET', '/api/v2/cluster')).body.data.counters.configRejected >= before + 3,
      2000,
      'rejected on node a',
    );
    expect(a.gw.instances.get(instanceId)!.config.evolution_key).toBe(EVOLUTION_KEY);
    const rejected = a.logs.filter((l) => l.includes('does not open with this CLUSTER_SECRET'));
    expect(rejected.length).toBeGreaterThanOrEqual(3);
    expect(rejected.join('\n')).toContain(instanceId);
    expect(a.logs.join('\n')).not.toContain('forged-evolution-key');

    expect((await b.call('PATCH', `/api/v2/instances/${instanceId}`, { agent: { timeoutSeconds: 42 } })).status).toBe(
      200,
    );
    await until(() => a.gw.instances.get(instanceId)?.agent.timeoutSeconds === 42, 1000, 'a later change applied');
  });
});

describe('configuration written on two nodes at once', () => {
  test('instances created at the same moment on two nodes both replicate, each with one v1 id on every node', async () => {
    const instance = (name: string) => ({
      name,
      evolution_url: 'http://127.0.0.1:9',
      evolution_key: `key-of-${name}`,
      agent_api_url: 'http://127.0.0.1:9',
    });
    const [x, y] = await Promise.all([
      a.call('POST', '/api/v1/instances', instance('made-on-a')),
      b.call('POST', '/api/v1/instances', instance('made-on-b')),
    ]);
    expect([x.status, y.status]).toEqual([201, 201]);
    expect(x.body.id).toBe(y.body.id); // seq = MAX + 1 on each node: the clash this test is about
    const ids = async (t: typeof a) =>
      Object.fromEntries(
        ((await t.call('GET', '/api/v1/instances')).body as Array<{ name: string; id: number }>)
          .filter((i) => i.name.startsWith('made-on'))
          .map((i) => [i.name, i.id]),
      );
    for (const t of [a, b])
      await until(async () => Object.keys(await ids(t)).length === 2, 3000, 'both instances on both nodes');
    const onA = await ids(a);
    expect(onA['made-on-a']).not.toBe(onA['made-on-b']);
    expect(await ids(b)).toEqual(onA);
  });
});

describe('another secret', () => {
  test('a gateway with another secret fails its start with a CLUSTER_SECRET error and never joins', async () => {
    const c = node('sec-c', OTHER_SECRET);
    const err = await c.gw.start().then(
      () => null,
      (e: unknown) => e,
    );
    await c.close();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe('CLUSTER_SECRET');
    expect((err as ConfigError).message).not.toContain(OTHER_SECRET);
    expect(await redis.smembers(`${prefix}nodes`)).not.toContain('sec-c');
  });

  test('a node process with another secret exits with one line naming CLUSTER_SECRET', async () => {
    const h = clusterHarness({
      CLUSTER_KEY_PREFIX: prefix,
      CLUSTER_SECRET: OTHER_SECRET,
      CLUSTER_SHARDS: '4',
      LOG_LEVEL: 'warn',
    });
    try {
      const err = await h.start('sec-proc').then(
        () => null,
        (e: Error) => e,
      );
      expect(err).not.toBeNull();
      const lines = err!.message
        .split('\n')
        .slice(1)
        .filter((l) => l.trim() !== '');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toStartWith('switchboard: invalid configuration: CLUSTER_SECRET');
    } finally {
      await h.cleanup();
    }
  }, 15_000);

  test('configuration seeded under another secret (a node with it raced this one) keeps that fingerprint: this node logs it once, stops publishing and steps down (leaves the cluster, not ready)', async () => {
    const raced = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
    const e = node('sec-e', CLUSTER_SECRET, raced);
    try {
      await e.gw.start();
      const foreign = new ClusterKeys(OTHER_SECRET).fingerprint;
      await redis.set(`${raced}cfg:seeded`, foreign);
      const logged = await redis.xlen(`${raced}cfg:log`);
      for (const name of ['late-1', 'late-2'])
        expect((await e.call('POST', '/api/v2/keys', { name, scopes: ['events:read'] })).status).toBe(201);
      const refusal = () => e.logs.filter((l) => l.includes('sealed with another CLUSTER_SECRET'));
      await until(() => refusal().length > 0, 2000, 'refusal logged');
      await until(async () => !(await redis.smembers(`${raced}nodes`)).includes('sec-e'), 3000, 'left the membership');
      expect((await e.call('GET', '/ready')).status).toBe(503);
      expect((await e.call('POST', '/api/v2/keys', { name: 'late-3', scopes: ['events:read'] })).status).toBe(201);
      await e.gw.cluster!.stop(); // its last step publishes what is left: still nothing goes out
      expect(refusal()).toHaveLength(1);
      expect(await redis.get(`${raced}cfg:seeded`)).toBe(foreign);
      expect(await redis.xlen(`${raced}cfg:log`)).toBe(logged);
      expect(await redis.hlen(`${raced}cfg:snap:api_keys`)).toBe(0);
    } finally {
      await e.close();
      await dropKeys(raced);
    }
  });

  test("a peer request signed with another secret is not a peer's: it is rate-limited like any caller", async () => {
    const path = '/api/v2/cluster';
    const fromPeer = await a.call('GET', path, undefined, b.gw.cluster!.peerHeaders('GET', path));
    expect(fromPeer.status).toBe(200);
    expect(fromPeer.headers.get('x-ratelimit-limit')).toBeNull();
    const forged = await a.call('GET', path, undefined, {
      'x-switchboard-forwarded-by': 'sec-b',
      [PEER_SIGNATURE_HEADER]: new ClusterKeys(OTHER_SECRET).signPeer('GET', path),
    });
    expect(forged.status).toBe(200);
    expect(forged.headers.get('x-ratelimit-limit')).not.toBeNull();
  });
});

describe('node entries written into Redis', () => {
  test("a node entry whose URL lacks a valid MAC of this secret is never asked a gathered read (the caller's key never reaches it; the answer says partial) and is logged once; a node's own entry is asked", async () => {
    const asked: Record<string, Array<string | null>> = { signed: [], unsigned: [], moved: [], foreign: [] };
    const servers = Object.keys(asked).map((name) =>
      Bun.serve({
        port: 0,
        hostname: '127.0.0.1',
        fetch(req) {
          asked[name].push(req.headers.get('x-api-key'));
          return Response.json({ items: [], meta: { cursor: null, hasMore: false } });
        },
      }),
    );
    const [signedUrl, unsignedUrl, movedUrl, foreignUrl] = servers.map((srv) => `http://127.0.0.1:${srv.port}`);
    const ours = new ClusterKeys(CLUSTER_SECRET);
    const entries: Record<string, { url: string; mac?: string }> = {
      'fake-signed': { url: signedUrl, mac: ours.signNode('fake-signed', signedUrl) },
      'fake-unsigned': { url: unsignedUrl },
      // A genuine MAC copied next to another URL.
      'fake-moved': { url: movedUrl, mac: ours.signNode('fake-moved', signedUrl) },
      'fake-foreign': { url: foreignUrl, mac: new ClusterKeys(OTHER_SECRET).signNode('fake-foreign', foreignUrl) },
    };
    try {
      // All four in one transaction: a node reads the member list at its heartbeat and its peer
      // list at most once per renew interval, and nothing in this test makes it read them again
      // once the signed entry was asked. Written one by one, a heartbeat between two writes saw
      // only some of them, and the entries after it were never considered (nor logged).
      const write = redis.multi();
      for (const [id, info] of Object.entries(entries))
        write.set(`${prefix}node:${id}`, JSON.stringify(info), 'PX', 20_000);
      write.sadd(`${prefix}nodes`, ...Object.keys(entries));
      await write.exec();
      await until(
        async () => {
          expect((await a.call('GET', '/api/v2/traces')).status).toBe(200);
          return asked.signed.length > 0;
        },
        3000,
        'the signed entry asked',
      );
      const gathered = await a.call('GET', '/api/v2/traces');
      expect(gathered.status).toBe(200);
      // Live entries it did not ask may be real nodes: the answer says it may be missing rows.
      expect(gathered.body.meta.partial).toBe(true);
      expect(asked.signed[0]).toBe(ADMIN_KEY);
      expect({ unsigned: asked.unsigned, moved: asked.moved, foreign: asked.foreign }).toEqual({
        unsigned: [],
        moved: [],
        foreign: [],
      });
      // The peer-list read that first asked the signed entry saw the three others too and logged
      // each of them then (the logger writes synchronously); the reads since did not log again.
      const refused = () => a.logs.filter((l) => l.includes('without a valid MAC'));
      expect(
        refused()
          .map((l) => JSON.parse(l).node)
          .sort(),
      ).toEqual(['fake-foreign', 'fake-moved', 'fake-unsigned']);
    } finally {
      for (const id of Object.keys(entries)) await redis.del(`${prefix}node:${id}`);
      for (const srv of servers) srv.stop(true);
    }
  });
});
