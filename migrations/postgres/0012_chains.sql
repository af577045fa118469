-- Hash-chained history: each event's `hash` is SHA-256 over the previous
-- event's hash (the run id for the first) and the event's stored body; a
-- run's `head` is its last event's hash. Events stored before this have
-- none, and neither do the events their runs append later.

ALTER TABLE events ADD COLUMN hash TEXT;
ALTER TABLE runs ADD COLUMN head TEXT;

-- Each node's Ed25519 public key, for checking the receipts it signed; kept
-- after the node stops, since its receipts outlive it.
CREATE TABLE node_keys (
    keyid TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
