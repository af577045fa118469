-- Triggers of the latest version of each workflow: cron schedules (with
-- the last tick that started a run) and event topics.

CREATE TABLE triggers (
    workflow      TEXT NOT NULL,
    idx           BIGINT NOT NULL,     -- position in `triggers:`
    version       BIGINT NOT NULL,     -- the workflow version it belongs to
    kind          TEXT NOT NULL,       -- 'schedule' or 'event'
    topic         TEXT,                -- on_event
    schedule      TEXT,                -- schedule: the cron expression
    timezone      TEXT,
    last_tick_ms  BIGINT,              -- schedule: ticks up to here are done
    last_run_id   TEXT,
    PRIMARY KEY (workflow, idx)
);
CREATE INDEX triggers_topic ON triggers (topic) WHERE topic IS NOT NULL;

-- An event is dispatched once every `on_event` trigger of its topic
-- started its run (idempotently, keyed by the event id).
ALTER TABLE posted_events ADD COLUMN dispatched_ms BIGINT;
CREATE INDEX posted_events_undispatched ON posted_events (seq) WHERE dispatched_ms IS NULL;
