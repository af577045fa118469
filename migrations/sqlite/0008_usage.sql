-- Usage per API token, workflow and UTC day: runs started and fuel their
-- attempts consumed, kept in the same transactions as the runs and events
-- they count. `token` is the token's name ('' for runs started without
-- one: no tokens configured, triggers, `sandstep run`).

ALTER TABLE runs ADD COLUMN token TEXT;

CREATE TABLE usage (
    token     TEXT NOT NULL,
    day       TEXT NOT NULL,         -- YYYY-MM-DD, UTC
    workflow  TEXT NOT NULL,
    fuel      BIGINT NOT NULL DEFAULT 0,
    runs      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (token, day, workflow)
);
CREATE INDEX usage_day ON usage (day);
