-- The engine's stages ask the store what is due on every tick, by the time: these partial
-- indexes hold only the jobs each question is about (running, downloading, ready to submit),
-- in the order it wants them, so a tick reads the few rows it takes.
CREATE INDEX jobs_polls_due ON jobs (next_poll_at) WHERE state = 'running';
CREATE INDEX jobs_downloads_due ON jobs (coalesce(clip_expires_at, 9223372036854775807), id)
    WHERE state = 'downloading';
CREATE INDEX jobs_ready ON jobs (batch_id, id) WHERE state = 'planned' AND held IS NULL;

