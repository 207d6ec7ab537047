// GET /api/v2/stats/overview: the console overview's figures — per bucket of the window and in
// total, for every instance the key may see and for one (instanceId) or all of them. Computed from
// the stored rows (src/services/stats.ts), so the history survives a restart.
//
// Cluster mode: every node holds the messages of the shards it owned, so the node asked gathers
// the other nodes' raw figures (counts add up, latency samples are pooled before the percentiles)
// and names the nodes that did not answer: the read is declared gathered
// (src/cluster/peers/gathered.ts, `figures`), the route computes the answer from the figures.
import type { Database } from 'bun:sqlite';
import { Elysia, t } from 'elysia';
import type { Clock } from '../../../actors/runtime/clock.ts';
import { CHANNELS } from '../../channels/registry.ts';
import { clusterReads, type FigureNodes, type GatheringCluster } from '../../cluster/peers/gathered.ts';
import type { InstanceService } from '../../services/instances.ts';
import {
  addFigures,
  COUNT_SERIES,
  FigureCache,
  type InstanceFigures,
  type NodeFigures,
  nodeFigures,
  STATS_WINDOWS,
  type StatsWindow,
  seriesOf,
  totalsOf,
  windowBounds,
} from '../../services/stats.ts';
import { errorResponses } from '../errors.ts';
import { principalOf } from '../principal.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const SENT_STEPS = [...new Set(CHANNELS.map((d) => d.traceSteps.sent))];

const Ms = t.Union([t.Number(), t.Null()]);
const Totals = t.Object(
  {
    messagesIn: t.Integer({ description: 'Inbound messages received' }),
    sent: t.Integer({ description: 'Agent replies and API sends delivered (message.sent events)' }),
    agentFailures: t.Integer({ description: 'Failed agent calls (each failed attempt)' }),
    sendFailures: t.Integer({ description: 'Failed deliveries to the platform (each failed attempt)' }),
    deadLetters: t.Integer({ description: 'Messages dead-lettered' }),
    shed: t.Integer({ description: "Messages refused at ingest (their conversation's backlog was full)" }),
    backlog: t.Integer({ description: 'Unfinished messages at the end of the window' }),
    activeConversations: t.Integer({ description: 'Conversations with a message received in the window' }),
    agentP50Ms: t.Union([t.Number(), t.Null()], { description: 'Agent latency, median (successful calls)' }),
    agentP95Ms: t.Union([t.Number(), t.Null()], { description: 'Agent latency, 95th percentile' }),
    firstTokenP50Ms: t.Union([t.Number(), t.Null()], {
      description: 'Time to the first streamed token, median (streaming agents)',
    }),
    firstTokenP95Ms: t.Union([t.Number(), t.Null()], { description: 'Time to first token, 95th percentile' }),
  },
  { description: 'Figures over the whole window' },
);
const Counts = t.Array(t.Integer());
const Series = t.Object(
  {
    t: t.Array(t.Number(), { description: 'Bucket starts (Unix seconds)' }),
    ...Object.fromEntries(COUNT_SERIES.map((k) => [k, Counts])),
    agentP50Ms: t.Array(Ms),
    agentP95Ms: t.Array(Ms),
    firstTokenP50Ms: t.Array(Ms),
    firstTokenP95Ms: t.Array(Ms),
  },
  { description: 'One value per bucket, for the same figures as totals (backlog: at the bucket end)' },
);
const Overview = t.Object(
  {
    window: t.String(),
    bucketSeconds: t.Integer(),
    start: t.String({ description: 'Window start (inclusive, ISO 8601)' }),
    end: t.String({ description: 'Window end (exclusive): the current bucket boundary' }),
    instanceId: t.Union([t.String(), t.Null()], {
      description: 'The instance the series and totals are for; null: all',
    }),
    series: Series,
    totals: Totals,
    instances: t.Array(
      t.Object({
        id: t.String(),
        name: t.String(),
        channel: t.String(),
        isActive: t.Boolean(),
        status: t.String(),
        statusReason: t.Union([t.String(), t.Null()]),
        totals: Totals,
      }),
      { description: 'Every instance the key may see, with its status and totals' },
    ),
    cluster: t.Union(
      [
        t.Object({
          nodes: t.Array(t.String(), { description: 'Nodes whose figures are included (this one first)' }),
          missing: t.Array(t.String(), { description: 'Live nodes that did not answer: their figures are missing' }),
          partial: t.Boolean({ description: 'True when some node’s figures are missing' }),
        }),
        t.Null(),
      ],
      { description: 'Cluster mode: which nodes the figures come from; null in embedded mode' },
    ),
  },
  { description: 'Overview' },
);

