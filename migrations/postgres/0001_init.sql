-- Sandstep's durable state (PostgreSQL; the twin of migrations/sqlite/, numbered alike).

CREATE TABLE modules (
    digest      TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    imports     TEXT NOT NULL,  -- JSON array
    exports     TEXT NOT NULL,  -- JSON array
    bytes       BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE module_tags (
    name        TEXT NOT NULL,
    tag         TEXT NOT NULL,
    digest      TEXT NOT NULL REFERENCES modules (digest),
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (name, tag)
);

CREATE TABLE workflows (
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    source      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,   -- UUIDv7: sorts by creation time
    workflow         TEXT NOT NULL,
    version          BIGINT NOT NULL,
    status           TEXT NOT NULL,
    idempotency_key  TEXT,
    input            TEXT NOT NULL,      -- JSON
    output           TEXT,               -- JSON
    error            TEXT,
    modules          TEXT NOT NULL,      -- JSON: reference -> digest, pinned at start
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    last_seq         BIGINT NOT NULL     -- seq of the last status change
);
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, idempotency_key);
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_workflow ON runs (workflow, id);

CREATE TABLE events (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    seq     BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    type    TEXT NOT NULL,
    body    TEXT NOT NULL,                -- the event as JSON
    PRIMARY KEY (run_id, seq)
);
