-- The step result cache (`cache:` steps): a recorded output per key (a
-- SHA-256 over module digest, canonical input, args, env, grants, limits
-- and engine), with the module's name and digest it can be cleared by.

CREATE TABLE step_cache (
    key         TEXT PRIMARY KEY,
    module      TEXT NOT NULL,      -- the name the step referred to
    digest      TEXT NOT NULL,
    output      TEXT NOT NULL,      -- JSON
    run_id      TEXT NOT NULL,      -- the run whose attempt produced it
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT               -- NULL: until cleared
);
CREATE INDEX step_cache_module ON step_cache (module);
CREATE INDEX step_cache_digest ON step_cache (digest);
