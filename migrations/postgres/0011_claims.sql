-- Nodes claim unfinished runs nobody holds (never owned, released, or
-- owned by a node whose lease ended) every second, oldest first: this
-- index keeps that look-up to the unfinished runs, however many ended.

CREATE INDEX runs_unfinished ON runs (id) WHERE status NOT IN ('completed', 'failed', 'canceled');
