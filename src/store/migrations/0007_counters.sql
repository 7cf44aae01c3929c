-- Counters a batch's views read instead of scanning its jobs (`status`, the live line, the
-- dashboard, `/metrics`, the notifier): jobs by state, and attempts' estimated credits by
-- attempt state, each kept by triggers in the transaction that changes them.
CREATE TABLE batch_state_counts (
    batch_id INTEGER NOT NULL REFERENCES batches (id),
    state    TEXT    NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (batch_id, state)
) WITHOUT ROWID;
INSERT INTO batch_state_counts (batch_id, state, n)
    SELECT batch_id, state, count(*) FROM jobs GROUP BY batch_id, state;

CREATE TRIGGER jobs_count_on_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO batch_state_counts (batch_id, state, n) VALUES (NEW.batch_id, NEW.state, 1)
        ON CONFLICT (batch_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_count_on_update AFTER UPDATE OF state ON jobs
WHEN OLD.state IS NOT NEW.state
BEGIN
    UPDATE batch_state_counts SET n = n - 1 WHERE batch_id = OLD.batch_id AND state = OLD.state;
    INSERT INTO batch_state_counts (batch_id, state, n) VALUES (NEW.batch_id, NEW.state, 1)
        ON CONFLICT (batch_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TABLE batch_attempt_credits (
    batch_id INTEGER NOT NULL REFERENCES batches (id),
    state    TEXT    NOT NULL,
    credits  INTEGER NOT NULL,
    PRIMARY KEY (batch_id, state)
) WITHOUT ROWID;
INSERT INTO batch_attempt_credits (batch_id, state, credits)
    SELECT j.batch_id, a.state, coalesce(sum(a.credits_estimate), 0)
    FROM attempts a JOIN jobs j ON j.id = a.job_id GROUP BY j.batch_id, a.state;

CREATE TRIGGER attempts_credits_on_insert AFTER INSERT ON attempts
BEGIN
    INSERT INTO batch_attempt_credits (batch_id, state, credits)
        VALUES ((SELECT batch_id FROM jobs WHERE id = NEW.job_id), NEW.state,
                coalesce(NEW.credits_estimate, 0))
        ON CONFLICT (batch_id, state) DO UPDATE SET credits = credits + excluded.credits;
END;

CREATE TRIGGER attempts_credits_on_update AFTER UPDATE OF state ON attempts
WHEN OLD.state IS NOT NEW.state
BEGIN
    UPDATE batch_attempt_credits SET credits = credits - coalesce(OLD.credits_estimate, 0)
        WHERE batch_id = (SELECT batch_id FROM jobs WHERE id = OLD.job_id) AND state = OLD.state;
    INSERT INTO batch_attempt_credits (batch_id, state, credits)
        VALUES ((SELECT batch_id FROM jobs WHERE id = NEW.job_id), NEW.state,
                coalesce(NEW.credits_estimate, 0))
        ON CONFLICT (batch_id, state) DO UPDATE SET credits = credits + excluded.credits;
END;

-- Subjects of the batch and the earlier versions beside them change only when a manifest is
-- registered, so registration counts them (through this index) and the batch row keeps them.
CREATE INDEX jobs_by_subject ON jobs (batch_id, subject_id, id);
ALTER TABLE batches ADD COLUMN subjects INTEGER NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN earlier_versions INTEGER NOT NULL DEFAULT 0;
UPDATE batches SET
    subjects = (SELECT count(DISTINCT subject_id) FROM jobs
        WHERE batch_id = batches.id AND (cancelled_by IS NULL OR cancelled_by != 'manifest')),
    earlier_versions = (SELECT count(*) FROM jobs j WHERE j.batch_id = batches.id AND EXISTS (
        SELECT 1 FROM jobs n WHERE n.batch_id = j.batch_id AND n.subject_id = j.subject_id
            AND n.id > j.id AND (n.cancelled_by IS NULL OR n.cancelled_by != 'manifest')));
