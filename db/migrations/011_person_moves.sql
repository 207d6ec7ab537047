-- Where persons and identities were moved (link, unlink, automatic merges). An identity a node
-- sees for the first time gets its deterministic home person unless a move says otherwise, so a
-- node that first sees an identity after it was linked puts it in the linked person.
CREATE TABLE person_moves (
  kind TEXT NOT NULL CHECK (kind IN ('person', 'identity')),
  from_id TEXT NOT NULL,                 -- the person merged away, or the identity unlinked
  to_person TEXT NOT NULL,
  PRIMARY KEY (kind, from_id)
);
CREATE INDEX person_moves_to ON person_moves (to_person);

-- Cluster mode: how many entries of the shared person log (a Redis list) this node has applied.
CREATE TABLE person_log (
  name TEXT PRIMARY KEY,
  applied INTEGER NOT NULL
);
