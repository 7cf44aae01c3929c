-- The provider's error code and request id, kept with a job's error: support asks for the
-- request id. Cleared whenever the job's reason is replaced by a new attempt.
ALTER TABLE jobs ADD COLUMN error_code TEXT;
ALTER TABLE jobs ADD COLUMN request_id TEXT;
