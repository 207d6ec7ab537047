// v2 traces, conversations and dead letters. The handlers read this node's rows; each read is
// declared gathered (src/cluster/peers/gathered.ts), so on any node of a cluster it sees every
// node's rows, and a dead letter is replayed or deleted by the node holding it.
import type { Database } from 'bun:sqlite';
import { Elysia, t } from 'elysia';
import type { Clock } from '../../../actors/runtime/clock.ts';
import type { DeadLetterRecord } from '../../../db/inbox-store.ts';
import { clusterReads, type GatheringCluster } from '../../cluster/peers/gathered.ts';
import type { Pipeline } from '../../engine/pipeline.ts';
import type { MediaService } from '../../media/index.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { decodeTimeCursor, GatheredPageMeta, olderThan, page, type TimeKey } from '../../services/pagination.ts';
import { v2Trace } from '../../services/trace-views.ts';
import type { TraceFilter } from '../../services/traces.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { commaList } from '../pagination.ts';
import { principalOf } from '../principal.ts';
import { PageQuery, SuccessSchema } from '../schemas.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const ConversationStateSchema = t.Union([
  t.Literal('paused'),
  t.Literal('running'),
  t.Literal('waiting'),
  t.Literal('failed'),
  t.Literal('idle'),
]);
type ConversationState = typeof ConversationStateSchema.static;

const V2Trace = t.Object(
  { id: t.String(), status: t.String(), steps: t.Array(t.Any()) },
  { additionalProperties: true, description: 'Trace' },
);
const DeadLetter = t.Object(
  {
    id: t.String(),
    traceId: t.String(),
    instanceId: t.String(),
    conversationId: t.String(),
    reason: t.String(),
    attempts: t.Integer(),
    createdAt: t.String(),
    text: t.String(),
  },
  { description: 'Dead letter' },
);
const Conversation = t.Object(
  {
    id: t.String(),
    instanceId: t.String(),
    chat: t.Any(),
    kind: t.String(),
    title: t.Union([t.String(), t.Null()]),
    lastActivityAt: t.String(),
    pending: t.Integer(),
    state: t.Union(ConversationStateSchema.anyOf, {
      description:
        'paused (stop keyword or human takeover), running (the agent is on a message), waiting (messages queued), failed (the last message failed, was dead-lettered or shed), idle',
    }),
    lastMessage: t.Union(
      [
        t.Object({
          text: t.String(),
          at: t.String(),
          status: t.String(),
          direction: t.Union([t.Literal('in'), t.Literal('out')], { description: 'out: an API send' }),
        }),
        t.Null(),
      ],
      { description: 'The latest message of the conversation' },
    ),
    contact: t.Union(
      [
        t.Object({ id: t.String(), name: t.Union([t.String(), t.Null()]), phone: t.Union([t.String(), t.Null()]) }),
        t.Null(),
      ],
      {
        description:
          'Who wrote the latest inbound message: platform id (e.g. WhatsApp JID, Discord user id), display name and phone when known',
      },
    ),
  },
  { description: 'Conversation' },
);

type DeadRow = DeadLetterRecord;
interface ConversationRow {
  id: string;
  instance_id: string;
  chat_json: string;
  kind: string;
  title: string | null;
  last_activity_at: string;
  state: ConversationState;
  last_text: string | null;
  last_at: string | null;
  last_status: string | null;
  last_kind: string | null;
  contact_id: string | null;
  contact_name: string | null;
  contact_phone: string | null;
}

/**
 * A conversation with its state, latest message and contact. The latest rows are found through the
 * (instance_id, received_at) index: a conversation's last activity is its latest message's
 * received_at (both are the ingest time).
 */
