-- The durable inbox (one row per inbound message; it is also the message's trace), trace steps,
-- the outbox, conversations and dead letters.
CREATE TABLE conversations (
  id TEXT PRIMARY KEY,
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  chat_key TEXT NOT NULL,              -- chatId[/threadId]
  chat_json TEXT NOT NULL,
  kind TEXT NOT NULL,                  -- direct | group
  title TEXT,
  created_at TEXT NOT NULL,
  last_activity_at TEXT NOT NULL,
  UNIQUE (instance_id, chat_key)
);
CREATE INDEX conversations_activity ON conversations (last_activity_at);

CREATE TABLE inbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, -- global arrival order; per conversation it is the processing order
  id TEXT NOT NULL UNIQUE,               -- also the trace id
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  provider_message_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  kind TEXT NOT NULL DEFAULT 'inbound',  -- inbound | send (API send through the conversation)
  sender_id TEXT NOT NULL,
  sender_name TEXT,
  sender_phone TEXT,
  text TEXT NOT NULL,
  content_type TEXT NOT NULL,
  payload_json TEXT NOT NULL,            -- the normalised InboundMessage (or send request)
  status TEXT NOT NULL,                  -- pending | processing | completed | failed | blocked | dead_lettered | shed
  attempts INTEGER NOT NULL DEFAULT 0,
  response_text TEXT,                    -- set when the agent run is committed (never re-run after)
  error TEXT,
  channel_success INTEGER,
  possible_duplicate INTEGER NOT NULL DEFAULT 0,
  received_at TEXT NOT NULL,
  completed_at TEXT,
  duration_ms INTEGER,
  UNIQUE (instance_id, provider_message_id)
);
CREATE INDEX inbox_conversation_pending ON inbox (conversation_id, seq) WHERE status IN ('pending', 'processing');
CREATE INDEX inbox_status ON inbox (status);
CREATE INDEX inbox_instance_received ON inbox (instance_id, received_at);
CREATE INDEX inbox_sender ON inbox (sender_id);

CREATE TABLE trace_steps (
  trace_id TEXT NOT NULL REFERENCES inbox(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  step TEXT NOT NULL,
  status TEXT NOT NULL,
  at TEXT NOT NULL,
  duration_ms INTEGER,
  details_json TEXT,
  PRIMARY KEY (trace_id, idx)
);

CREATE TABLE outbox (
  id TEXT PRIMARY KEY,
  inbox_seq INTEGER NOT NULL REFERENCES inbox(seq) ON DELETE CASCADE,
  part INTEGER NOT NULL,                 -- chunk index within the reply
  text TEXT NOT NULL,
  status TEXT NOT NULL,                  -- pending | sending | sent | failed
  platform_message_id TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  sent_at TEXT,
  UNIQUE (inbox_seq, part)
);

CREATE TABLE dead_letters (
  id TEXT PRIMARY KEY,
  inbox_seq INTEGER NOT NULL UNIQUE REFERENCES inbox(seq) ON DELETE CASCADE,
  instance_id TEXT NOT NULL,
  conversation_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
