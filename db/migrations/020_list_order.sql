-- Lists page newest first by (time, id) in embedded and cluster mode alike: one cursor format,
-- comparable across nodes (seq is per node). These indexes serve that order and its keyset
-- cursor `(time, id) < (?, ?)` (equal times are few, sorted as they come); the events indexes
-- keep their filter column first, now followed by the time instead of seq.
CREATE INDEX inbox_received ON inbox (received_at);
DROP INDEX events_instance;
CREATE INDEX events_instance ON events (instance_id, created_at);
DROP INDEX events_person;
CREATE INDEX events_person ON events (person_id, created_at);
DROP INDEX events_type;
CREATE INDEX events_type ON events (type, created_at);
CREATE INDEX dead_letters_created ON dead_letters (created_at);
