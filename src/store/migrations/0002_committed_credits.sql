-- recast state, version 2: each batch keeps a running total of the credits its attempts have
-- committed (submitting, accepted, completed, or unknown: possibly billed), maintained by
-- triggers, so the budget check at every submit reads one row instead of summing every attempt.

ALTER TABLE batches ADD COLUMN committed_credits INTEGER NOT NULL DEFAULT 0;

UPDATE batches SET committed_credits = (
    SELECT coalesce(sum(a.credits_estimate), 0) FROM attempts a JOIN jobs j ON j.id = a.job_id
    WHERE j.batch_id = batches.id AND a.state IN ('submitting', 'accepted', 'completed', 'unknown')
);

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

CREATE INDEX attempts_by_job ON attempts (job_id);
