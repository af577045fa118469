-- Secrets set through the API: each value encrypted (XChaCha20-Poly1305
-- under SANDSTEP_SECRETS_KEY, the name as associated data). Values never
-- leave the process in clear.

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    nonce       BYTEA NOT NULL,      -- 24 random bytes per write
    ciphertext  BYTEA NOT NULL,      -- the value and its 16-byte tag
    updated_ms  BIGINT NOT NULL
);
