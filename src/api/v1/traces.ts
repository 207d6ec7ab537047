// v1 traces: the setup guide's shapes.
import { Elysia, t } from 'elysia';
import { clusterReads, type GatheringCluster } from '../../cluster/peers/gathered.ts';
import type { Pipeline } from '../../engine/pipeline.ts';
import type { InstanceService } from '../../services/instances.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { v1Trace } from '../../services/trace-views.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { principalOf } from '../principal.ts';

const V1Trace = t.Object(
  { trace_id: t.String(), status: t.String(), steps: t.Array(t.Record(t.String(), t.Any())) },
  { additionalProperties: true, description: 'Trace (v1 shape)' },
);
const isoDate = t.String({ maxLength: 40, description: 'ISO 8601 timestamp' });

type V1View = ReturnType<typeof v1Trace>;

/** What the v1 traces routes use: instances by name, this node's traces, the cluster to gather from. */
export interface TracesV1Deps {
  instances: InstanceService;
  pipeline: Pick<Pipeline, 'traces'>;
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: GatheringCluster | null;
}

export function tracesV1(gw: TracesV1Deps) {
  const reads = clusterReads(() => gw.cluster);
  return new Elysia({ name: 'traces-v1', prefix: '/api/v1/traces' })
    .get(
      '',
      async ({ query, request }) => {
        const p = principalOf(request);
        let instanceId: string | undefined;
        if (query.instance_name) {
          const inst = gw.instances.getByName(query.instance_name);
          if (!inst || !canSeeInstance(p, inst.id)) return { total: 0, traces: [] };
          instanceId = inst.id;
        }
        for (const [k, v] of [
          ['since', query.since],
          ['until', query.until],
        ] as const) {
          if (v !== undefined && Number.isNaN(Date.parse(v)))
            throw new ApiError('VALIDATION_ERROR', `${k} must be an ISO 8601 timestamp`, [
              { field: k, problem: 'must be an ISO 8601 timestamp' },
            ]);
        }
        const filter = {
          instanceId,
          instanceIds: p.instanceIds,
          userId: query.phone ?? query.user_id,
          status: query.status ? [query.status] : undefined,
          since: query.since ? new Date(query.since).toISOString() : undefined,
          until: query.until ? new Date(query.until).toISOString() : undefined,
        };
        // Newest first by (created_at, trace_id) — the receivedAt order of v2 — on every node.
        return reads.offsetList(
          request,
          query.limit ?? 50,
          query.offset ?? 0,
          (limit, offset) => ({
            total: gw.pipeline.traces.count(filter),
            traces: gw.pipeline.traces.list({ ...filter, limit, offset }).map(v1Trace),
          }),
          (v: V1View) => ({ at: v.created_at, id: v.trace_id }),
        );
      },
      {
        query: t.Object({
          instance_name: t.Optional(t.String({ maxLength: 100 })),
          phone: t.Optional(t.String({ maxLength: 100 })),
          user_id: t.Optional(t.String({ maxLength: 200 })),
          status: t.Optional(t.String({ maxLength: 30 })),
          since: t.Optional(isoDate),
          until: t.Optional(isoDate),
          limit: t.Optional(t.Integer({ minimum: 1, maximum: 500 })),
          offset: t.Optional(t.Integer({ minimum: 0 })),
        }),
        detail: {
          tags: ['traces'],
          summary: 'List traces (v1)',
          description:
            'Newest first, with steps; filters as in the v1 guide. Cluster mode: gathered from every node by (created_at, trace_id); total sums the nodes; partial is true when a node did not answer in time; offset+limit is capped at 500 rows.',
        },
        response: {
          200: t.Object(
            {
              total: t.Integer(),
              traces: t.Array(V1Trace),
              partial: t.Optional(t.Boolean({ description: 'Cluster mode: a node did not answer in time' })),
            },
            { description: 'Traces' },
          ),
          ...errorResponses,
        },
      },
    )
    .get(
      '/:traceId',
      ({ params, request }) =>
        // A trace lives on the node that owned its instance's shard.
        reads.byId(request, 'Trace', () => {
          const r = gw.pipeline.traces.get(params.traceId);
          if (!r) return null;
          if (!canSeeInstance(principalOf(request), r.instance_id)) throw new ApiError('NOT_FOUND', 'Trace not found');
          return v1Trace(r);
        }),
      {
        params: t.Object({ traceId: t.String({ maxLength: 100 }) }),
        detail: { tags: ['traces'], summary: 'Get trace (v1)', description: 'One trace with its steps.' },
        response: { 200: V1Trace, ...errorResponses },
      },
    );
}
