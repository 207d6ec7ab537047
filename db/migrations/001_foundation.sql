-- Instances, API keys (hashed), audit, settings.
CREATE TABLE instances (
  id TEXT PRIMARY KEY,                 -- v2 id (uuid)
  seq INTEGER NOT NULL UNIQUE,         -- v1 numeric id
  name TEXT NOT NULL UNIQUE,
  channel TEXT NOT NULL,
  is_active INTEGER NOT NULL DEFAULT 1,
  is_default INTEGER NOT NULL DEFAULT 0,
  agent_json TEXT NOT NULL DEFAULT '{}',
  config_json TEXT NOT NULL DEFAULT '{}',   -- channel fields, snake_case v1 names
  settings_json TEXT NOT NULL DEFAULT '{}', -- replyMode, errorReply, accessMode, ...
  webhook_secret TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'disconnected',
  status_reason TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX instances_one_default ON instances (is_default) WHERE is_default = 1;

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL,
  key_suffix TEXT NOT NULL,
  scopes_json TEXT NOT NULL DEFAULT '["*"]',
  instance_ids_json TEXT,               -- null = all instances
  expires_at TEXT,
  revoked_at TEXT,
  is_bootstrap INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  last_used_at TEXT,
  last_used_ip TEXT,
  usage_count INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE settings (
  key TEXT PRIMARY KEY,
  value_json TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
