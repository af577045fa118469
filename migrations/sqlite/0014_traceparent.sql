-- The W3C traceparent a posted event was sent with: the runs it starts
-- are its children, and the waits it resumes link to it (OpenTelemetry).
ALTER TABLE posted_events ADD COLUMN traceparent TEXT;
