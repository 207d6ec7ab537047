// Events: what happened, queryable across channels. One row per inbound message, per outbound
// message (agent reply or API send) and per instance status change, with FTS5 search on text.
//
// Where events come from (both wired by the gateway as the pipeline's consumers):
//  - messages: recordTerminal(), once a message finished. A message's row reaches a terminal state exactly
//    once per run (and again after a restart if the process died first), so recording there keeps
//    the ingest hot path untouched. Events are written in batches after the terminal commit; a
//    crash inside that short window is repaired at the next start by backfill(). The cost:
//    a received message shows up as an event once it was processed (answered, blocked, failed),
//    not while the agent is still working; shed messages (never processed) have no event.
//  - instance status: recordStatus(), on each channel status change, written at once inside the
//    transaction that stores the status (instances.setStatus), so the status, its event and its
//    webhook deliveries exist together or not at all (there is no terminal state to repair from).
// Message events are queued and flushed every 20 ms in one transaction, off the actor's path. Full-text
// indexing runs separately in larger batches (every ~250 ms, and before any search) up to a
// watermark stored with the index (migration 005), so a search always sees every written event.
// Kept whole as the one owner of the events table and its index: recording, indexing and search
// share the write batches and the full-text watermark. Renderings for agents: event-digest.ts.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import { kindsMatching, platformOf } from '../channels/registry.ts';
import type { TerminalInfo } from '../core/conversation.ts';
import type { Instance, InstanceStatus } from '../core/instance.ts';
import type { InboundMessage, OutboundMessage } from '../core/message.ts';
import type { StreamHub } from '../stream/hub.ts';
import { crashPoint } from './crash.ts';
import { isoNow, newId } from './ids.ts';
import type { InboxRow } from './inbox.ts';
import { olderThan, type TimeKey } from './pagination.ts';
import type { Attribution, PersonService } from './persons.ts';

export interface EventRow {
  seq: number;
  id: string;
  type: string;
  channel: string | null;
  instance_id: string | null;
  person_id: string | null;
  identity_id: string | null;
  conversation_id: string | null;
  trace_id: string | null;
  content_type: string | null;
  text: string | null;
  payload_json: string | null;
  created_at: string;
}

export interface EventView {
  id: string;
  type: string;
  channel: string | null;
  instanceId: string | null;
  personId: string | null;
  conversationId: string | null;
  traceId: string | null;
  contentType: string | null;
  text: string | null;
  payload: Record<string, unknown> | null;
  createdAt: string;
}

export interface EventFilter {
  channel?: string[];
  instanceId?: string[];
  personId?: string[];
  /** Exact types, or a family with `.*` (e.g. `instance.*`). */
  eventType?: string[];
  contentType?: string[];
  conversationId?: string;
  since?: string;
  until?: string;
  /** Full-text search on the event text (words, all must match; the last one as a prefix). */
  search?: string;
  /** Instance-bound keys: only these instances (null = all). */
  visibleInstances?: string[] | null;
}

interface NewEvent {
  type: string;
  channel: string | null;
  instanceId: string | null;
  conversationId: string | null;
  traceId: string | null;
  contentType: string | null;
  text: string | null;
  payload: Record<string, unknown>;
  createdAt: string;
  /** Resolved inside the flush transaction (creates persons for new senders). */
  attribute?: () => Attribution | null;
}

export function eventView(r: EventRow): EventView {
  return {
    id: r.id,
    type: r.type,
    channel: r.channel,
    instanceId: r.instance_id,
    personId: r.person_id,
    conversationId: r.conversation_id,
    traceId: r.trace_id,
    contentType: r.content_type,
    text: r.text,
    payload: r.payload_json ? JSON.parse(r.payload_json) : null,
    createdAt: r.created_at,
  };
}

/** Turns free text into a safe FTS5 query: quoted words, all required, the last as a prefix. */
export function ftsQuery(search: string): string | null {
  const words = search.match(/[\p{L}\p{N}_]+/gu);
  if (!words?.length) return null;
  return words.map((w, i) => `"${w}"${i === words.length - 1 ? '*' : ''}`).join(' ');
}

