// Cluster dead letters (/api/v2/cluster/dead-letters): stream entries no node could hand to a
// conversation are listed with their secrets masked (and kept sealed in Redis), replayed to their
// shard's owner once their instance is known, or deleted; unknown ids get the error envelope.
// Messages in the streams are sealed, and an entry no node sealed is dead-lettered, never run.
// One gateway in this process owns every shard of its cluster on the local redis-server.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { rowContext } from '../../src/cluster/config/config-sync.ts';
import { ClusterKeys } from '../../src/cluster/crypto.ts';
import { STREAM_CONTEXT } from '../../src/cluster/handoff/entry.ts';
import { CONFIG_PUT } from '../../src/cluster/lua.ts';
import { shardOf } from '../../src/cluster/membership/shards.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { createTestGateway } from '../helpers.ts';
import { CLUSTER_SECRET, dropKeys, dumpKeys, REDIS_URL, until, upsert } from './nodes.ts';

const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
const INTERACTION_TOKEN = 'interaction-token-must-stay-hidden-4f2e';
const redis = new Redis(REDIS_URL);
const owner = createTestGateway({
  REDIS_URL,
  CLUSTER_SECRET,
  CLUSTER_KEY_PREFIX: prefix,
  CLUSTER_NODE_ID: 'dl-owner',
  CLUSTER_SHARDS: '4',
  CLUSTER_LEASE_MS: '1500',
});
/** Where the instance is created first: its configuration reaches the cluster only later (simulated lag). */
const elsewhere = createTestGateway();
let agent: FakeAgent;
let evo: FakeEvolution;

beforeAll(async () => {
  agent = startFakeAgent({ protocol: 'json' });
  evo = await startFakeEvolution();
  await owner.gw.start();
  await until(
    async () => (await owner.call('GET', '/api/v2/cluster')).body.data.unowned.length === 0,
    5000,
    'every shard owned',
  );
});
afterAll(async () => {
  await owner.close();
  await elsewhere.close();
  await agent.stop();
  await evo.stop();
  await dropKeys(prefix);
  redis.disconnect();
});

const list = async (q = '') => (await owner.call('GET', `/api/v2/cluster/dead-letters${q}`)).body;