const CONVERSATION_SELECT = `SELECT * FROM (SELECT c.*, l.text AS last_text, l.received_at AS last_at, l.status AS last_status, l.kind AS last_kind,
  p.sender_id AS contact_id, p.sender_name AS contact_name, p.sender_phone AS contact_phone,
  CASE
    WHEN EXISTS (SELECT 1 FROM conversation_pauses z WHERE z.instance_id = c.instance_id
      AND (z.chat_key = c.chat_key OR replace(z.chat_key, '#', '/') = c.chat_key) AND (z.until IS NULL OR z.until > ?)) THEN 'paused'
    WHEN EXISTS (SELECT 1 FROM inbox r WHERE r.conversation_id = c.id AND r.status = 'processing') THEN 'running'
    WHEN EXISTS (SELECT 1 FROM inbox r WHERE r.conversation_id = c.id AND r.status IN ('pending', 'processing')) THEN 'waiting'
    WHEN l.status IN ('failed', 'dead_lettered', 'shed') THEN 'failed'
    ELSE 'idle'
  END AS state
FROM conversations c
LEFT JOIN inbox l ON l.seq = (SELECT x.seq FROM inbox x WHERE x.instance_id = c.instance_id AND x.received_at <= c.last_activity_at
  AND x.conversation_id = c.id ORDER BY x.received_at DESC, x.seq DESC LIMIT 1)
LEFT JOIN inbox p ON p.seq = (SELECT x.seq FROM inbox x WHERE x.instance_id = c.instance_id AND x.received_at <= c.last_activity_at
  AND x.conversation_id = c.id AND x.kind = 'inbound' ORDER BY x.received_at DESC, x.seq DESC LIMIT 1)`;

