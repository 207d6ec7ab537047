// v2 traces, conversations and dead letters.
import { Elysia, t } from 'elysia';
import type { Gateway } from '../../gateway.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { principalOf } from '../../server.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { commaList, decodeCursor, page } from '../pagination.ts';
import { PageMeta, PageQuery, SuccessSchema } from '../schemas.ts';
import { v2Trace } from '../trace-views.ts';
import { visibleInstance } from './instances.ts';
import { decodeTimeCursor, gatherPage, GatheredPageMeta } from '../../cluster/gather.ts';

const V2Trace = t.Object({ id: t.String(), status: t.String(), steps: t.Array(t.Any()) }, { additionalProperties: true, description: 'Trace' });
const DeadLetter = t.Object(
  { id: t.String(), traceId: t.String(), instanceId: t.String(), conversationId: t.String(), reason: t.String(), attempts: t.Integer(), createdAt: t.String(), text: t.String() },
  { description: 'Dead letter' },
);
const Conversation = t.Object(
  { id: t.String(), instanceId: t.String(), chat: t.Any(), kind: t.String(), title: t.Union([t.String(), t.Null()]), lastActivityAt: t.String(), pending: t.Integer() },
  { description: 'Conversation' },
);

interface DeadRow { id: string; inbox_seq: number; instance_id: string; conversation_id: string; reason: string; attempts: number; created_at: string; trace_id: string; text: string }

