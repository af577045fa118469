-- Webhook triggers (kind 'webhook'): `POST /hooks/{hook}` reaches the
-- workflow's latest version. A hook name belongs to one workflow. Its last
-- delivery: when, the sender's delivery id (or the body's digest), and the
-- run it started or the event it posted.
ALTER TABLE triggers ADD COLUMN hook TEXT;
ALTER TABLE triggers ADD COLUMN delivered_ms BIGINT;
ALTER TABLE triggers ADD COLUMN delivery TEXT;
ALTER TABLE triggers ADD COLUMN delivered_to TEXT;
CREATE UNIQUE INDEX triggers_hook ON triggers (hook) WHERE hook IS NOT NULL;
