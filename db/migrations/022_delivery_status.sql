-- Delivery receipts for sent messages (e.g. WhatsApp Cloud API statuses): the furthest state the
-- platform reported for an outbox part (sent < delivered < read; failed), and when. Looked up by
-- the platform's message id, which the receipts carry.
ALTER TABLE outbox ADD COLUMN delivery_status TEXT;
ALTER TABLE outbox ADD COLUMN delivery_status_at TEXT;
CREATE INDEX outbox_platform_message_id ON outbox (platform_message_id) WHERE platform_message_id IS NOT NULL;
