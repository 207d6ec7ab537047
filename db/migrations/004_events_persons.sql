-- Events (what happened: messages in and out, instance status changes) with full-text search,
-- and persons with their platform identities.
CREATE TABLE persons (
  id TEXT PRIMARY KEY,
  display_name TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX persons_name ON persons (display_name COLLATE NOCASE);

-- One platform identity (a WhatsApp number, a Discord user, a Slack user). Platform is the
-- channel family (whatsapp | discord | slack | api): one WhatsApp number is the same identity on
-- every WhatsApp instance.
CREATE TABLE identities (
  id TEXT PRIMARY KEY,
  person_id TEXT NOT NULL REFERENCES persons(id),
  platform TEXT NOT NULL,
  platform_user_id TEXT NOT NULL,        -- the first id seen (e.g. the phone JID)
  display_name TEXT,
  phone TEXT,
  message_count INTEGER NOT NULL DEFAULT 0,
  first_seen_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL,
  unlinked_reason TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX identities_person ON identities (person_id);

-- Every id an identity is known by (its own id plus aliases such as a WhatsApp LID).
CREATE TABLE identity_keys (
  platform TEXT NOT NULL,
  key TEXT NOT NULL,
  identity_id TEXT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  PRIMARY KEY (platform, key)
);
CREATE INDEX identity_keys_identity ON identity_keys (identity_id);

CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- monotonic: cursors page on it, newest first
  id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,                    -- message.received | message.sent | message.failed | instance.<status> | instance.qr
  channel TEXT,                          -- instance channel kind (whatsapp-evolution, discord, ...)
  instance_id TEXT,
  person_id TEXT,
  identity_id TEXT,
  conversation_id TEXT,
  trace_id TEXT,
  content_type TEXT,
  text TEXT,
  payload_json TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX events_instance ON events (instance_id, seq);
CREATE INDEX events_person ON events (person_id, seq);
CREATE INDEX events_identity ON events (identity_id);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_created ON events (created_at);

-- External-content FTS index over events.text, kept in sync by triggers (events are append-only;
-- only person/identity attribution changes, which does not touch the index).
CREATE VIRTUAL TABLE events_fts USING fts5(text, content='events', content_rowid='seq', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER events_fts_insert AFTER INSERT ON events WHEN new.text IS NOT NULL BEGIN
  INSERT INTO events_fts (rowid, text) VALUES (new.seq, new.text);
END;
CREATE TRIGGER events_fts_delete AFTER DELETE ON events WHEN old.text IS NOT NULL BEGIN
  INSERT INTO events_fts (events_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
CREATE TRIGGER events_fts_update AFTER UPDATE OF text ON events BEGIN
  INSERT INTO events_fts (events_fts, rowid, text) SELECT 'delete', old.seq, old.text WHERE old.text IS NOT NULL;
  INSERT INTO events_fts (rowid, text) SELECT new.seq, new.text WHERE new.text IS NOT NULL;
END;

-- A message's event of a given type is recorded once, even when its row reaches a terminal state
-- again (dead-letter replay).
CREATE UNIQUE INDEX events_trace_type ON events (trace_id, type) WHERE trace_id IS NOT NULL;
