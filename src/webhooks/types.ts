// What outgoing webhooks deliver: the event types a subscription may ask for, the event as it is
// put into the outbox, and the views the API and the console show.

/** Event types a subscription can filter on (an empty filter means all of them). */
export const WEBHOOK_EVENT_TYPES = [
  'message.received',
  'message.sent',
  'message.failed',
  'instance.status',
  'conversation.paused',
  'conversation.resumed',
  'webhook.test',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** One event on its way into the outbox (one delivery row per matching subscription). */
export interface WebhookEvent {
  type: WebhookEventType;
  /** The webhook-id header: the same for every subscription, attempt and redelivery. */
  msgId: string;
  /** Deliveries with the same key (per subscription) go out in the order they were recorded. */
  orderKey: string;
  /** null for events about no instance (webhook.test). */
  instanceId: string | null;
  /** ISO time of the event (the body's `timestamp`). */
  at: string;
  data: Record<string, unknown>;
}

export interface SubscriptionView {
  id: string;
  /** Credentials in it (password, token-like query values) masked, except in the create and rotate-secret answers. */
  url: string;
  description: string | null;
  events: string[];
  instanceIds: string[] | null;
  active: boolean;
  /** Why the gateway disabled it (410 Gone, failing for the whole retry period); null otherwise. */
  disabledReason: string | null;
  disabledAt: string | null;
  /** Full only in the answers to create and rotate-secret; masked everywhere else. */
  secret: string;
  /** End of the rotation's grace period (the previous secret still signs until then), or null. */
  previousSecretExpiresAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface DeliveryView {
  id: string;
  subscriptionId: string;
  /** The webhook-id header (stable across retries and redeliveries). */
  webhookId: string;
  eventType: string;
  status: DeliveryStatus;
  attempts: number;
  lastStatusCode: number | null;
  lastError: string | null;
  lastAttemptAt: string | null;
  /** When the next attempt is due (pending only). */
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  createdAt: string;
  payload: Record<string, unknown>;
}
