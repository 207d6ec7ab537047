// GET /api/v2/cluster: who is in the cluster, which shards each node holds (with fencing epochs
// and lease ages). In embedded mode (no REDIS_URL) it says so.
// /api/v2/cluster/dead-letters: stream entries no node could hand to a conversation (malformed,
// unknown instance, ingest failing for good), kept in Redis; list (secrets masked), replay, delete.
import { Elysia, t } from 'elysia';
import type { Cluster } from '../../cluster/index.ts';
import { decodeCursor, PageMeta, page } from '../../services/pagination.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { PageQuery, SuccessSchema } from '../schemas.ts';

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
    nodes: t.Array(
      t.Object({
        id: t.String(),
        self: t.Boolean(),
        info: t.Union([t.Record(t.String(), t.Unknown()), t.Null()], {
          description: 'Heartbeat info (pid, host, port, startedAt); null when the heartbeat expired',
        }),
        shardCount: t.Integer(),
        shards: t.Array(ShardView),
      }),
    ),
    unowned: t.Array(t.Integer(), { description: 'Shards no node holds right now' }),
    counters: t.Record(t.String(), t.Number(), { description: "This node's cluster counters" }),
  },
  { description: 'Cluster membership and shard ownership' },
);

const ClusterDeadLetter = t.Object(
  {
    id: t.String(),
    shard: t.Integer({ description: 'Shard whose stream held the entry' }),
    entryId: t.String({ description: 'Redis stream entry id' }),
    reason: t.String({ description: 'Why no node could handle it' }),
    node: t.String({ description: 'Node that dead-lettered it' }),
    at: t.String({ description: 'When (ISO 8601)' }),
    kind: t.Union([t.Literal('inbound'), t.Literal('send'), t.Null()], {
      description: 'Inbound message or API send; null when the entry is not a message',
    }),
    message: t.Union([t.Record(t.String(), t.Unknown()), t.Null()], {
      description: 'The message, with tokens, keys and inline media masked',
    }),
    replayable: t.Boolean(),
    problem: t.Union([t.String(), t.Null()], {
      description: 'Why it cannot be replayed (malformed entry, instance unknown)',
    }),
  },
  { description: 'Cluster dead letter' },
);
const DeadLetterId = t.Object({ id: t.String({ maxLength: 100 }) });

/** What the cluster routes use: the running cluster's status and dead letters, its advertised port. */
export interface ClusterV2Deps {
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: Pick<Cluster, 'status' | 'deadLetters' | 'replayDeadLetter' | 'deleteDeadLetter' | 'advertisePort'> | null;
}

export function clusterV2(gw: ClusterV2Deps) {
  const cluster = () => {
    if (!gw.cluster) throw new ApiError('NOT_FOUND', 'Dead letter not found (not in cluster mode)');
    return gw.cluster;
  };
  return (
    new Elysia({ name: 'cluster-v2' })
      // Port 0 binds a random port: the cluster advertises the real one to its peers.
      .onStart(({ server }) => {
        if (server?.port) gw.cluster?.advertisePort(server.port);
      })
      .get(
        '/api/v2/cluster',
        async () => {
          if (!gw.cluster)
            return {
              data: { mode: 'embedded', node: null, shards: 0, leaseMs: null, nodes: [], unowned: [], counters: {} },
            };
          const s = await gw.cluster.status();
          return {
            data: { mode: 'cluster', ...s, nodes: s.nodes.map((n) => ({ ...n, shardCount: n.shards.length })) },
          };
        },
        {
          detail: {
            tags: ['cluster'],
            summary: 'Cluster status',
            description:
              "Live nodes, the shards each holds with fencing epochs and lease ages, unowned shards, and this node's counters (fenced writes, blocked sends, hand-offs).",
          },
          response: { 200: t.Object({ data: ClusterView }, { description: 'Cluster status' }), ...errorResponses },
        },
      )
      .get(
        '/api/v2/cluster/dead-letters',
        async ({ query }) => {
          const limit = query.limit ?? 50;
          const after = decodeCursor<{ at: string; id: string }>(
            query.cursor,
            (v) => typeof v.at === 'string' && typeof v.id === 'string',
          );
          const all = gw.cluster ? await gw.cluster.deadLetters() : [];
          const rest = after ? all.filter((d) => d.at < after.at || (d.at === after.at && d.id < after.id)) : all;
          const res = page(rest.slice(0, limit + 1), limit, (d) => ({ at: d.at, id: d.id }));
          return { items: res.items, meta: { ...res.meta, total: all.length } };
        },
        {
          query: t.Object(PageQuery),
          detail: {
            tags: ['cluster'],
            summary: 'List cluster dead letters',
            description:
              'Stream entries no node could hand to a conversation (malformed, instance unknown past the configuration grace, ingest failing for good), newest first. Redis keeps the last 1000, sealed with CLUSTER_SECRET; tokens, keys and inline media are masked here. Empty in embedded mode.',
          },
          response: {
            200: t.Object(
              { items: t.Array(ClusterDeadLetter), meta: PageMeta },
              { description: 'Cluster dead letters' },
            ),
            ...errorResponses,
          },
        },
      )
      .post(
        '/api/v2/cluster/dead-letters/:id/replay',
        async ({ params }) => ({ data: await cluster().replayDeadLetter(params.id) }),
        {
          params: DeadLetterId,
          detail: {
            tags: ['cluster'],
            summary: 'Replay cluster dead letter',
            description:
              "Takes the record out of the list and appends its entry again to the stream of its instance's shard (one atomic step); the shard owner then handles it like any new message. 409 when it cannot be replayed (not a message, or its instance is unknown); 404 for an unknown id.",
          },
          response: {
            200: t.Object(
              {
                data: t.Object({
                  id: t.String(),
                  shard: t.Integer(),
                  entryId: t.String({ description: 'The new stream entry' }),
                }),
              },
              { description: 'Appended again' },
            ),
            409: errorResponses[400],
            ...errorResponses,
          },
        },
      )
      .delete(
        '/api/v2/cluster/dead-letters/:id',
        async ({ params }) => {
          await cluster().deleteDeadLetter(params.id);
          return { success: true };
        },
        {
          params: DeadLetterId,
          detail: {
            tags: ['cluster'],
            summary: 'Delete cluster dead letter',
            description: 'Forgets the record. 404 for an unknown id.',
          },
          response: { 200: SuccessSchema, ...errorResponses },
        },
      )
  );
}
