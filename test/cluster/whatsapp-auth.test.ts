// Cluster mode: WhatsApp (Baileys) login state written by one node reaches the others, so the next
// owner of the instance's shard can reopen the same linked session after a failover. Two gateways
// in this process, each with its own database, on the local redis-server.
import { afterAll, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { hasStoredAuth, useSqliteAuthState } from '../../src/channels/whatsapp/auth-state.ts';
import { until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';
import { CLUSTER_SECRET, REDIS_URL } from './nodes.ts';

const prefix = `sbtest:${Math.random().toString(36).slice(2, 10)}:`;
const env = (node: string) => ({
  REDIS_URL,
  CLUSTER_SECRET,
  CLUSTER_KEY_PREFIX: prefix,
  CLUSTER_NODE_ID: node,
  CLUSTER_SHARDS: '4',
  CLUSTER_LEASE_MS: '1500',
});
const a = createTestGateway(env('wa-a'));
const b = createTestGateway(env('wa-b'));

afterAll(async () => {
  await a.close();
  await b.close();
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
});

test('login state saved on one node appears on the other; logging out clears it everywhere', async () => {
  await Promise.all([a.gw.start(), b.gw.start()]);
  // Inactive: no node opens a socket in this test; only the replicated rows matter.
  const created = await a.call('POST', '/api/v2/instances', {
    name: 'wa-shared',
    channel: 'whatsapp-baileys',
    isActive: false,
  });
  expect(created.status).toBe(201);
  const id = created.body.data.id as string;
  await until(() => b.gw.instances.get(id) !== null, 5000, 'instance replicated');

  const auth = useSqliteAuthState(a.gw.db, id);
  auth.saveCreds();
  await auth.state.keys.set({
    'pre-key': { '1': { public: new Uint8Array([1, 2, 3]), private: new Uint8Array([4, 5, 6]) } },
  } as never);
  await until(() => hasStoredAuth(b.gw.db, id), 5000, 'creds replicated');
  const onB = useSqliteAuthState(b.gw.db, id);
  expect(onB.state.creds.registrationId).toBe(auth.state.creds.registrationId);
  const keys = await onB.state.keys.get('pre-key', ['1']);
  expect(Buffer.from((keys['1'] as { public: Uint8Array }).public)).toEqual(Buffer.from([1, 2, 3]));

  auth.clear();
  await until(() => !hasStoredAuth(b.gw.db, id), 5000, 'logout replicated');
}, 30_000);