const isoOrNull = (v: string | undefined) => (v ? new Date(v).toISOString() : undefined);

/** How long written events wait before the full-text indexer picks them up (searches do not wait). */
const FTS_INDEX_DELAY_MS = 250;

export class EventService {
  private queue: NewEvent[] = [];
  private scheduled = false;
  private insert;
  private fts;
  private ftsTimer: ReturnType<typeof setTimeout> | null = null;
  /** Called inside the write transaction for each new event (the outgoing webhooks' outbox). */
  private writtenListeners: Array<(e: EventView) => void> = [];

  constructor(
    private db: Database,
    readonly persons: PersonService,
    private opts: { log?: Logger; hub?: StreamHub } = {},
  ) {
    this.insert = db.query<
      { seq: number },
      [
        string,
        string,
        string | null,
        string | null,
        string | null,
        string | null,
        string | null,
        string | null,
        string | null,
        string | null,
        string,
        string,
      ]
    >(
      `INSERT INTO events (id, type, channel, instance_id, person_id, identity_id, conversation_id, trace_id, content_type, text, payload_json, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq`,
    );
    this.fts = {
      behind: db.query<{ from: number; to: number | null }, []>(
        'SELECT indexed_seq AS "from", (SELECT MAX(seq) FROM events) AS "to" FROM events_fts_state WHERE id = 1',
      ),
      index: db.query<unknown, [number, number]>(
        'INSERT INTO events_fts (rowid, text) SELECT seq, text FROM events WHERE seq > ? AND seq <= ? AND text IS NOT NULL ORDER BY seq',
      ),
      advance: db.query<unknown, [number]>('UPDATE events_fts_state SET indexed_seq = ? WHERE id = 1'),
      received: db.query<{ person_id: string | null; identity_id: string | null }, [string]>(
        "SELECT person_id, identity_id FROM events WHERE trace_id = ? AND type = 'message.received'",
      ),
      externalId: db.query<{ platform_message_id: string | null }, [number]>(
        "SELECT platform_message_id FROM outbox WHERE inbox_seq = ? AND part < 10000 AND status = 'sent' ORDER BY part LIMIT 1",
      ),
    };
    // Events written before a shutdown may not be indexed yet.
    this.scheduleIndex();
  }

  /**
   * `fn` runs inside the transaction that writes each new event (not for duplicates), so what it
   * writes commits or rolls back with the event: the outgoing webhooks' outbox (issue 21).
   */
  onWritten(fn: (e: EventView) => void): void {
    this.writtenListeners.push(fn);
  }

  /**
   * Records the messages that ended without their event (the process died in the short window
   * between a message's terminal commit and the batched event write). Run at start.
   */
  backfill(instance: (id: string) => Instance | null, now = Date.now()): number {
    // The window is one batch (20 ms) before a crash: a day back is plenty and keeps start-up cheap.
    // A row closed by cluster catch-up was recorded by the node that processed it (not twice).
    // In inbox order, so that per conversation the events (and their webhooks) keep their order.
    const since = new Date(now - 86_400_000).toISOString();
    const rows = this.db
      .query<InboxRow, [string]>(
        `SELECT i.* FROM inbox i WHERE i.completed_at >= ? AND i.status IN ('completed','failed','blocked','dead_lettered')
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.trace_id = i.id AND e.type IN ('message.received','message.sent','message.failed'))
           AND NOT EXISTS (SELECT 1 FROM trace_steps s WHERE s.trace_id = i.id AND s.step = 'handled_by_other_node')
         ORDER BY i.seq`,
      )
      .all(since);
    for (const row of rows) this.recordTerminal(row, row.status, instance(row.instance_id), row.response_text);
    this.flush();
    return rows.length;
  }

