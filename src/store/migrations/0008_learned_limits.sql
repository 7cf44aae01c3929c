-- The submit rate a provider was seen to accept (learned from its 429s), so the next run starts
-- there instead of crossing the limit again to find it.
CREATE TABLE provider_limits (
    provider          TEXT PRIMARY KEY,
    submit_per_minute REAL    NOT NULL,
    learned_at        INTEGER NOT NULL
);
