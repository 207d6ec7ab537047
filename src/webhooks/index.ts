// Outgoing webhooks (issue 21): subscriptions, a delivery outbox written in the same transaction
// as the event it reports, and a worker that signs (Standard Webhooks) and delivers with retries.
//
// Where events enter the outbox (each inside the transaction that records it):
//  - message.received / message.sent / message.failed and instance.status: in the event store's
//    write transaction (src/services/events.ts onWritten). The event store derives message records
//    from the committed terminal state of a message and repairs a crash between the two at the
//    next start (backfill), so an event and its deliveries exist together, exactly once. A status
//    event is written inside the transaction that stores the status (instances.setStatus).
//  - conversation.paused / conversation.resumed: in the transaction that writes the pause
//    (src/services/access.ts onPauseChange).
//  - webhook.test and redeliveries: from the API.
// Cluster mode: the node that records an event (the owner of the conversation's shard, or of
// the instance) holds its delivery rows in its own database and is the only node that sends them.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { Instance } from '../core/instance.ts';
import type { EventView } from '../services/events.ts';
import { isoNow, newId } from '../services/ids.ts';
import { DeliveryOutbox, type DeliveryRow } from './outbox.ts';
import { type SubscriptionInput, type SubscriptionRow, SubscriptionStore } from './subscriptions.ts';
import type { WebhookEvent } from './types.ts';
import { DeliveryWorker, type WorkerOptions } from './worker.ts';

export { WEBHOOK_EVENT_TYPES } from './types.ts';

/** An event as the event store wrote it. */
export type RecordedEvent = EventView;

/** A conversation was paused or resumed (what access.ts reports from inside its write). */
export interface PauseChange {
  paused: boolean;
  instanceId: string;
  conversationId: string;
  chatKey: string;
  reason: string | null;
  until: string | null;
}

export interface WebhookServiceOptions extends Partial<WorkerOptions> {
  retryPeriodMs: number;
  retentionMs: number;
  /** How long the previous secret keeps signing after a rotation (ms). */
  secretGraceMs: number;
}

/** The webhook event for an event-store record; null for types webhooks do not carry. */
export function webhookEventFor(e: RecordedEvent): WebhookEvent | null {
  const base = {
    msgId: `msg_${e.id}`,
    instanceId: e.instanceId,
    at: e.createdAt,
  };
  const payload = e.payload ?? {};
  if (e.type === 'message.received' || e.type === 'message.sent' || e.type === 'message.failed') {
    return {
      ...base,
      type: e.type,
      orderKey: e.conversationId ?? `instance:${e.instanceId}`,
      data: {
        eventId: e.id,
        instanceId: e.instanceId,
        conversationId: e.conversationId,
        traceId: e.traceId,
        messageId: e.traceId,
        personId: e.personId,
        channel: e.channel,
        contentType: e.contentType,
        text: e.text,
        ...payload,
      },
    };
  }
  if (e.type.startsWith('instance.')) {
    return {
      ...base,
      type: 'instance.status',
      orderKey: `instance:${e.instanceId}`,
      data: {
        eventId: e.id,
        instanceId: e.instanceId,
        instanceName: payload.instanceName ?? null,
        channel: e.channel,
        // instance.qr → 'qr'; otherwise the status itself (connected, disconnected, logged_out, …).
        status: e.type === 'instance.qr' ? 'qr' : e.type.slice('instance.'.length),
        reason: payload.reason ?? null,
      },
    };
  }
  return null;
}

/**
 * The webhook events of one event-store record. An inbound message that failed or was
 * dead-lettered is one `message.received` record (status in its data); subscribers also get a
 * `message.failed` for it, right after (its own webhook-id, derived from the record's).
 */
export function webhookEventsFor(e: RecordedEvent): WebhookEvent[] {
  const w = webhookEventFor(e);
  if (!w) return [];
  const status = e.payload?.status;
  if (e.type === 'message.received' && (status === 'failed' || status === 'dead_lettered'))
    return [w, { ...w, type: 'message.failed', msgId: `${w.msgId}_failed` }];
  return [w];
}

export class WebhookService {
  /** Replicated subscription rows arrived (cluster): the cached active list is stale. */
  invalidate(): void {
    this.subscriptions.invalidate();
  }

  readonly subscriptions: SubscriptionStore;
  readonly outbox: DeliveryOutbox;
  readonly worker: DeliveryWorker;

  constructor(
    private db: Database,
    private deps: {
      clock: Clock;
      log: Logger;
      fetch: typeof fetch;
      instance: (id: string) => Instance | null;
      options: WebhookServiceOptions;
    },
  ) {
    this.subscriptions = new SubscriptionStore(db, deps.clock);
    this.outbox = new DeliveryOutbox(db, deps.clock, this.subscriptions);
    this.worker = new DeliveryWorker(this.outbox, this.subscriptions, deps.fetch, deps.clock, deps.log, deps.options);
  }

  start(): void {
    this.worker.start();
  }

  stop(): Promise<void> {
    return this.worker.stop();
  }

  /** Called inside the event store's write transaction, once per event written. */
  recordEvent(e: RecordedEvent): void {
    // Most gateways have no subscription: skip building the event (two per message).
    if (this.subscriptions.active().length === 0) return;
    let n = 0;
    for (const w of webhookEventsFor(e)) n += this.outbox.record(w);
    if (n > 0) this.worker.kick(); // the timer fires after the commit
  }

  /** Called inside the transaction that writes (or deletes) a pause. */
  recordPause(c: PauseChange): void {
    const inst = this.deps.instance(c.instanceId);
    const w: WebhookEvent = {
      type: c.paused ? 'conversation.paused' : 'conversation.resumed',
      msgId: `msg_${newId()}`,
      orderKey: c.conversationId,
      instanceId: c.instanceId,
      at: isoNow(this.deps.clock.now()),
      data: {
        instanceId: c.instanceId,
        instanceName: inst?.name ?? null,
        channel: inst?.channel ?? null,
        conversationId: c.conversationId,
        chatKey: c.chatKey,
        ...(c.paused ? { reason: c.reason, until: c.until } : {}),
      },
    };
    if (this.outbox.record(w) > 0) this.worker.kick();
  }

  create(input: SubscriptionInput & { url: string }): SubscriptionRow {
    return this.subscriptions.create(input);
  }

  rotateSecret(id: string): SubscriptionRow {
    return this.subscriptions.rotate(id, this.deps.options.secretGraceMs);
  }

  /** Queues a `webhook.test` event for one subscription (even when its filter leaves tests out). */
  sendTest(sub: SubscriptionRow): DeliveryRow {
    const msgId = `msg_${newId()}`;
    this.db.transaction(() =>
      this.outbox.record(
        {
          type: 'webhook.test',
          msgId,
          orderKey: msgId,
          instanceId: null,
          at: isoNow(this.deps.clock.now()),
          data: { subscriptionId: sub.id, message: 'Test event from Switchboard' },
        },
        sub,
      ),
    )();
    this.worker.kick();
    return this.outbox.find(sub.id, msgId)!;
  }

  redeliver(deliveryId: string): DeliveryRow | null {
    const row = this.outbox.redeliver(deliveryId);
    this.worker.kick();
    return row;
  }
}