  /** `info` (from the conversation actor) saves lookups: whether an event can exist already, the sent platform id. */
  recordTerminal(
    row: InboxRow,
    status: string,
    inst: Instance | null,
    responseText: string | null,
    info?: TerminalInfo,
  ): void {
    let msg: InboundMessage;
    try {
      msg = JSON.parse(row.payload_json) as InboundMessage;
    } catch {
      return;
    }
    const channel = inst?.channel ?? null;
    const platform = platformOf(channel);
    const base = { channel, instanceId: row.instance_id, conversationId: row.conversation_id, traceId: row.id };
    const instanceName = inst?.name ?? null;
    const externalId = () => (info?.firstPartId !== undefined ? info.firstPartId : this.externalId(row.seq));

    if (row.kind === 'send') {
      const out = (msg.extra?.outbound ?? { text: msg.text }) as OutboundMessage;
      const ok = status === 'completed';
      const external = ok ? externalId() : null;
      this.enqueue({
        ...base,
        type: ok ? 'message.sent' : 'message.failed',
        contentType: row.content_type,
        text: row.text || null,
        createdAt: row.completed_at ?? isoNow(),
        payload: {
          direction: 'outbound',
          source: 'api',
          instanceName,
          messageId: row.id,
          externalMessageId: external,
          chat: msg.chat,
          status,
          error: ok
            ? null
            : (row.error ??
              this.db.query<{ error: string | null }, [number]>('SELECT error FROM inbox WHERE seq = ?').get(row.seq)
                ?.error ??
              null),
          ...(out.media
            ? {
                media: {
                  mediaType: out.media.mediaType,
                  url: out.media.url ?? null,
                  filename: out.media.filename ?? null,
                },
              }
            : {}),
          ...(out.reaction ? { reaction: out.reaction } : {}),
        },
        // An API send to a direct chat belongs to the person on the other side, when we know them.
        attribute: () => (msg.chat.kind === 'direct' ? this.persons.lookup(platform, msg.chat.chatId) : null),
      });
      return;
    }

    // A cluster dead-letter replay is the same inbound message again under a new trace: its sender
    // is not counted twice, and its received event exists already (the original trace's).
    const replayOf = typeof msg.extra?.replayOf === 'string' ? msg.extra.replayOf : null;
    let who: Attribution | null = null;
    const attribute = () => {
      if (who) return who;
      // A row at its terminal state again (dead-letter replay) has its received event already:
      // reuse its attribution instead of counting the message twice. A row fresh from this
      // process's ingest cannot have one.
      if (!info?.firstTerminal) {
        const r = this.fts.received.get(row.id);
        if (r) {
          who = r.person_id && r.identity_id ? { personId: r.person_id, identityId: r.identity_id } : null;
          return who;
        }
      }
      who = this.persons.observe(platform, msg.sender, row.received_at, !replayOf);
      return who;
    };
    if (!replayOf)
      this.enqueue({
        ...base,
        type: 'message.received',
        contentType: row.content_type,
        text: row.text || null,
        createdAt: row.received_at,
        payload: {
          direction: 'inbound',
          instanceName,
          providerMessageId: row.provider_message_id,
          chat: msg.chat,
          sender: msg.sender,
          status,
          platformTimestamp: msg.timestamp ?? null,
          replyToMessageId: msg.replyToMessageId ?? null,
          fromOwner: msg.fromOwner ?? false,
        },
        attribute,
      });
    if (status === 'completed' && responseText) {
      this.enqueue({
        ...base,
        type: 'message.sent',
        contentType: 'text',
        text: responseText,
        createdAt: isoNow(),
        payload: {
          direction: 'outbound',
          source: 'agent',
          instanceName,
          inReplyTo: row.provider_message_id,
          externalMessageId: externalId(),
          chat: msg.chat,
        },
        attribute,
      });
    }
  }

