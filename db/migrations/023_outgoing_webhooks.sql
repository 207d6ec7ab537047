-- Outgoing webhooks (issue 21): subscriptions (configuration, replicated in cluster mode) and the
-- delivery outbox (per node: the node that records an event delivers it).
CREATE TABLE webhook_subscriptions (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  description TEXT,
  events_json TEXT NOT NULL DEFAULT '[]',    -- event types; [] = every type
  instance_ids_json TEXT,                    -- null = every instance
  secret TEXT NOT NULL,                      -- whsec_<base64>; shown on create and rotation only
  previous_secret TEXT,                      -- still signed with until previous_secret_until (rotation)
  previous_secret_until INTEGER,             -- ms since the epoch
  active INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT,                      -- why the gateway disabled it (410, failing for the retry period)
  disabled_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- One row per (event, subscription): written in the transaction that records the event. `msg_id`
-- is the webhook-id header, the same on every attempt and redelivery. Rows of one
-- (subscription, order_key) are delivered in seq order; order_key is the conversation id (message
-- and pause events), `instance:<id>` (instance status) or the row's own id (test events).
CREATE TABLE webhook_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
  msg_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  order_key TEXT NOT NULL,
  payload_json TEXT NOT NULL,                -- the body, byte for byte the same on every attempt
  status TEXT NOT NULL DEFAULT 'pending',    -- pending | delivered | failed
  attempts INTEGER NOT NULL DEFAULT 0,
  window_start INTEGER NOT NULL,             -- ms: retries stop retry-period after this
  next_attempt_at INTEGER NOT NULL,          -- ms
  last_attempt_at INTEGER,
  last_status_code INTEGER,
  last_error TEXT,
  delivered_at INTEGER,
  created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (subscription_id, msg_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (subscription_id, order_key, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (subscription_id, seq);
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at) WHERE status <> 'pending';
