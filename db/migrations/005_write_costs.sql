-- Full-text indexing of events moves from a per-row trigger (~20 µs per event) to EventService,
-- which indexes new rows in batches (~2 µs per event) every ~250 ms and before any search runs,
-- so search results stay complete. The watermark is committed with the rows it indexes.
CREATE TABLE events_fts_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  indexed_seq INTEGER NOT NULL           -- every event with seq <= indexed_seq is in events_fts
);
INSERT INTO events_fts_state (id, indexed_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;
DROP TRIGGER events_fts_insert;

-- Deletes and text updates touch the index only for rows already indexed; rows above the
-- watermark are read with their current text when the indexer reaches them.
DROP TRIGGER events_fts_delete;
CREATE TRIGGER events_fts_delete AFTER DELETE ON events
WHEN old.text IS NOT NULL AND old.seq <= (SELECT indexed_seq FROM events_fts_state WHERE id = 1) BEGIN
  INSERT INTO events_fts (events_fts, rowid, text) VALUES ('delete', old.seq, old.text);
END;
DROP TRIGGER events_fts_update;
CREATE TRIGGER events_fts_update AFTER UPDATE OF text ON events
WHEN old.seq <= (SELECT indexed_seq FROM events_fts_state WHERE id = 1) BEGIN
  INSERT INTO events_fts (events_fts, rowid, text) SELECT 'delete', old.seq, old.text WHERE old.text IS NOT NULL;
  INSERT INTO events_fts (rowid, text) SELECT new.seq, new.text WHERE new.text IS NOT NULL;
END;

-- Only person merges and unlinks looked events up by identity; they now also filter on the
-- identity's person (an event's person is always its identity's person), which events_person
-- serves. A random-key index costs ~8 µs per event insert.
DROP INDEX events_identity;

-- No query can use inbox_sender: the trace filter by user matches sender_id OR sender_phone
-- (unindexed), which scans anyway. A random-key index costs a page write per ingested message.
DROP INDEX inbox_sender;
