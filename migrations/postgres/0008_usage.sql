-- Usage per API token: each run records the token it was started with
-- (its name; NULL for runs started without one: no tokens configured,
-- triggers) and the fuel its attempts consumed, moved by the same append
-- that records each attempt. A day's usage is that of the runs started on
-- it (UTC).

ALTER TABLE runs ADD COLUMN token TEXT;
ALTER TABLE runs ADD COLUMN fuel BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_token_created ON runs (token, created_ms);
CREATE INDEX runs_created ON runs (created_ms);
