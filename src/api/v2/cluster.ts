// GET /api/v2/cluster: who is in the cluster, which shards each node holds (with fencing epochs
// and lease ages). In embedded mode (no REDIS_URL) it says so.
import { Elysia, t } from 'elysia';
import type { Gateway } from '../../gateway.ts';
import { errorResponses } from '../errors.ts';

const ShardView = t.Object({
  shard: t.Integer(),
  epoch: t.Integer({ description: 'Fencing epoch of the current lease' }),
  leaseAgeMs: t.Union([t.Integer(), t.Null()], { description: 'Time since the lease was last renewed' }),
  acquiredAt: t.Union([t.String(), t.Null()], { description: 'When this holder acquired the shard' }),
});
const ClusterView = t.Object(
  {
    mode: t.String({ description: 'cluster | embedded' }),
    node: t.Union([t.String(), t.Null()], { description: 'The node that answered' }),
    shards: t.Integer({ description: 'Shard count' }),
    leaseMs: t.Union([t.Integer(), t.Null()]),
    nodes: t.Array(t.Object({
      id: t.String(),
      self: t.Boolean(),
      info: t.Union([t.Record(t.String(), t.Unknown()), t.Null()], { description: 'Heartbeat info (pid, host, port, startedAt); null when the heartbeat expired' }),
      shardCount: t.Integer(),
      shards: t.Array(ShardView),
    })),
    unowned: t.Array(t.Integer(), { description: 'Shards no node holds right now' }),
    counters: t.Record(t.String(), t.Number(), { description: "This node's cluster counters" }),
  },
  { description: 'Cluster membership and shard ownership' },
);

export function clusterV2(gw: Gateway) {
  return new Elysia({ name: 'cluster-v2' })
    // Port 0 binds a random port: the cluster advertises the real one to its peers.
    .onStart(({ server }) => {
      if (server?.port) gw.cluster?.advertisePort(server.port);
    })
    .get(
    '/api/v2/cluster',
    async () => {
      if (!gw.cluster) return { data: { mode: 'embedded', node: null, shards: 0, leaseMs: null, nodes: [], unowned: [], counters: {} } };
      const s = await gw.cluster.status();
      return { data: { mode: 'cluster', ...s, nodes: s.nodes.map((n) => ({ ...n, shardCount: n.shards.length })) } };
    },
    {
      detail: { tags: ['cluster'], summary: 'Cluster status', description: 'Live nodes, the shards each holds with fencing epochs and lease ages, unowned shards, and this node\'s counters (fenced writes, blocked sends, hand-offs).' },
      response: { 200: t.Object({ data: ClusterView }, { description: 'Cluster status' }), ...errorResponses },
    },
  );
}