  recordStatus(inst: Instance, status: InstanceStatus, detail: { reason?: string; qr?: string | null }): void {
    // 'connecting' without a QR is a transition, not something anyone asks about later.
    if (status === 'connecting' && !detail.qr) return;
    const type = detail.qr ? 'instance.qr' : `instance.${status}`;
    const e: NewEvent = {
      type,
      channel: inst.channel,
      instanceId: inst.id,
      conversationId: null,
      traceId: null,
      contentType: null,
      text: detail.reason ?? null,
      createdAt: isoNow(),
      payload: { instanceName: inst.name, status, reason: detail.reason ?? null, hasQr: Boolean(detail.qr) },
    };
    // Joins the caller's transaction (a savepoint) when there is one; a failure throws to roll it back.
    const written = this.db.transaction(() => this.writeBatch([e]))();
    this.scheduleIndex();
    if (!this.db.inTransaction) this.publish(written);
    else if (written.length && this.opts.hub)
      // Published once the caller's transaction is over, and only if it committed.
      queueMicrotask(() => {
        try {
          this.publish(written.filter((v) => this.get(v.id)));
        } catch {
          // The database closed meanwhile (shutdown): nobody is listening any more.
        }
      });
  }

  private externalId(inboxSeq: number): string | null {
    return this.fts.externalId.get(inboxSeq)?.platform_message_id ?? null;
  }

  private enqueue(e: NewEvent): void {
    this.queue.push(e);
    if (!this.scheduled) {
      this.scheduled = true;
      // Events are a derived record: a short delay batches many messages into one transaction.
      setTimeout(() => this.flush(), 20);
    }
  }

  /** Writes queued events now (also called by tests and on shutdown). */
  flush(): void {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    let written: EventView[];
    try {
      written = this.db
        .transaction(() => {
          const w = this.writeBatch(batch);
          crashPoint('events_mid_write');
          return w;
        })
        .immediate();
    } catch (err) {
      // The database is closing or broken; events are a derived record, the messages are safe.
      this.opts.log?.error({ err: String(err), events: batch.length }, 'event write failed');
      return;
    }
    this.scheduleIndex();
    this.publish(written);
  }

  /** Inserts the events; call inside a transaction (the webhook outbox rows are written with them). */
  private writeBatch(batch: NewEvent[]): EventView[] {
    const written: EventView[] = [];
    const keep = Boolean(this.opts.hub) || this.writtenListeners.length > 0;
    for (const e of batch) {
      const who = e.attribute?.() ?? null;
      const id = newId();
      const r = this.insert.get(
        id,
        e.type,
        e.channel,
        e.instanceId,
        who?.personId ?? null,
        who?.identityId ?? null,
        e.conversationId,
        e.traceId,
        e.contentType,
        e.text,
        JSON.stringify(e.payload),
        e.createdAt,
      );
      if (r && keep) {
        const v: EventView = {
          id,
          type: e.type,
          channel: e.channel,
          instanceId: e.instanceId,
          personId: who?.personId ?? null,
          conversationId: e.conversationId,
          traceId: e.traceId,
          contentType: e.contentType,
          text: e.text,
          payload: e.payload,
          createdAt: e.createdAt,
        };
        written.push(v);
        for (const l of this.writtenListeners) l(v);
      }
    }
    return written;
  }

  private publish(written: EventView[]): void {
    const hub = this.opts.hub;
    if (!hub) return;
    for (const v of written)
      hub.publishEvent('events', { type: 'event.created', event: v }, v.instanceId ? { instanceId: v.instanceId } : {});
  }

  private scheduleIndex(): void {
    if (this.ftsTimer) return;
    this.ftsTimer = setTimeout(() => {
      this.ftsTimer = null;
      try {
        this.indexSearch();
      } catch (err) {
        // Closed database at shutdown, or a write error: the next start or search indexes the rest.
        this.opts.log?.warn({ err: String(err) }, 'event search indexing failed');
      }
    }, FTS_INDEX_DELAY_MS);
    this.ftsTimer.unref?.();
  }

