-- Nodes claim unfinished runs nobody holds (never owned, released, or
-- under an ended lease) every second: this index keeps that look-up to the
-- unfinished runs, however many have ended.

CREATE INDEX runs_unfinished ON runs (lease_until_ms, id) WHERE status NOT IN ('completed', 'failed', 'canceled');
