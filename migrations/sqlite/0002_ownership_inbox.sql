-- Fenced ownership and the durable inbox.
--
-- Each unfinished run has an owner (a node id) holding a lease until
-- `lease_until_ms`, and a fencing token `fence` that every claim increments.
-- An append is conditional on (owner, fence, last_seq): a stale owner or a
-- stale sequence writes nothing. `last_seq` now counts every event appended,
-- not only status changes.

ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until_ms BIGINT;
ALTER TABLE runs ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;
UPDATE runs SET last_seq = COALESCE((SELECT MAX(seq) FROM events WHERE events.run_id = runs.id), last_seq);
CREATE INDEX runs_owner ON runs (owner);

-- Requests to a run (cancel; later posted events and signals): rows the
-- run's owner consumes in the same transaction as the events they cause.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL REFERENCES runs (id),
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,      -- JSON
    created_ms   BIGINT NOT NULL,
    consumed_ms  BIGINT
);
CREATE INDEX inbox_pending ON inbox (run_id, id) WHERE consumed_ms IS NULL;