  /** Adds every event above the watermark to the full-text index (one transaction). */
  indexSearch(): void {
    const peek = this.fts.behind.get();
    if (!peek || (peek.to ?? 0) <= peek.from) return;
    this.db
      .transaction(() => {
        const b = this.fts.behind.get()!;
        const to = b.to ?? 0;
        if (to <= b.from) return;
        this.fts.index.run(b.from, to);
        this.fts.advance.run(to);
      })
      .immediate();
  }

  /** Newest first by (created_at, id), `before` the cursor: the same order on every node (src/services/pagination.ts). */
  list(f: EventFilter & { before?: TimeKey; limit: number }): EventRow[] {
    const { where, params } = this.where(f);
    if (f.before) {
      const older = olderThan('e.created_at', 'e.id', f.before);
      where.push(older.sql);
      params.push(...older.params);
    }
    return this.db
      .query<EventRow, (string | number)[]>(
        `SELECT e.* FROM events e ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY e.created_at DESC, e.id DESC LIMIT ?`,
      )
      .all(...params, f.limit);
  }

  count(f: EventFilter): number {
    const { where, params } = this.where(f);
    return this.db
      .query<{ n: number }, (string | number)[]>(
        `SELECT COUNT(*) AS n FROM events e ${where.length ? `WHERE ${where.join(' AND ')}` : ''}`,
      )
      .get(...params)!.n;
  }

  get(id: string): EventRow | null {
    return this.db.query<EventRow, [string]>('SELECT * FROM events WHERE id = ?').get(id);
  }

  /** Distinct channels a person's events came through. */
  channelsOf(personId: string, visibleInstances: string[] | null): string[] {
    const { where, params } = this.where({ personId: [personId], visibleInstances });
    return this.db
      .query<{ channel: string }, (string | number)[]>(
        `SELECT DISTINCT e.channel FROM events e WHERE ${where.join(' AND ')} AND e.channel IS NOT NULL ORDER BY e.channel`,
      )
      .all(...params)
      .map((r) => r.channel);
  }

  private where(f: EventFilter): { where: string[]; params: (string | number)[] } {
    const where: string[] = [];
    const params: (string | number)[] = [];
    const inList = (col: string, values: string[]) => {
      where.push(`${col} IN (${values.map(() => '?').join(',')})`);
      params.push(...values);
    };
    if (f.channel?.length) {
      // A shared platform (e.g. "whatsapp") names all its kinds.
      const kinds = f.channel.flatMap(kindsMatching);
      inList('e.channel', kinds);
    }
    if (f.instanceId?.length) inList('e.instance_id', f.instanceId);
    if (f.visibleInstances) {
      if (f.visibleInstances.length) inList('e.instance_id', f.visibleInstances);
      else where.push('0');
    }
    if (f.personId?.length) inList('e.person_id', f.personId);
    if (f.eventType?.length) {
      const exact = f.eventType.filter((t) => !t.endsWith('.*'));
      const families = f.eventType.filter((t) => t.endsWith('.*')).map((t) => t.slice(0, -1));
      const parts: string[] = [];
      if (exact.length) {
        parts.push(`e.type IN (${exact.map(() => '?').join(',')})`);
        params.push(...exact);
      }
      for (const fam of families) {
        parts.push('substr(e.type, 1, ?) = ?');
        params.push(fam.length, fam);
      }
      where.push(`(${parts.join(' OR ')})`);
    }
    if (f.contentType?.length) inList('e.content_type', f.contentType);
    if (f.conversationId) {
      where.push('e.conversation_id = ?');
      params.push(f.conversationId);
    }
    const since = isoOrNull(f.since);
    const until = isoOrNull(f.until);
    if (since) {
      where.push('e.created_at >= ?');
      params.push(since);
    }
    if (until) {
      where.push('e.created_at <= ?');
      params.push(until);
    }
    if (f.search !== undefined) {
      this.indexSearch(); // results include events the background indexer has not reached yet
      const q = ftsQuery(f.search);
      if (q === null) where.push('0');
      else {
        where.push('e.seq IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)');
        params.push(q);
      }
    }
    return { where, params };
  }
}
