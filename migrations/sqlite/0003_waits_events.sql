-- Waits, posted events and paused runs.
--
-- A paused run holds no task: `wake_ms` is when its first timer (a sleep's
-- end, a wait's timeout, the run's deadline) is due, and its owner starts it
-- again then, or when a message reaches its inbox.

ALTER TABLE runs ADD COLUMN wake_ms BIGINT;
CREATE INDEX runs_wake ON runs (owner, wake_ms) WHERE wake_ms IS NOT NULL;

-- Events posted to the engine (POST /v1/events). `seq` orders them (and is
-- the listing cursor); a wait looks back at those of its topic posted since
-- its run was queued and not expired.
CREATE TABLE posted_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    topic            TEXT NOT NULL,
    data             TEXT NOT NULL,      -- JSON
    idempotency_key  TEXT UNIQUE,
    created_ms       BIGINT NOT NULL,
    expires_ms       BIGINT NOT NULL
);
CREATE INDEX posted_events_topic ON posted_events (topic, seq);

-- The steps waiting for an event now: a posted event of `topic` becomes an
-- inbox message of each of these runs, in the event's own transaction.
CREATE TABLE waits (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    step    TEXT NOT NULL,
    topic   TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE INDEX waits_topic ON waits (topic);

-- An event message names its event instead of copying its data per run.
ALTER TABLE inbox ADD COLUMN event_id TEXT;

-- Which runs an event resumed (a wait it ended) or started (a trigger).
CREATE TABLE event_runs (
    event_id  TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    role      TEXT NOT NULL,     -- 'resumed' or 'started'
    PRIMARY KEY (event_id, role, run_id)
);
