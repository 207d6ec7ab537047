// Cluster configuration replication between two in-process nodes on the local redis-server: two
// instances created at the same moment on different nodes (so with the same v1 numeric id) both
// reach both nodes, with one v1 id each, the same on both nodes.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { CLUSTER_SECRET, dropKeys, REDIS_URL, until } from './cluster-nodes.ts';
import { createTestGateway } from './helpers.ts';

const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
const node = (id: string) =>
  createTestGateway({ REDIS_URL, CLUSTER_SECRET, CLUSTER_KEY_PREFIX: prefix, CLUSTER_NODE_ID: id, CLUSTER_SHARDS: '4', CLUSTER_LEASE_MS: '1500' });
const a = node('cfg-a');
const b = node('cfg-b');

beforeAll(async () => {
  await Promise.all([a.gw.start(), b.gw.start()]);
});
afterAll(async () => {
  await a.close();
  await b.close();
  await dropKeys(prefix);
});

test('instances created at the same moment on two nodes both replicate, each with one v1 id on every node', async () => {
  const [x, y] = await Promise.all([
    a.call('POST', '/api/v1/instances', { name: 'made-on-a', evolution_url: 'http://127.0.0.1:9', evolution_key: 'k-a-123456', agent_api_url: 'http://127.0.0.1:9' }),
    b.call('POST', '/api/v1/instances', { name: 'made-on-b', evolution_url: 'http://127.0.0.1:9', evolution_key: 'k-b-123456', agent_api_url: 'http://127.0.0.1:9' }),
  ]);
  expect([x.status, y.status]).toEqual([201, 201]);
  expect(x.body.id).toBe(y.body.id); // the clash this test is about
  const names = async (t: typeof a) => ((await t.call('GET', '/api/v1/instances')).body as Array<{ name: string }>).map((i) => i.name).sort();
  for (const t of [a, b]) await until(async () => (await names(t)).join() === 'made-on-a,made-on-b', 3000, 'both instances on both nodes');
  const ids = async (t: typeof a) => Object.fromEntries(((await t.call('GET', '/api/v1/instances')).body as Array<{ name: string; id: number }>).map((i) => [i.name, i.id]));
  const onA = await ids(a);
  expect(onA['made-on-a']).not.toBe(onA['made-on-b']);
  expect(await ids(b)).toEqual(onA);
});
