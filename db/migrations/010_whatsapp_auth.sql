-- Baileys auth state per WhatsApp instance: the creds row (kind 'creds', key_id '') and the
-- signal keys (kind = key type: 'pre-key', 'session', 'sender-key', 'app-state-sync-key', ...).
-- Values are JSON written with Baileys' BufferJSON replacer. Deleting an instance drops its state.
CREATE TABLE whatsapp_auth (
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  key_id TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (instance_id, kind, key_id)
) WITHOUT ROWID;