export function tracesV2(gw: Gateway) {
  const { db } = gw;
  const deadView = (r: DeadRow) => ({ id: r.id, traceId: r.trace_id, instanceId: r.instance_id, conversationId: r.conversation_id, reason: r.reason, attempts: r.attempts, createdAt: r.created_at, text: r.text });
  const visibleDead = (request: Request, id: string) => {
    const r = db.query<DeadRow, [string]>('SELECT d.*, i.id AS trace_id, i.text FROM dead_letters d JOIN inbox i ON i.seq = d.inbox_seq WHERE d.id = ?').get(id);
    if (!r || !canSeeInstance(principalOf(request), r.instance_id)) throw new ApiError('NOT_FOUND', 'Dead letter not found');
    return r;
  };
  return new Elysia({ name: 'traces-v2', prefix: '/api/v2' })
    .get(
      '/traces',
      async ({ query, request }) => {
        const p = principalOf(request);
        const limit = query.limit ?? 50;
        const cluster = gw.cluster;
        // Cluster: the cursor is (receivedAt, id) so it means the same on every node (src/cluster/gather.ts).
        const after = cluster ? undefined : decodeCursor<{ seq: number }>(query.cursor, (v) => Number.isInteger(v.seq));
        const before = cluster ? decodeTimeCursor(query.cursor) : undefined;
        const instanceId = query.instanceId ? visibleInstance(gw, request, query.instanceId).id : undefined;
        const rows = gw.pipeline.traces.list({
          instanceId, instanceIds: p.instanceIds, status: commaList(query.status), userId: query.userId,
          // Stored timestamps are UTC ISO strings: compare like with like (offsets, missing milliseconds).
          conversationId: query.conversationId, since: query.since ? new Date(query.since).toISOString() : undefined,
          until: query.until ? new Date(query.until).toISOString() : undefined, beforeSeq: after?.seq, before, byReceived: !!cluster, limit: limit + 1,
        });
        if (cluster) return gatherPage(cluster, request, limit, rows.map(v2Trace), (v) => ({ at: v.receivedAt, id: v.id }));
        const res = page(rows, limit, (r) => ({ seq: r.seq }));
        return { items: res.items.map(v2Trace), meta: res.meta };
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
        }),
        detail: { tags: ['traces'], summary: 'List traces', description: 'Newest first, cursor-paginated. Cluster mode: gathered from every node, newest first by (receivedAt, id); meta.partial is true when a node did not answer in time.' },
        response: { 200: t.Object({ items: t.Array(V2Trace), meta: GatheredPageMeta }, { description: 'A page of traces' }), ...errorResponses },
      },
    )
    .get(
      '/traces/:id',
      async ({ params, request }) => {
        const r = gw.pipeline.traces.get(params.id);
        // Cluster: a trace lives on the node that owned its instance's shard; ask the peers.
        const remote = !r && gw.cluster ? await gw.cluster.fromPeers(request) : null;
        if (remote) return remote as { data: ReturnType<typeof v2Trace> };
        if (!r || !canSeeInstance(principalOf(request), r.instance_id)) throw new ApiError('NOT_FOUND', 'Trace not found');
        return { data: v2Trace(r) };
      },
      { params: t.Object({ id: t.String({ maxLength: 100 }) }), detail: { tags: ['traces'], summary: 'Get trace', description: 'One trace with its steps.' }, response: { 200: t.Object({ data: V2Trace }, { description: 'The trace' }), ...errorResponses } },
    )
    .get(
      '/conversations',
      ({ query, request }) => {
        const p = principalOf(request);
        const limit = query.limit ?? 50;
        const after = decodeCursor<{ at: string; id: string }>(query.cursor, (v) => typeof v.at === 'string' && typeof v.id === 'string');
        const w: string[] = [];
        const params: (string | number)[] = [];
        if (query.instanceId) { w.push('c.instance_id = ?'); params.push(visibleInstance(gw, request, query.instanceId).id); }
        if (p.instanceIds) { w.push(p.instanceIds.length ? `c.instance_id IN (${p.instanceIds.map(() => '?').join(',')})` : '0'); params.push(...p.instanceIds); }
        if (after) { w.push('(c.last_activity_at < ? OR (c.last_activity_at = ? AND c.id < ?))'); params.push(after.at, after.at, after.id); }
        const rows = db
          .query<{ id: string; instance_id: string; chat_json: string; kind: string; title: string | null; last_activity_at: string }, (string | number)[]>(
            `SELECT c.* FROM conversations c ${w.length ? 'WHERE ' + w.join(' AND ') : ''} ORDER BY c.last_activity_at DESC, c.id DESC LIMIT ?`,
          )
          .all(...params, limit + 1);
        const res = page(rows, limit, (r) => ({ at: r.last_activity_at, id: r.id }));
        return {
          items: res.items.map((r) => ({ id: r.id, instanceId: r.instance_id, chat: JSON.parse(r.chat_json), kind: r.kind, title: r.title, lastActivityAt: r.last_activity_at, pending: gw.pipeline.inbox.conversationBacklog(r.id) })),
          meta: res.meta,
        };
      },
      {
        query: t.Object({ ...PageQuery, instanceId: t.Optional(t.String({ maxLength: 100 })) }),
        detail: { tags: ['traces'], summary: 'List conversations', description: 'By recent activity, newest first.' },
        response: { 200: t.Object({ items: t.Array(Conversation), meta: PageMeta }, { description: 'Conversations' }), ...errorResponses },
      },
    )
    .get(
      '/conversations/:id',
      ({ params, request }) => {
        const r = db
          .query<{ id: string; instance_id: string; chat_json: string; kind: string; title: string | null; last_activity_at: string }, [string]>('SELECT * FROM conversations WHERE id = ?')
          .get(params.id);
        if (!r || !canSeeInstance(principalOf(request), r.instance_id)) throw new ApiError('NOT_FOUND', 'Conversation not found');
        return { data: { id: r.id, instanceId: r.instance_id, chat: JSON.parse(r.chat_json), kind: r.kind, title: r.title, lastActivityAt: r.last_activity_at, pending: gw.pipeline.inbox.conversationBacklog(r.id) } };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: { tags: ['traces'], summary: 'Get conversation', description: 'One conversation; its messages are its traces (GET /api/v2/traces?conversationId=).' },
        response: { 200: t.Object({ data: Conversation }, { description: 'The conversation' }), ...errorResponses },
      },
    )
    .get(
      '/dead-letters',
      ({ query, request }) => {
        const p = principalOf(request);
        const limit = query.limit ?? 50;
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const w: string[] = [];
        const params: (string | number)[] = [];
        if (query.instanceId) { w.push('d.instance_id = ?'); params.push(visibleInstance(gw, request, query.instanceId).id); }
        if (p.instanceIds) { w.push(p.instanceIds.length ? `d.instance_id IN (${p.instanceIds.map(() => '?').join(',')})` : '0'); params.push(...p.instanceIds); }
        if (after) { w.push('d.id < ?'); params.push(after.id); }
        const rows = db
          .query<DeadRow, (string | number)[]>(`SELECT d.*, i.id AS trace_id, i.text FROM dead_letters d JOIN inbox i ON i.seq = d.inbox_seq ${w.length ? 'WHERE ' + w.join(' AND ') : ''} ORDER BY d.id DESC LIMIT ?`)
          .all(...params, limit + 1);
        const res = page(rows, limit, (r) => ({ id: r.id }));
        return { items: res.items.map(deadView), meta: res.meta };
      },
      {
        query: t.Object({ ...PageQuery, instanceId: t.Optional(t.String({ maxLength: 100 })) }),
        detail: { tags: ['dead letters'], summary: 'List dead letters', description: 'Messages that failed every attempt, newest first.' },
        response: { 200: t.Object({ items: t.Array(DeadLetter), meta: PageMeta }, { description: 'Dead letters' }), ...errorResponses },
      },
    )
    .post(
      '/dead-letters/:id/replay',
      ({ params, request }) => {
        const r = visibleDead(request, params.id);
        // Only a message that has finished dead-lettering can re-enter (not one still sending its error reply).
        const reopened = db.transaction(() => {
          const changed = db
            .query("UPDATE inbox SET status = 'pending', attempts = 0, error = NULL, completed_at = NULL, duration_ms = NULL WHERE seq = ? AND status = 'dead_lettered'")
            .run(r.inbox_seq).changes;
          if (changed) db.query('DELETE FROM dead_letters WHERE id = ?').run(r.id);
          return changed > 0;
        })();
        if (!reopened) throw new ApiError('CONFLICT', 'The message is still being dead-lettered; retry in a moment');
        gw.pipeline.traces.addStep(r.trace_id, 'replayed', 'success', { dead_letter_id: r.id });
        gw.pipeline.inbox.reopened(r.conversation_id);
        gw.pipeline.wake(r.conversation_id);
        return { data: { traceId: r.trace_id, status: 'pending' } };
      },
      {
        params: t.Object({ id: t.String({ maxLength: 100 }) }),
        detail: { tags: ['dead letters'], summary: 'Replay dead letter', description: 'The message re-enters its conversation, ahead of newer messages (in inbox order); a committed agent reply is not recomputed.' },
        response: { 200: t.Object({ data: t.Object({ traceId: t.String(), status: t.String() }) }, { description: 'Re-queued' }), 409: errorResponses[400], ...errorResponses },
      },
    )
    .delete(
      '/dead-letters/:id',
      ({ params, request }) => {
        db.query('DELETE FROM dead_letters WHERE id = ?').run(visibleDead(request, params.id).id);
        return { success: true };
      },
      { params: t.Object({ id: t.String({ maxLength: 100 }) }), detail: { tags: ['dead letters'], summary: 'Delete dead letter', description: 'Forgets the dead letter; the trace stays.' }, response: { 200: SuccessSchema, ...errorResponses } },
    );
}