test('dead letters: listed masked (sealed in Redis), replayed once their instance is known, deleted; unknown ids get the error envelope', async () => {
  const created = await elsewhere.call('POST', '/api/v1/instances', {
    name: 'late',
    evolution_url: evo.url,
    evolution_key: evo.apikey,
    agent_api_url: agent.url,
    agent_timeout: 10,
  });
  expect(created.status).toBe(201);
  const row = elsewhere.gw.db.query<Record<string, unknown>, []>("SELECT * FROM instances WHERE name = 'late'").get()!;
  const instanceId = String(row.id);
  const jid = '15551234567@s.whatsapp.net';
  const msg = {
    instanceId,
    providerMessageId: 'late-1',
    chat: { chatId: jid, kind: 'direct' },
    sender: { id: jid },
    text: 'hello late',
    contentType: 'text',
    timestamp: Date.now(),
    extra: { remoteJid: jid, interaction: { id: 'i-1', token: INTERACTION_TOKEN, applicationId: 'app' } },
  };
  // Old entry ids: past the wait for configuration, so they are dead-lettered at once.
  const old = Date.now() - 60_000;
  // Written as a node writes them: the message sealed with the cluster secret.
  const seal = (text: string) => new ClusterKeys(CLUSTER_SECRET).seal(text, STREAM_CONTEXT);
  await redis.xadd(
    `${prefix}stream:${shardOf(instanceId, 4)}`,
    `${old}-1`,
    'm',
    seal(JSON.stringify(msg)),
    'k',
    'inbound',
  );
  await redis.xadd(`${prefix}stream:0`, `${old}-2`, 'm', seal('{not json'), 'k', 'inbound');
  await until(async () => (await list()).meta.total === 2, 5000, 'two dead letters');

  // Newest first, one per page.
  const first = await list('?limit=1');
  expect(first.items).toHaveLength(1);
  expect(first.meta.hasMore).toBe(true);
  const second = await list(`?limit=1&cursor=${first.meta.cursor}`);
  expect(second.items).toHaveLength(1);
  expect(second.meta.hasMore).toBe(false);
  const items = [...first.items, ...second.items];
  expect(new Set(items.map((d: any) => d.id)).size).toBe(2);
  const late = items.find((d: any) => d.entryId === `${old}-1`);
  const garbage = items.find((d: any) => d.entryId === `${old}-2`);
  expect(late).toMatchObject({ shard: shardOf(instanceId, 4), node: 'dl-owner', kind: 'inbound', replayable: false });
  expect(late.reason).toContain(`instance ${instanceId} unknown`);
  expect(late.problem).toContain('unknown');
  expect(late.message.text).toBe('hello late');
  expect(late.message.extra.interaction.token).toBe(`****${INTERACTION_TOKEN.slice(-4)}`);
  expect(garbage).toMatchObject({ shard: 0, kind: null, message: null, replayable: false });
  expect(garbage.reason).toContain('not JSON');
  // The entries left the streams; their records keep them sealed.
  const dump = await dumpKeys(prefix);
  expect(dump).toContain(`${prefix}deadletter`);
  expect(dump).not.toContain(INTERACTION_TOKEN);
  expect(dump).not.toContain('hello late');

  // Not replayable while its instance is unknown: 409, nothing changes.
  const early = await owner.call('POST', `/api/v2/cluster/dead-letters/${late.id}/replay`);
  expect(early.status).toBe(409);
  expect(early.body.error.code).toBe('CONFLICT');
  expect((await list()).meta.total).toBe(2);

  // The instance's configuration arrives (published by another node), then the replay is answered.
  const keys = new ClusterKeys(CLUSTER_SECRET);
  const pk = JSON.stringify([instanceId]);
  await redis.eval(
    CONFIG_PUT,
    0,
    prefix,
    'dl-other',
    'instances',
    pk,
    keys.seal(JSON.stringify(row), rowContext('instances', pk)),
    '',
    keys.fingerprint,
  );
  await until(() => owner.gw.instances.get(instanceId) !== null, 3000, 'instance known');
  expect((await list()).items.find((d: any) => d.id === late.id).replayable).toBe(true);
  const replayed = await owner.call('POST', `/api/v2/cluster/dead-letters/${late.id}/replay`);
  expect(replayed.status).toBe(200);
  expect(replayed.body.data).toMatchObject({ id: late.id, shard: shardOf(instanceId, 4) });
  expect(replayed.body.data.entryId).not.toBe(`${old}-1`);
  await until(() => evo.sent.length === 1, 5000, 'reply to the replayed message');
  expect(evo.sent[0].text).toBe('echo: hello late');
  expect((await list()).items.map((d: any) => d.id)).toEqual([garbage.id]);
  const again = await owner.call('POST', `/api/v2/cluster/dead-letters/${late.id}/replay`);
  expect(again.status).toBe(404);
  expect(again.body.error.code).toBe('NOT_FOUND');

  // What is not a message cannot be replayed; it can be deleted, once.
  const bad = await owner.call('POST', `/api/v2/cluster/dead-letters/${garbage.id}/replay`);
  expect(bad.status).toBe(409);
  expect(bad.body.error.message).toContain('not JSON');
  expect((await owner.call('DELETE', `/api/v2/cluster/dead-letters/${garbage.id}`)).body).toEqual({ success: true });
  const gone = await owner.call('DELETE', `/api/v2/cluster/dead-letters/${garbage.id}`);
  expect(gone.status).toBe(404);
  expect(gone.body.error.code).toBe('NOT_FOUND');
  expect((await list()).meta.total).toBe(0);
  await Bun.sleep(300);
  expect(evo.sent).toHaveLength(1); // answered once
});

