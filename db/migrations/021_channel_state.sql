-- Small per-instance state a channel keeps between starts (e.g. the update offset of a polling
-- bot), one row per (instance, key). Deleting an instance drops its state.
CREATE TABLE channel_state (
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (instance_id, key)
) WITHOUT ROWID;
