-- Conversation modes (collect, interrupt): the messages answered together in one turn share a
-- batch id, set when the batch is taken (its waiting window closed) and cleared again when an
-- interrupted batch is given back to the window. NULL for a message answered on its own. The
-- window itself needs no column: it is recomputed from the pending rows and their received times.
ALTER TABLE inbox ADD COLUMN batch_id TEXT;
CREATE INDEX inbox_batch ON inbox (batch_id) WHERE batch_id IS NOT NULL;
