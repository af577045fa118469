-- Sub-workflows: a child run knows its parent; when it ends, its parent's
-- inbox gets a message naming it, in the transaction of its last event.

ALTER TABLE runs ADD COLUMN parent_run_id TEXT;
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

-- A child-ended message names the child run instead of copying its result.
ALTER TABLE inbox ADD COLUMN child_id TEXT;
