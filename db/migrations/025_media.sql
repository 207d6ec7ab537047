-- Media (issue 20): one row per media item of a message, inbound (fetched by the gateway from the
-- channel) or outbound (an agent reply's media). The bytes live in files named by their SHA-256
-- under the media directory (src/media/store.ts): items with the same content share one file.
-- Written by src/media/store.ts only; removed with the trace retention (files once unreferenced).
CREATE TABLE media (
  id TEXT PRIMARY KEY,                     -- the id in GET /media/{id} (random: one signature reads one item)
  instance_id TEXT NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
  trace_id TEXT NOT NULL,                  -- the message (inbox row id) it belongs to
  direction TEXT NOT NULL,                 -- in | out
  idx INTEGER NOT NULL,                    -- position among the message's media
  status TEXT NOT NULL,                    -- stored | rejected (too large, type not allowed) | failed (download)
  sha256 TEXT,                             -- content address of the file (stored only)
  type TEXT NOT NULL,                      -- image | video | audio | document | sticker
  mime_type TEXT,                          -- sniffed from the bytes, never the sender's word
  size_bytes INTEGER,
  filename TEXT,
  caption TEXT,
  voice_note INTEGER NOT NULL DEFAULT 0,
  error TEXT,                              -- why rejected / failed
  transcript TEXT,
  transcript_status TEXT,                  -- null (not tried) | done | failed: a transcription runs once per item
  created_at TEXT NOT NULL,
  UNIQUE (trace_id, direction, idx)
);
CREATE INDEX media_sha256 ON media (sha256);
CREATE INDEX media_created ON media (created_at);