test('cluster dead letters are for admin keys only', async () => {
  const key = (await owner.call('POST', '/api/v2/keys', { name: 'reader', scopes: ['events:read', 'messages:send'] }))
    .body.data.key as string;
  for (const [method, path] of [
    ['GET', '/api/v2/cluster/dead-letters'],
    ['POST', '/api/v2/cluster/dead-letters/x/replay'],
    ['DELETE', '/api/v2/cluster/dead-letters/x'],
  ]) {
    const res = await owner.call(method, path, undefined, { 'x-api-key': key });
    expect({ path, method, status: res.status, code: res.body.error.code }).toEqual({
      path,
      method,
      status: 403,
      code: 'FORBIDDEN',
    });
  }
});

test('messages in the stream are sealed; an entry not sealed by a node (written into Redis directly) is dead-lettered, never run, and cannot be replayed', async () => {
  const created = await owner.call('POST', '/api/v1/instances', {
    name: 'sealed',
    evolution_url: evo.url,
    evolution_key: evo.apikey,
    agent_api_url: agent.url,
    agent_timeout: 10,
  });
  expect(created.status).toBe(201);
  const token = new URL(created.body.webhook_url).searchParams.get('token')!;
  const instanceId: string = (await owner.call('GET', '/api/v2/instances/sealed')).body.data.id;
  const stream = `${prefix}stream:${shardOf(instanceId, 4)}`;
  const keys = new ClusterKeys(CLUSTER_SECRET);

  // Accepted by a node: sealed in the stream while it runs (the agent holds the turn for a moment).
  agent.plan((req) => (req.message === 'text that must not be readable in redis' ? { latencyMs: 1000 } : undefined));
  try {
    const accepted = await owner.call(
      'POST',
      `/webhook/evolution/sealed?token=${token}`,
      upsert('sealed', 'sealed-1', 'text that must not be readable in redis'),
      { 'x-api-key': '' },
    );
    expect(accepted.status).toBe(200);
    await until(
      () => agent.requests.some((r) => r.message === 'text that must not be readable in redis'),
      5000,
      'the message at the agent',
    );
    const entries = await redis.xrange(stream, '-', '+');
    expect(entries).toHaveLength(1);
    const m = entries[0][1][entries[0][1].indexOf('m') + 1];
    expect(m.startsWith('v1.')).toBe(true);
    expect(keys.open(m, STREAM_CONTEXT)).toContain('text that must not be readable in redis');
    expect(await dumpKeys(prefix)).not.toContain('text that must not be readable in redis');
    await until(
      () => evo.sent.some((s) => s.text === 'echo: text that must not be readable in redis'),
      5000,
      'its reply sent',
    );
  } finally {
    agent.plan(null);
  }

  // A plain entry (only a Redis writer could add one: nodes seal theirs) is never run.
  const before = (await list()).meta.total as number;
  const jid = '15550001111@s.whatsapp.net';
  await redis.xadd(
    stream,
    '*',
    'm',
    JSON.stringify({
      instanceId,
      providerMessageId: 'injected',
      chat: { chatId: jid, kind: 'direct' },
      sender: { id: jid },
      text: 'written into Redis directly',
      contentType: 'text',
      timestamp: 1,
    }),
    'k',
    'inbound',
    't',
    crypto.randomUUID(),
  );
  await until(async () => (await list()).meta.total === before + 1, 3000, 'injected entry dead-lettered');
  const refused = (await list()).items.find((d: any) => d.shard === shardOf(instanceId, 4));
  expect(refused).toMatchObject({ replayable: false, reason: expect.stringContaining('not sealed') });
  expect((await owner.call('POST', `/api/v2/cluster/dead-letters/${refused.id}/replay`)).status).toBe(409);
  await Bun.sleep(300);
  const texts = ((await owner.call('GET', '/api/v2/traces?limit=50')).body.items as Array<{ text: string }>).map(
    (t) => t.text,
  );
  expect(texts).not.toContain('written into Redis directly');
  expect(agent.requests.some((r) => JSON.stringify(r.body).includes('written into Redis directly'))).toBe(false);
  expect(await redis.xlen(stream)).toBe(0);
});