/** LIKE pattern for a search term (its own % and _ taken literally). */
const likePattern = (s: string) => `%${s.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
type ConversationView = {
  id: string;
  instanceId: string;
  chat: unknown;
  kind: string;
  title: string | null;
  lastActivityAt: string;
  pending: number;
  state: ConversationState;
  lastMessage: { text: string; at: string; status: string; direction: 'in' | 'out' } | null;
  contact: { id: string; name: string | null; phone: string | null } | null;
};
// The lists' order: newest first by (time, id), the cursor that position (src/services/pagination.ts).
const conversationKey = (v: ConversationView): TimeKey => ({ at: v.lastActivityAt, id: v.id });
const traceKey = (v: ReturnType<typeof v2Trace>): TimeKey => ({ at: v.receivedAt, id: v.id });
const deadKey = (v: { createdAt: string; id: string }): TimeKey => ({ at: v.createdAt, id: v.id });

/**
 * Traces, conversations and dead letters under `base`. The v1 guide defines its own
 * /api/v1/traces, so under /api/v1 (design principle 1) only conversations and dead letters are
 * served (`withTraces` false).
 */
/** What the traces, conversations and dead-letter routes use. */
export interface TracesV2Deps extends InstanceLookup {
  /** This node's database: the conversations and dead letters are read with SQL here. */
  db: Database;
  clock: Clock;
  /** This node's traces, inbox (backlogs, dead letters and their replay). */
  pipeline: Pick<Pipeline, 'traces' | 'inbox'>;
  /** The traces' media (signed URLs). */
  media: MediaService;
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: GatheringCluster | null;
}

export function tracesV2(gw: TracesV2Deps, base = '/api/v2', withTraces = true) {
  const { db } = gw;
  const reads = clusterReads(() => gw.cluster);
  const deadView = (r: DeadRow) => ({
    id: r.id,
    traceId: r.trace_id,
    instanceId: r.instance_id,
    conversationId: r.conversation_id,
    reason: r.reason,
    attempts: r.attempts,
    createdAt: r.created_at,
    text: r.text,
  });
  const conversationView = (r: ConversationRow): ConversationView => ({
    id: r.id,
    instanceId: r.instance_id,
    chat: JSON.parse(r.chat_json),
    kind: r.kind,
    title: r.title,
    lastActivityAt: r.last_activity_at,
    pending: gw.pipeline.inbox.conversationBacklog(r.id),
    state: r.state,
    lastMessage:
      r.last_at === null
        ? null
        : {
            text: r.last_text ?? '',
            at: r.last_at,
            status: r.last_status ?? '',
            direction: r.last_kind === 'send' ? 'out' : 'in',
          },
    contact: r.contact_id === null ? null : { id: r.contact_id, name: r.contact_name, phone: r.contact_phone },
  });
  /** The dead letter when this node holds it; null when it is not here (another node may hold it). */
  const localDead = (request: Request, id: string): DeadRow | null => {
    const r = gw.pipeline.inbox.deadLetter(id);
    if (r && !canSeeInstance(principalOf(request), r.instance_id))
      throw new ApiError('NOT_FOUND', 'Dead letter not found');
    return r;
  };
  const traceRoutes = (app: Elysia<string>) =>
    app
      .get(
        '/traces',
        async ({ query, request }) => {
          const p = principalOf(request);
          const limit = query.limit ?? 50;
          const before = decodeTimeCursor(query.cursor);
          const instanceId = query.instanceId ? visibleInstance(gw, request, query.instanceId).id : undefined;
          const ids = commaList(query.ids);
          if (ids && ids.length > 100)
            throw new ApiError('VALIDATION_ERROR', 'ids: at most 100 trace ids', [
              { field: 'ids', problem: 'at most 100 ids' },
            ]);
          const filter: Omit<TraceFilter, 'limit'> = {
            instanceId,
            instanceIds: p.instanceIds,
            status: commaList(query.status),
            userId: query.userId,
            ids,
            // Stored timestamps are UTC ISO strings: compare like with like (offsets, missing milliseconds).
            conversationId: query.conversationId,
            since: query.since ? new Date(query.since).toISOString() : undefined,
            until: query.until ? new Date(query.until).toISOString() : undefined,
          };
          return reads.list(
            request,
            limit,
            () => {
              const res = page(gw.pipeline.traces.list({ ...filter, before, limit: limit + 1 }), limit, (r) => ({
                at: r.received_at,
                id: r.id,
              }));
              return { items: gw.media.withMedia(res.items.map(v2Trace)), meta: res.meta };
            },
            {
              key: traceKey,
              // A message whose shard moved while it ran has a row (same trace id, other receivedAt) on
              // both owners: past the first page, a copy newer than the page's was listed already.
              copies: before
                ? (of) => gw.pipeline.traces.list({ ...filter, ids: of, limit: of.length }).map(v2Trace)
                : undefined,
            },
          );
        },
        {
          query: t.Object({
            ...PageQuery,
            instanceId: t.Optional(t.String({ maxLength: 100 })),
            conversationId: t.Optional(t.String({ maxLength: 100 })),
            status: t.Optional(t.String({ maxLength: 200, description: 'Comma list of statuses' })),
            userId: t.Optional(t.String({ maxLength: 200 })),
            since: t.Optional(t.String({ format: 'date-time' })),
            until: t.Optional(t.String({ format: 'date-time' })),
            ids: t.Optional(t.String({ maxLength: 4000, description: 'Comma list of trace ids (at most 100)' })),
          }),
          detail: {
            tags: ['traces'],
            summary: 'List traces',
            description:
              'Newest first, cursor-paginated. Cluster mode: gathered from every node, newest first by (receivedAt, id); meta.partial is true when a node did not answer in time.',
          },
          response: {
            200: t.Object({ items: t.Array(V2Trace), meta: GatheredPageMeta }, { description: 'A page of traces' }),
            ...errorResponses,
          },
        },
      )
      .get(
        '/traces/:id',
        ({ params, request }) =>
          // A trace lives on the node that owned its instance's shard (a peer answers the same envelope).
          reads.byId(request, 'Trace', () => {
            const r = gw.pipeline.traces.get(params.id);
            if (!r) return null;
            if (!canSeeInstance(principalOf(request), r.instance_id))
              throw new ApiError('NOT_FOUND', 'Trace not found');
            return { data: gw.media.withMedia([v2Trace(r)])[0]! };
          }),
        {
          params: t.Object({ id: t.String({ maxLength: 100 }) }),
          detail: {
            tags: ['traces'],
            summary: 'Get trace',
            description:
              'One trace with its steps, and (when the message had media) `media`: each item with a signed URL path, its transcript, or why it was not stored.',
          },
          response: { 200: t.Object({ data: V2Trace }, { description: 'The trace' }), ...errorResponses },
        },
      );
  const app = new Elysia({ name: `traces-v2:${base}`, prefix: base });
  return (withTraces ? traceRoutes(app) : app)
    .get(
      '/conversations',
      async ({ query, request }) => {
        const p = principalOf(request);
        const limit = query.limit ?? 50;
        const after = decodeTimeCursor(query.cursor);
        const instanceId = query.instanceId ? visibleInstance(gw, request, query.instanceId).id : undefined;
        const ids = commaList(query.ids);
        const search = query.q?.trim();
        const localRows = (opts: { after?: TimeKey; ids?: string[]; limit: number }) => {
          const w: string[] = [];
          const params: (string | number)[] = [];
          if (instanceId) {
            w.push('c.instance_id = ?');
            params.push(instanceId);
          }
          if (p.instanceIds) {
            w.push(p.instanceIds.length ? `c.instance_id IN (${p.instanceIds.map(() => '?').join(',')})` : '0');
            params.push(...p.instanceIds);
          }
          if (opts.ids) {
            w.push(`c.id IN (${opts.ids.map(() => '?').join(',')})`);
            params.push(...opts.ids);
          }
          if (opts.after) {
            const older = olderThan('c.last_activity_at', 'c.id', opts.after);
            w.push(older.sql);
            params.push(...older.params);
          }
          if (search) {
            // By name or chat (title, chat address), by sender (name, phone) or by message text. A
            // phone typed with spaces, dashes or parentheses matches by its digits.
            const terms = [likePattern(search)];
            const digits = search.replace(/\D/g, '');
            if (/^[\d\s+().-]+$/.test(search) && digits.length >= 4 && digits !== search)
              terms.push(likePattern(digits));
            const one = `(c.title LIKE ? ESCAPE '\\' OR c.chat_json LIKE ? ESCAPE '\\' OR c.id IN (SELECT m.conversation_id FROM inbox m WHERE m.sender_name LIKE ? ESCAPE '\\' OR m.sender_phone LIKE ? ESCAPE '\\' OR m.text LIKE ? ESCAPE '\\'))`;
            w.push(`(${terms.map(() => one).join(' OR ')})`);
            for (const term of terms) params.push(term, term, term, term, term);
          }
          const outer: string[] = [];
          if (query.state) {
            outer.push('state = ?');
            params.push(query.state);
          }
          return db
            .query<ConversationRow, (string | number)[]>(
              `${CONVERSATION_SELECT} ${w.length ? `WHERE ${w.join(' AND ')}` : ''}) ${outer.length ? `WHERE ${outer.join(' AND ')}` : ''} ORDER BY last_activity_at DESC, id DESC LIMIT ?`,
            )
            .all(new Date(gw.clock.now()).toISOString(), ...params, opts.limit);
        };
        return reads.list(
          request,
          limit,
          () => {
            const res = page(localRows({ after, ids, limit: limit + 1 }), limit, (r) => ({
              at: r.last_activity_at,
              id: r.id,
            }));
            return { items: res.items.map(conversationView), meta: res.meta };
          },
          {
            key: conversationKey,
            // One conversation id on several nodes after its shard moved (the id is a hash of
            // instance and chat): listed once, with its latest activity.
            copies: after ? (of) => localRows({ ids: of, limit: of.length }).map(conversationView) : undefined,
          },
        );
      },
      {
        query: t.Object({
          ...PageQuery,
          instanceId: t.Optional(t.String({ maxLength: 100 })),
          ids: t.Optional(t.String({ maxLength: 3000, description: 'Comma list of conversation ids' })),
          q: t.Optional(
            t.String({
              maxLength: 200,
              description:
                "Search: chat name or address, a sender's name or phone (digits match however typed), message text",
            }),
          ),
          state: t.Optional(
            t.Union(ConversationStateSchema.anyOf, { description: 'Only conversations in this state' }),
          ),
        }),
        detail: {
          tags: ['traces'],
          summary: 'List conversations',
          description:
            'By recent activity, newest first. Cluster mode: gathered from every node; a conversation held by several nodes (its shard moved) is listed once, with its latest activity, so a page may hold fewer than limit items while meta.hasMore is true; meta.partial is true when a node did not answer in time.',
        },
        response: {
          200: t.Object({ items: t.Array(Conversation), meta: GatheredPageMeta }, { description: 'Conversations' }),
          ...errorResponses,
        },
      },
    )
    .get(
      '/conversations/:id',
      async ({ params, request }) => {
        const r = db
          .query<ConversationRow, [string, string]>(`${CONVERSATION_SELECT} WHERE c.id = ?)`)
          .get(new Date(gw.clock.now()).toISOString(), params.id);
        const local = r && canSeeInstance(principalOf(request), r.instance_id) ? conversationView(r) : null;
        // Every node that ran it holds a copy; the one with the latest activity is the answer.
        return { data: await reads.newestCopy(request, 'Conversation', local, (v) => v.lastActivityAt) };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: {
          tags: ['traces'],
          summary: 'Get conversation',
          description:
            'One conversation; its messages are its traces (GET /api/v2/traces?conversationId=). Cluster mode: the copy with the latest activity among the nodes.',
        },
        response: {
          200: t.Object({ data: Conversation }, { description: 'The conversation' }),
          503: errorResponses[400],
          ...errorResponses,
        },
      },
    )
    .get(
      '/dead-letters',
      async ({ query, request }) => {
        const p = principalOf(request);
        const limit = query.limit ?? 50;
        const before = decodeTimeCursor(query.cursor);
        const w: string[] = [];
        const params: (string | number)[] = [];
        if (query.instanceId) {
          w.push('d.instance_id = ?');
          params.push(visibleInstance(gw, request, query.instanceId).id);
        }
        if (p.instanceIds) {
          w.push(p.instanceIds.length ? `d.instance_id IN (${p.instanceIds.map(() => '?').join(',')})` : '0');
          params.push(...p.instanceIds);
        }
        if (before) {
          const older = olderThan('d.created_at', 'd.id', before);
          w.push(older.sql);
          params.push(...older.params);
        }
        // Each node keeps the dead letters it wrote.
        return reads.list(
          request,
          limit,
          () => {
            const rows = db
              .query<DeadRow, (string | number)[]>(
                `SELECT d.*, i.id AS trace_id, i.text FROM dead_letters d JOIN inbox i ON i.seq = d.inbox_seq ${w.length ? `WHERE ${w.join(' AND ')}` : ''} ORDER BY d.created_at DESC, d.id DESC LIMIT ?`,
              )
              .all(...params, limit + 1);
            const res = page(rows, limit, (r) => ({ at: r.created_at, id: r.id }));
            return { items: res.items.map(deadView), meta: res.meta };
          },
          { key: deadKey },
        );
      },
      {
        query: t.Object({ ...PageQuery, instanceId: t.Optional(t.String({ maxLength: 100 })) }),
        detail: {
          tags: ['dead letters'],
          summary: 'List dead letters',
          description:
            'Messages that failed every attempt, newest first. Cluster mode: gathered from every node (each keeps the dead letters it wrote), newest first by (createdAt, id); meta.partial is true when a node did not answer in time.',
        },
        response: {
          200: t.Object({ items: t.Array(DeadLetter), meta: GatheredPageMeta }, { description: 'Dead letters' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '/dead-letters/:id/replay',
      ({ params, request, set }) =>
        // A dead letter lives on the node that dead-lettered it: that node replays it.
        reads.atHolder(request, set, 'Dead letter', localDead(request, params.id), async (r) => ({
          data: await reads.replayDeadLetter(r, () => {
            // Only a message that has finished dead-lettering can re-enter (not one still sending its error reply).
            if (!gw.pipeline.inbox.replayDeadLetter(r))
              throw new ApiError('CONFLICT', 'The message is still being dead-lettered; retry in a moment');
            return { traceId: r.trace_id, status: 'pending' };
          }),
        })),
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: {
          tags: ['dead letters'],
          summary: 'Replay dead letter',
          description:
            "The message re-enters its conversation, ahead of newer messages (in inbox order); a committed agent reply is not recomputed. Cluster mode: works on any node (the node holding the dead letter acts); the message is handed to the instance's shard owner like a new one, durably through Redis: a new trace (data.traceId), queued after the messages the owner already has, the agent asked again.",
        },
        response: {
          200: t.Object({ data: t.Object({ traceId: t.String(), status: t.String() }) }, { description: 'Re-queued' }),
          409: errorResponses[400],
          503: errorResponses[400],
          ...errorResponses,
        },
      },
    )
    .delete(
      '/dead-letters/:id',
      ({ params, request, set }) =>
        reads.atHolder(request, set, 'Dead letter', localDead(request, params.id), (r) => {
          gw.pipeline.inbox.deleteDeadLetter(r.id);
          return { success: true as const };
        }),
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: {
          tags: ['dead letters'],
          summary: 'Delete dead letter',
          description:
            'Forgets the dead letter; the trace stays. Cluster mode: works on any node (the node holding it deletes it).',
        },
        response: { 200: SuccessSchema, 503: errorResponses[400], ...errorResponses },
      },
    );
}
