-- The nodes serving this store: each heartbeat moves its node's
-- `lease_until_ms` on (with the runs' leases); a node whose lease ended is
-- gone (`GET /v1/nodes` lists live ones), and a clean stop deletes its row.

CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    listen          TEXT,             -- the API address, once it listens
    started_ms      BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL
);
