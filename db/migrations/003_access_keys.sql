-- Access rules, conversation pauses (stop keyword / human takeover) and the API audit log.
CREATE TABLE access_rules (
  id TEXT PRIMARY KEY,
  instance_id TEXT REFERENCES instances(id) ON DELETE CASCADE,  -- null = global
  type TEXT NOT NULL CHECK (type IN ('allow', 'deny')),
  criteria_json TEXT NOT NULL,           -- {platformUserId?, phone? (with * wildcard), channel?, chatKind?, groupId?}
  priority INTEGER NOT NULL DEFAULT 0,
  action TEXT NOT NULL DEFAULT 'block' CHECK (action IN ('block', 'reply')),
  reply_message TEXT,
  expires_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX access_rules_instance ON access_rules (instance_id);

-- A paused conversation gets no agent reply until `until` (null = until the resume keyword).
CREATE TABLE conversation_pauses (
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  chat_key TEXT NOT NULL,                -- chatId, or chatId#threadId
  reason TEXT NOT NULL CHECK (reason IN ('stop_keyword', 'human_takeover')),
  until TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (instance_id, chat_key)
);

-- One row per authenticated /api request. No foreign key: bootstrap keys are replaced by delete.
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key_id TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  ip TEXT,
  user_agent TEXT,
  at TEXT NOT NULL
);
CREATE INDEX audit_log_key ON audit_log (key_id, seq);
CREATE INDEX audit_log_at ON audit_log (at);
