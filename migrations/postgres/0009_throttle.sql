-- `throttle:` slots, kept in the store so the limits hold across restarts
-- (and nodes). A hold is a unit's slot under one (scope, key): scope is the
-- workflow (`orders`) or a step of it (`orders/charge`), holder the unit
-- (`<run>/<step>[/<item>]`). Starts are the attempt starts a rate window
-- counts; older ones are pruned as keys are asked about.

CREATE TABLE throttle_holds (
    scope     TEXT NOT NULL,
    key       TEXT NOT NULL,
    holder    TEXT NOT NULL,
    run_id    TEXT NOT NULL,
    since_ms  BIGINT NOT NULL,
    PRIMARY KEY (scope, key, holder)
);
CREATE INDEX throttle_holds_holder ON throttle_holds (holder);
CREATE INDEX throttle_holds_run ON throttle_holds (run_id);

CREATE TABLE throttle_starts (
    scope  TEXT NOT NULL,
    key    TEXT NOT NULL,
    at_ms  BIGINT NOT NULL
);
CREATE INDEX throttle_starts_key ON throttle_starts (scope, key, at_ms);
