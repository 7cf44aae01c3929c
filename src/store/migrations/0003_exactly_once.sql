-- recast state, version 3: exactly once in real operation.
--
-- * jobs may be `lost`: a task the provider billed (or that a submit proven created) which can no
--   longer be reached: paid, no clip. Only a person's priced `recast retry --lost` makes it again.
-- * jobs.cancelled_by says who cancelled a job: 'person' (recast cancel; only `recast resume`
--   brings it back) or 'manifest' (its subject left the manifest; it comes back when the subject
--   does, since nothing was ever spent on it).
-- * batches.cancelled: a person cancelled the batch; jobs it gains later (a standing performance,
--   a schedule tick) are registered cancelled too, until `recast resume BATCH`.
-- * batches.balance_*: the account balance recast last read, and what its own ledger expected.
--
-- SQLite cannot change a CHECK constraint in place: the jobs table is rebuilt (the migration
-- runner turns foreign keys off around migrations, as SQLite's documentation prescribes).

-- The budget triggers name `jobs`: they are set aside while it is rebuilt, then restored as
-- version 2 made them.
DROP TRIGGER attempts_commit_on_insert;
DROP TRIGGER attempts_commit_on_update;

CREATE TABLE jobs_v3 (
    id                INTEGER PRIMARY KEY,
    batch_id          INTEGER NOT NULL REFERENCES batches (id),
    job_key           TEXT    NOT NULL,
    subject_id        TEXT    NOT NULL,
    output_name       TEXT    NOT NULL,
    spec_json         TEXT    NOT NULL,
    duration_ms       INTEGER NOT NULL,
    estimate_credits  INTEGER,
    state             TEXT    NOT NULL CHECK (state IN ('planned', 'submitting', 'running',
                          'downloading', 'done', 'rejected', 'failed', 'expired', 'unknown',
                          'lost', 'cancelled')),
    held              TEXT,
    reason            TEXT,
    attempt_id        INTEGER,
    task_id           TEXT,
    progress          INTEGER,
    polls             INTEGER NOT NULL DEFAULT 0,
    next_poll_at      INTEGER,
    clip_url          TEXT,
    clip_expires_at   INTEGER,
    link_refreshes    INTEGER NOT NULL DEFAULT 0,
    download_failures INTEGER NOT NULL DEFAULT 0,
    not_before        INTEGER,
    output_path       TEXT,
    output_sha256     TEXT,
    output_bytes      INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    cancelled_by      TEXT CHECK (cancelled_by IN ('person', 'manifest')),
    UNIQUE (batch_id, job_key)
);

INSERT INTO jobs_v3 (id, batch_id, job_key, subject_id, output_name, spec_json, duration_ms,
    estimate_credits, state, held, reason, attempt_id, task_id, progress, polls, next_poll_at,
    clip_url, clip_expires_at, link_refreshes, download_failures, not_before, output_path,
    output_sha256, output_bytes, created_at, updated_at, cancelled_by)
SELECT id, batch_id, job_key, subject_id, output_name, spec_json, duration_ms,
    estimate_credits, state, held, reason, attempt_id, task_id, progress, polls, next_poll_at,
    clip_url, clip_expires_at, link_refreshes, download_failures, not_before, output_path,
    output_sha256, output_bytes, created_at, updated_at,
    CASE WHEN state = 'cancelled' AND reason = 'no longer in the manifest' THEN 'manifest'
         WHEN state = 'cancelled' THEN 'person' END
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_v3 RENAME TO jobs;
CREATE INDEX jobs_by_state ON jobs (state, batch_id);

CREATE TRIGGER attempts_commit_on_insert AFTER INSERT ON attempts
WHEN NEW.state IN ('submitting', 'accepted', 'completed', 'unknown')
BEGIN
    UPDATE batches SET committed_credits = committed_credits + coalesce(NEW.credits_estimate, 0)
    WHERE id = (SELECT batch_id FROM jobs WHERE id = NEW.job_id);
END;

CREATE TRIGGER attempts_commit_on_update AFTER UPDATE OF state ON attempts
WHEN (NEW.state IN ('submitting', 'accepted', 'completed', 'unknown'))
    <> (OLD.state IN ('submitting', 'accepted', 'completed', 'unknown'))
BEGIN
    UPDATE batches SET committed_credits = committed_credits
        + CASE WHEN NEW.state IN ('submitting', 'accepted', 'completed', 'unknown')
               THEN coalesce(NEW.credits_estimate, 0)
               ELSE -coalesce(OLD.credits_estimate, 0) END
    WHERE id = (SELECT batch_id FROM jobs WHERE id = NEW.job_id);
END;

ALTER TABLE batches ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
-- Credits the batch's output folder records as spent on jobs this state folder does not know
-- (made from a state folder since lost): the budget counts them too.
ALTER TABLE batches ADD COLUMN outside_credits INTEGER NOT NULL DEFAULT 0;
UPDATE batches SET cancelled = 1 WHERE id IN (
    SELECT batch_id FROM events WHERE kind = 'cancel' AND batch_id IS NOT NULL);

-- What the provider said a task was billed (its poll answer's usage), where it says so: the
-- balance check compares exact charges, not estimates.
ALTER TABLE attempts ADD COLUMN billed_credits INTEGER;

-- Reads of the account's balance (credits), each beside recast's own ledger at that moment
-- (credits of the tasks it knows it created, net of refunds) and how many submits were
-- unknown then. A read with no unknown submits and nothing in flight is a baseline: from it,
-- the balance tells how much unknown submits since then were billed.
CREATE TABLE balance_reads (
    id        INTEGER PRIMARY KEY,
    provider  TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    credits   INTEGER NOT NULL,
    ledger    INTEGER NOT NULL,
    unknown   INTEGER NOT NULL,
    -- what the read showed, for `recast status`
    note      TEXT    NOT NULL
);
CREATE INDEX balance_reads_by_provider ON balance_reads (provider, id);