/** What the overview uses: this node's database (the figures), the instances, the clock, the cluster to gather from. */
export interface StatsV2Deps extends InstanceLookup {
  db: Database;
  instances: InstanceService;
  clock: Clock;
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: GatheringCluster | null;
}

export function statsV2(gw: StatsV2Deps) {
  // Settled buckets, so a refresh reads only the open ones (src/services/stats.ts).
  const cache = new FigureCache();
  const reads = clusterReads(() => gw.cluster);
  return new Elysia({ name: 'stats-v2', prefix: '/api/v2/stats' }).get(
    '/overview',
    async ({ query, request }) => {
      const p = principalOf(request);
      const window = (query.window ?? 'hour') as StatsWindow;
      const { bucketMs } = STATS_WINDOWS[window];
      const selected = query.instanceId ? visibleInstance(gw, request, query.instanceId) : null;
      const instances = gw.instances.list({ ids: p.instanceIds });
      const now = gw.clock.now();
      const { start, end } = windowBounds(window, query.until ? Date.parse(query.until) - 1 : now);
      const local = nodeFigures(gw.db, {
        instanceIds: instances.map((i) => i.id),
        window,
        end,
        sentSteps: SENT_STEPS,
        now,
        cache,
      });
      // Cluster mode: every node's figures for the same window, added up (gathered.ts).
      return reads.figures(request, local, {
        peerQuery: { until: new Date(end).toISOString() },
        // Another version's figures (other buckets or window) are not added.
        fits: (f) => f.bucketMs === bucketMs && f.end === local.end,
        answer: summary,
      });

      function summary(figures: NodeFigures[], cluster: FigureNodes | null) {
        const n = STATS_WINDOWS[window].ms / bucketMs;
        const perInstance = new Map<string, InstanceFigures>();
        for (const inst of instances)
          perInstance.set(
            inst.id,
            addFigures(
              figures.map((f) => f.instances[inst.id]).filter((f): f is InstanceFigures => !!f),
              n,
            ),
          );
        const chosen = selected ? [perInstance.get(selected.id)!] : [...perInstance.values()];
        const all = addFigures(chosen, n);
        return {
          window,
          bucketSeconds: bucketMs / 1000,
          start: new Date(start).toISOString(),
          end: new Date(end).toISOString(),
          instanceId: selected?.id ?? null,
          series: seriesOf(all, start, bucketMs),
          totals: totalsOf(all),
          instances: instances.map((i) => ({
            id: i.id,
            name: i.name,
            channel: i.channel,
            isActive: i.isActive,
            status: i.status,
            statusReason: i.statusReason,
            totals: totalsOf(perInstance.get(i.id)!),
          })),
          cluster,
        };
      }
    },
    {
      query: t.Object({
        window: t.Optional(
          t.Union([t.Literal('hour'), t.Literal('day'), t.Literal('week')], {
            description: 'hour: 1-minute buckets; day: 10-minute buckets; week: 1-hour buckets (default hour)',
          }),
        ),
        instanceId: t.Optional(t.String({ maxLength: 100, description: 'Series and totals for this instance only' })),
        until: t.Optional(
          t.String({ format: 'date-time', description: 'End of the window (default now), rounded up to a bucket' }),
        ),
      }),
      detail: {
        tags: ['stats'],
        summary: 'Overview figures',
        description:
          "Messages in and sent, agent latency (p50/p95) and time to first token, agent and delivery failures, dead letters, sheds, backlog and active conversations, per bucket of the window (last hour, day or week) and in total; every visible instance's status and totals. Computed from the stored messages, trace steps and events. Cluster mode: gathered from every node; `cluster.missing` names the nodes that did not answer.",
      },
      response: {
        200: t.Object(
          {
            data: Overview,
            figures: t.Optional(t.Any({ description: "Cluster-internal: a node's raw figures, sent to a peer" })),
            node: t.Optional(t.String({ description: 'Cluster-internal: the node that sent `figures`' })),
          },
          { description: 'The overview' },
        ),
        ...errorResponses,
      },
    },
  );
}
